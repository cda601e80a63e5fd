//! Rewrites an f32 facelock ONNX graph into QDQ int8: per-channel symmetric int8 weights,
//! per-tensor asymmetric uint8 activations, int32 biases, each behind a DequantizeLinear.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};

use crate::onnx::builder::{f32_tensor, i32_tensor, i8_tensor, node, u8_tensor, Attr};
use crate::{Error, Result};

/// The float range an activation tensor is quantized over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// Smallest value kept (≤ 0).
    pub min: f32,
    /// Largest value kept (≥ 0).
    pub max: f32,
}

/// uint8 scale and zero point of a range, widened to include 0.
pub fn activation_params(range: Range) -> (f32, u8) {
    let min = range.min.min(0.0);
    let max = range.max.max(0.0);
    let scale = ((max - min) / 255.0).max(1e-8);
    let zero = (-min / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Per-output-channel symmetric int8: `w ≈ q · scale[c]`, q in [-127, 127].
pub fn quantize_weights(weights: &[f32], out_channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per_channel = weights.len() / out_channels;
    let mut quantized = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(out_channels);
    for channel in weights.chunks(per_channel) {
        let largest = channel.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        quantized.extend(
            channel
                .iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (quantized, scales)
}

/// The float values of a float initializer.
pub fn float_values(tensor: &TensorProto) -> Result<Vec<f32>> {
    if !tensor.float_data.is_empty() {
        return Ok(tensor.float_data.clone());
    }
    if !tensor.raw_data.len().is_multiple_of(4) {
        return Err(Error::InvalidInput(format!(
            "initializer '{}' is not f32 data",
            tensor.name
        )));
    }
    Ok(tensor
        .raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Which nodes stay in float: `first` (first Conv), `last` (last Conv or Gemm), `depthwise`
/// (every grouped Conv), or node names.
pub fn resolve_keep_float(model: &ModelProto, keep: &[String]) -> Result<HashSet<String>> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::InvalidInput("model has no graph".into()))?;
    let compute: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
        .collect();
    let mut names = HashSet::new();
    for item in keep.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if item == "depthwise" {
            let grouped = compute
                .iter()
                .filter(|n| n.attribute.iter().any(|a| a.name == "group" && a.i > 1));
            names.extend(grouped.map(|n| n.name.clone()));
            continue;
        }
        let name = match item {
            "first" => compute.first().map(|n| n.name.clone()),
            "last" => compute.last().map(|n| n.name.clone()),
            other => compute
                .iter()
                .find(|n| n.name == other)
                .map(|n| n.name.clone()),
        };
        let name = name.ok_or_else(|| {
            Error::InvalidInput(format!(
                "--keep-float '{item}': no Conv or Gemm node by that name"
            ))
        })?;
        names.insert(name);
    }
    Ok(names)
}

/// Conv and Gemm nodes that will be quantized, and the activations they read and write.
pub fn quantized_activations(model: &ModelProto, keep_float: &HashSet<String>) -> Vec<String> {
    let mut names = Vec::new();
    for n in model.graph.iter().flat_map(|g| &g.node) {
        if (n.op_type == "Conv" || n.op_type == "Gemm") && !keep_float.contains(&n.name) {
            for t in [&n.input[0], &n.output[0]] {
                if !names.contains(t) {
                    names.push(t.clone());
                }
            }
        }
    }
    names
}

/// The name of the scale tensor of quantized tensor `tensor`: the activation and weight scales
/// are stored under it, and each bias scale is computed from the two it multiplies.
fn scale_name(tensor: &str) -> String {
    format!("{tensor}.scale")
}

/// The QDQ model: every activation in `ranges` gets a QuantizeLinear/DequantizeLinear pair
/// right after it is produced; the weights of quantized nodes become int8 + DequantizeLinear.
pub fn to_qdq(
    model: &ModelProto,
    keep_float: &HashSet<String>,
    ranges: &HashMap<String, Range>,
) -> Result<ModelProto> {
    let mut model = model.clone();
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| Error::InvalidInput("model has no graph".into()))?;
    let mut initializers: HashMap<String, TensorProto> = graph
        .initializer
        .drain(..)
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut new_initializers: Vec<TensorProto> = Vec::new();
    let mut nodes: Vec<NodeProto> = Vec::new();
    let params: HashMap<&str, (f32, u8)> = ranges
        .iter()
        .map(|(name, range)| (name.as_str(), activation_params(*range)))
        .collect();

    // Q/DQ of an activation, named `{t}.q` / `{t}.dq`.
    let qdq = |t: &str, nodes: &mut Vec<NodeProto>, inits: &mut Vec<TensorProto>| {
        let (scale, zero) = params[t];
        let (s, z) = (scale_name(t), format!("{t}.zero"));
        inits.push(f32_tensor(&s, &[], &[scale]));
        inits.push(u8_tensor(&z, &[], &[zero]));
        let (q, dq) = (format!("{t}.q"), format!("{t}.dq"));
        nodes.push(node("QuantizeLinear", &q, &[t, &s, &z], &[&q], vec![]));
        nodes.push(node("DequantizeLinear", &dq, &[&q, &s, &z], &[&dq], vec![]));
    };

    let graph_inputs: Vec<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    for input in &graph_inputs {
        if ranges.contains_key(input) {
            qdq(input, &mut nodes, &mut new_initializers);
        }
    }
    for mut n in graph.node.drain(..) {
        for input in n.input.iter_mut() {
            if ranges.contains_key(input.as_str()) {
                *input = format!("{input}.dq");
            }
        }
        let quantize =
            (n.op_type == "Conv" || n.op_type == "Gemm") && !keep_float.contains(&n.name);
        if quantize {
            let x_name = n.input[0].trim_end_matches(".dq").to_owned();
            let (x_scale, _) = *params.get(x_name.as_str()).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "node '{}' reads uncalibrated tensor '{x_name}'",
                    n.name
                ))
            })?;
            let weight = initializers.remove(&n.input[1]).ok_or_else(|| {
                Error::Unsupported(format!("node '{}' has non-constant weights", n.name))
            })?;
            let out = weight.dims[0] as usize;
            let dims: Vec<usize> = weight.dims.iter().map(|&d| d as usize).collect();
            let (q, scales) = quantize_weights(&float_values(&weight)?, out);
            let w = &weight.name;
            new_initializers.push(i8_tensor(&format!("{w}.q"), &dims, &q));
            new_initializers.push(f32_tensor(&scale_name(w), &[out], &scales));
            // Symmetric: no zero-point input (ONNX's default is 0), which saves a tensor per
            // layer; `onnx::lower` supplies one where QLinearConv needs it.
            let wdq = format!("{w}.dq");
            let inputs = [format!("{w}.q"), scale_name(w)];
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            nodes.push(node(
                "DequantizeLinear",
                &wdq,
                &inputs,
                &[&wdq],
                vec![("axis", Attr::Int(0))],
            ));
            n.input[1] = wdq;
            if let Some(bias_name) = n.input.get(2).cloned() {
                let bias = initializers.remove(&bias_name).ok_or_else(|| {
                    Error::Unsupported(format!("node '{}' has a non-constant bias", n.name))
                })?;
                let b_scales: Vec<f32> = scales.iter().map(|s| s * x_scale).collect();
                let b_q: Vec<i32> = float_values(&bias)?
                    .iter()
                    .zip(&b_scales)
                    .map(|(b, s)| (b / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
                    .collect();
                new_initializers.push(i32_tensor(&format!("{bias_name}.q"), &[out], &b_q));
                // The bias scale is x_scale × w_scale, computed in the graph from the two
                // scales already stored (a constant engines fold at load) rather than stored.
                let b_scale = scale_name(&bias_name);
                nodes.push(node(
                    "Mul",
                    &b_scale,
                    &[&scale_name(&x_name), &scale_name(w)],
                    &[&b_scale],
                    vec![],
                ));
                let bdq = format!("{bias_name}.dq");
                let inputs = [format!("{bias_name}.q"), b_scale];
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                nodes.push(node(
                    "DequantizeLinear",
                    &bdq,
                    &inputs,
                    &[&bdq],
                    vec![("axis", Attr::Int(0))],
                ));
                n.input[2] = bdq;
            }
        }
        let outputs = n.output.clone();
        nodes.push(n);
        for output in outputs {
            if ranges.contains_key(&output) {
                qdq(&output, &mut nodes, &mut new_initializers);
            }
        }
    }

    // Float initializers still in use (PReLU slopes, kept-float layers), then the new ones.
    let mut remaining: Vec<TensorProto> = initializers.into_values().collect();
    remaining.sort_by(|a, b| a.name.cmp(&b.name));
    let graph = model.graph.as_mut().expect("checked above");
    graph.node = nodes;
    graph.initializer = remaining;
    graph.initializer.extend(new_initializers);
    Ok(model)
}
