//! Builds ONNX graphs from tract's prost-generated protobuf types (`tract_onnx::pb`).
use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX opset the exporter targets (per-axis QuantizeLinear/DequantizeLinear need 13).
pub const OPSET: i64 = 13;
/// ONNX IR version matching opset 13.
pub const IR_VERSION: i64 = 7;

/// A node attribute value.
pub enum Attr {
    /// One integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
}

/// Accumulates nodes and initializers of one graph.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

/// A float initializer `name` of shape `dims`.
pub fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor(name, dims, DataType::Float, raw_data)
}

/// An int8 initializer `name` of shape `dims`.
pub fn i8_tensor(name: &str, dims: &[usize], values: &[i8]) -> TensorProto {
    tensor(
        name,
        dims,
        DataType::Int8,
        values.iter().map(|&v| v as u8).collect(),
    )
}

/// A uint8 initializer `name` of shape `dims`.
pub fn u8_tensor(name: &str, dims: &[usize], values: &[u8]) -> TensorProto {
    tensor(name, dims, DataType::Uint8, values.to_vec())
}

/// An int32 initializer `name` of shape `dims`.
pub fn i32_tensor(name: &str, dims: &[usize], values: &[i32]) -> TensorProto {
    let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor(name, dims, DataType::Int32, raw_data)
}

fn tensor(name: &str, dims: &[usize], data_type: DataType, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data,
        ..Default::default()
    }
}

/// A node `op_type` named `name` reading `inputs` and writing `outputs`.
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<(&str, Attr)>,
) -> NodeProto {
    NodeProto {
        op_type: op_type.to_string(),
        name: name.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs
            .into_iter()
            .map(|(name, value)| attribute(name, value))
            .collect(),
        ..Default::default()
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut proto = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            proto.i = i;
            proto.r#type = AttributeType::Int as i32;
        }
        Attr::Ints(ints) => {
            proto.ints = ints;
            proto.r#type = AttributeType::Ints as i32;
        }
    }
    proto
}

/// A float tensor's type and shape; `None` dims are symbolic (named `batch`).
pub fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                None => tensor_shape_proto::dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    /// Adds an initializer; returns its name.
    pub fn initializer(&mut self, tensor: TensorProto) -> String {
        let name = tensor.name.clone();
        self.initializers.push(tensor);
        name
    }

    /// Adds a node.
    pub fn push(&mut self, node: NodeProto) {
        self.nodes.push(node);
    }

    /// The bytes of every initializer in insertion order (what the model id hashes).
    pub fn weight_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.initializers.iter().map(|t| t.raw_data.as_slice())
    }

    /// The finished graph with one float input and one float output.
    pub fn finish(self, name: &str, input: ValueInfoProto, output: ValueInfoProto) -> GraphProto {
        GraphProto {
            name: name.to_string(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![input],
            output: vec![output],
            ..Default::default()
        }
    }
}

/// Wraps a graph into a model at [`OPSET`] with `metadata` as `metadata_props`.
pub fn model(graph: GraphProto, metadata: Vec<(String, String)>) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "facelock".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    }
}

/// Serialises a model to protobuf bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
