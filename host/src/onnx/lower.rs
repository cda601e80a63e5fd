//! Rewrites QDQ convolutions (DequantizeLinear → Conv → QuantizeLinear) into QLinearConv
//! before tract loads a model: tract lowers QLinearConv onto integer (i8 × i8 → i32) matrix
//! kernels, whereas a QDQ Conv would be run in float on dequantized tensors.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};

/// The model with every fully-QDQ Conv replaced by a QLinearConv (other nodes unchanged, dead
/// DequantizeLinear nodes removed). A model without QDQ nodes comes back as it was.
pub fn lower_qdq_for_tract(model: &ModelProto) -> ModelProto {
    let mut model = model.clone();
    let Some(graph) = model.graph.as_mut() else {
        return model;
    };
    if !graph.node.iter().any(|n| n.op_type == "DequantizeLinear") {
        return model;
    }
    let producer: HashMap<String, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
        .collect();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for input in &n.input {
            consumers.entry(input.clone()).or_default().push(i);
        }
    }
    // A DequantizeLinear may leave out its zero point (0 by default); QLinearConv may not.
    let dequantize = |tensor: &str| -> Option<&NodeProto> {
        let n = &graph.node[*producer.get(tensor)?];
        (n.op_type == "DequantizeLinear" && (2..=3).contains(&n.input.len())).then_some(n)
    };
    let initializer_types: HashMap<&str, i32> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.data_type))
        .collect();
    let mut zero_points: Vec<TensorProto> = Vec::new();
    let mut zero_point_of = |dq: &NodeProto| -> String {
        if let Some(zero) = dq.input.get(2) {
            return zero.clone();
        }
        // Same type as the quantized tensor: an int8 initializer, else QuantizeLinear's
        // default output, uint8.
        use tract_onnx::pb::tensor_proto::DataType;
        let data_type = initializer_types
            .get(dq.input[0].as_str())
            .copied()
            .unwrap_or(DataType::Uint8 as i32);
        let name = format!("{}.implied_zero", dq.input[0]);
        if zero_points.iter().any(|t| t.name == name) {
            // A tensor read by several convolutions needs its zero point only once.
            return name;
        }
        zero_points.push(TensorProto {
            name: name.clone(),
            data_type,
            int32_data: vec![0],
            ..Default::default()
        });
        name
    };

    let mut replaced: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed: HashSet<usize> = HashSet::new();
    for (i, conv) in graph.node.iter().enumerate() {
        if conv.op_type != "Conv" || conv.input.len() < 2 {
            continue;
        }
        let (Some(x), Some(w)) = (dequantize(&conv.input[0]), dequantize(&conv.input[1])) else {
            continue;
        };
        let bias = match conv.input.get(2) {
            Some(b) => match dequantize(b) {
                Some(b) => Some(b.input[0].clone()),
                None => continue,
            },
            None => None,
        };
        let users = consumers
            .get(&conv.output[0])
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let [q] = users else { continue };
        let quantize = &graph.node[*q];
        if quantize.op_type != "QuantizeLinear" || quantize.input.len() != 3 {
            continue;
        }
        let mut inputs = vec![
            x.input[0].clone(),
            x.input[1].clone(),
            zero_point_of(x),
            w.input[0].clone(),
            w.input[1].clone(),
            zero_point_of(w),
            quantize.input[1].clone(),
            quantize.input[2].clone(),
        ];
        inputs.extend(bias);
        let lowered = NodeProto {
            op_type: "QLinearConv".into(),
            name: conv.name.clone(),
            input: inputs,
            output: quantize.output.clone(),
            attribute: conv.attribute.clone(),
            ..Default::default()
        };
        replaced.insert(i, lowered);
        removed.insert(*q);
    }

    let nodes: Vec<NodeProto> = std::mem::take(&mut graph.node)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
        .map(|(i, n)| replaced.remove(&i).unwrap_or(n))
        .collect();
    graph.node = prune_dead(nodes, graph.output.iter().map(|o| o.name.clone()).collect());
    graph.initializer.extend(zero_points);
    tracing::debug!("lowered QDQ convolutions to QLinearConv for tract");
    model
}

/// Drops nodes none of whose outputs is read (repeatedly), keeping the graph outputs.
fn prune_dead(mut nodes: Vec<NodeProto>, outputs: HashSet<String>) -> Vec<NodeProto> {
    loop {
        let read: HashSet<&String> = nodes.iter().flat_map(|n| &n.input).collect();
        let live: Vec<bool> = nodes
            .iter()
            .map(|n| {
                n.output
                    .iter()
                    .any(|o| read.contains(o) || outputs.contains(o))
            })
            .collect();
        if live.iter().all(|&l| l) {
            return nodes;
        }
        let mut keep = live.into_iter();
        nodes.retain(|_| keep.next().unwrap_or(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{f32_tensor, i8_tensor, node, u8_tensor};
    use tract_onnx::pb::{GraphProto, ValueInfoProto};

    /// Two convolutions read the same activation and the same weights, whose DequantizeLinear
    /// has no zero point: both QLinearConvs get the one implied int8 zero point.
    #[test]
    fn an_implied_zero_point_is_added_once_and_typed_like_its_tensor() {
        let mut nodes = vec![
            node("QuantizeLinear", "xq", &["x", "xs", "xz"], &["x.q"], vec![]),
            node(
                "DequantizeLinear",
                "xdq",
                &["x.q", "xs", "xz"],
                &["x.dq"],
                vec![],
            ),
            node("DequantizeLinear", "wdq", &["w.q", "ws"], &["w.dq"], vec![]),
        ];
        for k in ["a", "b"] {
            let conv = format!("conv_{k}");
            nodes.push(node("Conv", &conv, &["x.dq", "w.dq"], &[&conv], vec![]));
            let out = format!("{k}.q");
            nodes.push(node(
                "QuantizeLinear",
                &out,
                &[&conv, "ys", "yz"],
                &[&out],
                vec![],
            ));
        }
        let outputs = ["a.q", "b.q"].map(|name| ValueInfoProto {
            name: name.into(),
            ..Default::default()
        });
        let model = ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer: vec![
                    f32_tensor("xs", &[], &[0.1]),
                    u8_tensor("xz", &[], &[128]),
                    i8_tensor("w.q", &[1, 1, 1, 1], &[3]),
                    f32_tensor("ws", &[1], &[0.5]),
                    f32_tensor("ys", &[], &[0.2]),
                    u8_tensor("yz", &[], &[128]),
                ],
                output: outputs.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };

        let lowered = lower_qdq_for_tract(&model);
        let graph = lowered.graph.unwrap();
        let convs: Vec<&NodeProto> = graph
            .node
            .iter()
            .filter(|n| n.op_type == "QLinearConv")
            .collect();
        assert_eq!(convs.len(), 2);
        for conv in &convs {
            assert_eq!(
                conv.input[2], "xz",
                "the activation keeps its own zero point"
            );
            assert_eq!(conv.input[5], "w.q.implied_zero");
        }
        let implied: Vec<&TensorProto> = graph
            .initializer
            .iter()
            .filter(|t| t.name == "w.q.implied_zero")
            .collect();
        assert_eq!(implied.len(), 1);
        let int8 = tract_onnx::pb::tensor_proto::DataType::Int8 as i32;
        assert_eq!(implied[0].data_type, int8);
    }
}
