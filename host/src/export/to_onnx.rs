//! Writes a BN-folded [`Network`] as an ONNX graph: Conv, PRelu, Add, Flatten, Gemm.
use tract_onnx::pb::ModelProto;

use super::network::{Layer, Network};
use crate::onnx::builder::{self, f32_tensor, node, value_info, Attr, GraphBuilder};
use crate::onnx::meta::{self, ModelMeta, Quantization, Thresholds};
use crate::{Error, Result};

/// Name of the graph input, [batch, 3, size, size] float.
pub const INPUT: &str = "input";
/// Name of the graph output, [batch, embedding_dim] float (not normalised).
pub const OUTPUT: &str = "embedding";

/// Input normalisation recorded in the metadata (pixels in [0, 1], then `(x - mean) / std`).
#[derive(Clone, Debug, PartialEq)]
pub struct Normalisation {
    /// Per-channel mean, RGB.
    pub mean: [f32; 3],
    /// Per-channel divisor, RGB.
    pub std: [f32; 3],
}

struct Writer {
    graph: GraphBuilder,
    tensors: usize,
}

impl Writer {
    fn fresh(&mut self, what: &str) -> String {
        self.tensors += 1;
        format!("{what}:{}", self.tensors)
    }

    fn sequence(&mut self, layers: &[Layer], mut x: String, mut last: String) -> Result<String> {
        for layer in layers {
            x = match layer {
                Layer::Conv(conv) => {
                    let per_group = conv.in_channels / conv.groups;
                    let dims = [conv.out_channels, per_group, conv.kernel, conv.kernel];
                    let weight = self.graph.initializer(f32_tensor(
                        &format!("{}.weight", conv.name),
                        &dims,
                        &conv.weight,
                    ));
                    let mut inputs = vec![x.clone(), weight];
                    if let Some(bias) = &conv.bias {
                        let name = format!("{}.bias", conv.name);
                        inputs.push(
                            self.graph
                                .initializer(f32_tensor(&name, &[bias.len()], bias)),
                        );
                    }
                    let y = self.fresh(&conv.name);
                    let k = conv.kernel as i64;
                    let (s, p) = (conv.stride as i64, conv.padding as i64);
                    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    let attrs = vec![
                        ("kernel_shape", Attr::Ints(vec![k, k])),
                        ("strides", Attr::Ints(vec![s, s])),
                        ("pads", Attr::Ints(vec![p, p, p, p])),
                        ("dilations", Attr::Ints(vec![1, 1])),
                        ("group", Attr::Int(conv.groups as i64)),
                    ];
                    self.graph
                        .push(node("Conv", &conv.name, &inputs, &[&y], attrs));
                    last = conv.name.clone();
                    y
                }
                Layer::Prelu(slope) => {
                    // PReLU as x + (slope − 1) · min(x, 0): three element-wise ops, of which
                    // tract fuses the first two into one pass and runs the add as a plain
                    // unicast add (faster than its own PRelu expansion and than
                    // relu(x) + slope · min(x, 0)); equal to PReLU up to float rounding.
                    let name = format!("{last}.prelu");
                    let less_one: Vec<f32> = slope.iter().map(|a| a - 1.0).collect();
                    let slope = self.graph.initializer(f32_tensor(
                        &format!("{name}.slope_minus_one"),
                        &[less_one.len(), 1, 1],
                        &less_one,
                    ));
                    let zero =
                        self.graph
                            .initializer(f32_tensor(&format!("{name}.zero"), &[], &[0.0]));
                    let (negative, scaled, y) = (
                        self.fresh(&format!("{name}.min")),
                        self.fresh(&format!("{name}.mul")),
                        self.fresh(&name),
                    );
                    self.graph.push(node(
                        "Min",
                        &format!("{name}.min"),
                        &[&x, &zero],
                        &[&negative],
                        vec![],
                    ));
                    self.graph.push(node(
                        "Mul",
                        &format!("{name}.mul"),
                        &[&negative, &slope],
                        &[&scaled],
                        vec![],
                    ));
                    self.graph
                        .push(node("Add", &name, &[&x, &scaled], &[&y], vec![]));
                    y
                }
                Layer::Residual(inner) => {
                    let branch = self.sequence(inner, x.clone(), last.clone())?;
                    let name = format!("{}.add", inner_name(inner).unwrap_or(&last));
                    let y = self.fresh(&name);
                    self.graph
                        .push(node("Add", &name, &[&branch, &x], &[&y], vec![]));
                    y
                }
                Layer::Flatten => {
                    let name = format!("{last}.flatten");
                    let y = self.fresh(&name);
                    self.graph.push(node(
                        "Flatten",
                        &name,
                        &[&x],
                        &[&y],
                        vec![("axis", Attr::Int(1))],
                    ));
                    y
                }
                Layer::Linear(linear) => {
                    let dims = [linear.out_features, linear.in_features];
                    let weight = self.graph.initializer(f32_tensor(
                        &format!("{}.weight", linear.name),
                        &dims,
                        &linear.weight,
                    ));
                    let mut inputs = vec![x.clone(), weight];
                    if let Some(bias) = &linear.bias {
                        let name = format!("{}.bias", linear.name);
                        inputs.push(
                            self.graph
                                .initializer(f32_tensor(&name, &[bias.len()], bias)),
                        );
                    }
                    let y = self.fresh(&linear.name);
                    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    let attrs = vec![("transB", Attr::Int(1))];
                    self.graph
                        .push(node("Gemm", &linear.name, &inputs, &[&y], attrs));
                    last = linear.name.clone();
                    y
                }
                Layer::BatchNorm(_) => {
                    return Err(Error::InvalidInput(
                        "batch norm must be folded before writing ONNX".into(),
                    ))
                }
            };
        }
        Ok(x)
    }
}

fn inner_name(layers: &[Layer]) -> Option<&str> {
    layers.iter().find_map(|layer| match layer {
        Layer::Conv(conv) => Some(conv.name.as_str()),
        _ => None,
    })
}

/// The f32 ONNX model of `network` (BN folded here), with facelock metadata. The model id
/// hashes the initializer bytes in graph order.
pub fn network_to_onnx(
    network: &Network,
    normalisation: &Normalisation,
    thresholds: Option<Thresholds>,
) -> Result<ModelProto> {
    let folded = network.fold_batch_norm()?;
    let mut writer = Writer {
        graph: GraphBuilder::default(),
        tensors: 0,
    };
    let last = writer.sequence(&folded.layers, INPUT.to_string(), "input".into())?;

    // A final Identity gives the output a stable name.
    writer
        .graph
        .push(node("Identity", OUTPUT, &[&last], &[OUTPUT], vec![]));
    let model_id = meta::model_id(writer.graph.weight_bytes());
    let side = Some(network.input_size);
    let input = value_info(INPUT, &[None, Some(network.input_channels), side, side]);
    let output = value_info(OUTPUT, &[None, Some(network.embedding_dim)]);
    let graph = writer.graph.finish("facelock", input, output);
    let meta = ModelMeta {
        input_height: network.input_size,
        input_width: network.input_size,
        mean: normalisation.mean,
        std: normalisation.std,
        embedding_dim: network.embedding_dim,
        model_id,
        producer: meta::producer(),
        quantization: Quantization::F32,
        thresholds,
    };
    Ok(builder::model(graph, meta.to_props()))
}
