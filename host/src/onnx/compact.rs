//! Short tensor names for files that go to a board.
//!
//! A QDQ model names every tensor after the layer it belongs to plus `.q`, `.scale`, `.dq`
//! and so on; for a small network those names and the node names are ~15 % of the int8 file.
//! [`compact_names`] replaces them with short generated ones. The graph's inputs and outputs
//! keep their names (callers look them up), and engines name a node without a name after its
//! first output.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::ModelProto;

/// Renames every tensor except the graph's inputs and outputs to a short base-36 name (in
/// order of first appearance: initializers, then node inputs and outputs) and clears the node
/// names. The computation is unchanged.
pub fn compact_names(model: &mut ModelProto) {
    let Some(graph) = model.graph.as_mut() else {
        return;
    };
    let kept: HashSet<String> = graph
        .input
        .iter()
        .chain(&graph.output)
        .map(|v| v.name.clone())
        .collect();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut counter = 0usize;
    let mut rename = |name: &mut String| {
        if name.is_empty() || kept.contains(name.as_str()) {
            return;
        }
        if let Some(short) = renamed.get(name.as_str()) {
            *name = short.clone();
            return;
        }
        let short = loop {
            let candidate = base36(counter);
            counter += 1;
            if !kept.contains(&candidate) {
                break candidate;
            }
        };
        renamed.insert(std::mem::replace(name, short.clone()), short);
    };
    for tensor in &mut graph.initializer {
        rename(&mut tensor.name);
    }
    for node in &mut graph.node {
        node.name.clear();
        for tensor in node.input.iter_mut().chain(node.output.iter_mut()) {
            rename(tensor);
        }
    }
    for info in &mut graph.value_info {
        rename(&mut info.name);
    }
}

fn base36(mut value: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut text = Vec::new();
    loop {
        text.push(DIGITS[value % 36]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    text.reverse();
    String::from_utf8(text).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{f32_tensor, node};
    use tract_onnx::pb::{GraphProto, ValueInfoProto};

    #[test]
    fn names_shrink_consistently_and_the_interface_keeps_its_names() {
        assert_eq!(
            [0, 9, 10, 35, 36, 1295, 1296].map(base36),
            ["0", "9", "a", "z", "10", "zz", "100"]
        );
        let info = |name: &str| ValueInfoProto {
            name: name.into(),
            ..Default::default()
        };
        let mut model = ModelProto {
            graph: Some(GraphProto {
                input: vec![info("input")],
                output: vec![info("embedding")],
                initializer: vec![f32_tensor("layer.weight.scale", &[], &[2.0])],
                node: vec![
                    node(
                        "Mul",
                        "layer.mul",
                        &["input", "layer.weight.scale"],
                        &["layer.hidden"],
                        vec![],
                    ),
                    node(
                        "Relu",
                        "layer.relu",
                        &["layer.hidden"],
                        &["embedding"],
                        vec![],
                    ),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        compact_names(&mut model);
        let graph = model.graph.unwrap();
        assert_eq!(graph.initializer[0].name, "0");
        assert_eq!(graph.node[0].input, ["input", "0"]);
        assert_eq!(graph.node[0].output, ["1"]);
        assert_eq!(graph.node[1].input, ["1"]);
        assert_eq!(graph.node[1].output, ["embedding"]);
        assert!(graph.node.iter().all(|n| n.name.is_empty()));
    }
}
