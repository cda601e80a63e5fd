//! Loads facelock ONNX models into tract and runs them on CHW image batches.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::lower::lower_qdq_for_tract;
use super::meta::ModelMeta;
use crate::{Error, Result};

/// An optimised tract plan for a fixed batch size.
pub type Plan = Arc<TypedRunnableModel>;

/// Reads and decodes an ONNX file.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| Error::Onnx {
        path: path.to_path_buf(),
        reason: format!("not an ONNX protobuf: {e}"),
    })
}

/// Writes an ONNX model to `path` (through a temporary file, then renamed).
pub fn write_model(model: &ModelProto, path: &Path) -> Result<()> {
    let tmp = path.with_extension("onnx.tmp");
    std::fs::write(&tmp, model.encode_to_vec()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A tract plan of `model` for inputs [batch, 3, h, w]; outputs are the graph output followed
/// by the tensors named in `extra_outputs` (ONNX tensor names). QDQ convolutions are first
/// rewritten as QLinearConv so that tract runs them on integer kernels.
pub fn plan(
    model: &ModelProto,
    path: &Path,
    shape: [usize; 4],
    extra_outputs: &[String],
) -> Result<Plan> {
    let tract_err = |e: TractError| Error::Onnx {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let lowered = lower_qdq_for_tract(model);
    let mut inference = tract_onnx::onnx()
        .model_for_proto_model(&lowered)
        .map_err(tract_err)?;
    inference
        .set_input_fact(0, f32::fact(shape).into())
        .map_err(tract_err)?;
    if !extra_outputs.is_empty() {
        let mut outlets = inference.output_outlets().map_err(tract_err)?.to_vec();
        for name in extra_outputs {
            // Graph inputs are nodes named after the tensor; other tensors are outlet labels.
            let outlet = inference
                .find_outlet_label(name)
                .or_else(|| {
                    inference
                        .node_by_name(name)
                        .ok()
                        .map(|n| OutletId::new(n.id, 0))
                })
                .ok_or_else(|| Error::Onnx {
                    path: path.to_path_buf(),
                    reason: format!("no tensor named '{name}'"),
                })?;
            outlets.push(outlet);
        }
        inference
            .select_output_outlets(&outlets)
            .map_err(tract_err)?;
    }
    let typed = inference.into_optimized().map_err(tract_err)?;
    typed.into_runnable().map_err(tract_err)
}

/// A facelock ONNX model in tract: checked metadata and a plan for `batch` images.
pub struct Embedder {
    path: PathBuf,
    meta: ModelMeta,
    batch: usize,
    plan: Plan,
}

impl Embedder {
    /// Loads `path`, checks its facelock metadata and optimises it for batches of `batch`.
    pub fn load(path: &Path, batch: usize) -> Result<Self> {
        let model = read_model(path)?;
        Self::from_model(&model, path, batch)
    }

    /// Like [`Embedder::load`] for a model already in memory (`path` names it in errors).
    pub fn from_model(model: &ModelProto, path: &Path, batch: usize) -> Result<Self> {
        if batch == 0 {
            return Err(Error::InvalidInput(
                "embedder batch size must be at least 1".into(),
            ));
        }
        let meta = ModelMeta::from_model(model, path)?;
        let shape = [batch, 3, meta.input_height, meta.input_width];
        let plan = plan(model, path, shape, &[])?;
        Ok(Self {
            path: path.to_path_buf(),
            meta,
            batch,
            plan,
        })
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Images per run of the plan.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The optimised tract plan (for inspecting its ops).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Floats in one image, 3·h·w.
    pub fn image_len(&self) -> usize {
        3 * self.meta.input_height * self.meta.input_width
    }

    /// Embeddings [count, dim] (not normalised) of `images` [count, 3, h, w], CHW, already
    /// normalised with the model's mean and std. Runs in chunks of the plan's batch size; a
    /// short last chunk is padded with zeros.
    pub fn embed(&self, images: &[f32]) -> Result<Vec<f32>> {
        let per_image = self.image_len();
        if !images.len().is_multiple_of(per_image) {
            return Err(Error::InvalidInput(format!(
                "{} floats is not a whole number of {}x{} CHW images",
                images.len(),
                self.meta.input_height,
                self.meta.input_width
            )));
        }
        let count = images.len() / per_image;
        let dim = self.meta.embedding_dim;
        let mut out = Vec::with_capacity(count * dim);
        for chunk in images.chunks(self.batch * per_image) {
            let mut buffer = chunk.to_vec();
            buffer.resize(self.batch * per_image, 0.0);
            let shape = [self.batch, 3, self.meta.input_height, self.meta.input_width];
            let input = Tensor::from_shape(&shape, &buffer).map_err(|e| self.tract_error(e))?;
            let values = run_f32(&self.plan, input).map_err(|e| self.tract_error(e))?;
            let real = chunk.len() / per_image;
            if values.len() != self.batch * dim {
                return Err(Error::Onnx {
                    path: self.path.clone(),
                    reason: format!(
                        "output has {} values, expected {}",
                        values.len(),
                        self.batch * dim
                    ),
                });
            }
            out.extend_from_slice(&values[..real * dim]);
        }
        Ok(out)
    }

    fn tract_error(&self, e: TractError) -> Error {
        Error::Onnx {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        }
    }
}

/// One node of an optimised plan: op name and the datum types of its inputs.
#[derive(Clone, Debug)]
pub struct OpSummary {
    /// Node name.
    pub node: String,
    /// Op name as tract reports it (e.g. `OptMatMul`, `DepthWise`).
    pub op: String,
    /// Datum types of the inputs, e.g. `["I8", "I8"]`.
    pub inputs: Vec<String>,
    /// Datum type of the first output.
    pub output: String,
    /// tract's description of the op (for matrix products: the micro-kernel, e.g. one with
    /// `i32` accumulators for integer products).
    pub info: Vec<String>,
}

/// Runs `plan` on one input and returns its first output as f32 values, in order.
pub fn run_f32(plan: &Plan, input: Tensor) -> TractResult<Vec<f32>> {
    let outputs = plan.run(tvec!(input.into_tvalue()))?;
    let view = outputs[0].to_plain_array_view::<f32>()?;
    Ok(view.iter().copied().collect())
}

/// The ops of a plan with their input types, in evaluation order.
pub fn op_summary(plan: &Plan) -> Vec<OpSummary> {
    let model = plan.model();
    model
        .eval_order()
        .unwrap_or_default()
        .into_iter()
        .map(|id| {
            let node = model.node(id);
            let inputs = node
                .inputs
                .iter()
                .map(|outlet| {
                    model
                        .outlet_fact(*outlet)
                        .map(|fact| format!("{:?}", fact.datum_type))
                        .unwrap_or_else(|_| "?".into())
                })
                .collect();
            let output = node
                .outputs
                .first()
                .map(|o| format!("{:?}", o.fact.datum_type))
                .unwrap_or_default();
            let info = node.op.info().unwrap_or_default();
            OpSummary {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                inputs,
                output,
                info,
            }
        })
        .collect()
}

impl Embedder {
    /// Same contract as `eval::embedder::embed` for a candle backbone, so that evaluation can
    /// take an ONNX model: `load(i)` gives image `i` aligned and normalised [3, h, w]; with
    /// `flip` each embedding adds the mirrored image's; returns [count, dim], L2-normalised.
    pub fn embed_all(
        &self,
        count: usize,
        flip: bool,
        load: impl Fn(usize) -> Result<Vec<f32>> + Sync,
    ) -> Result<Vec<f32>> {
        use crate::eval::embedder::{flip_horizontal, l2_normalise};
        use rayon::prelude::*;
        let dim = self.meta.embedding_dim;
        let mut out = Vec::with_capacity(count * dim);
        let progress = crate::progress::bar(count as u64, "embedding (tract)");
        for start in (0..count).step_by(self.batch) {
            let indices: Vec<usize> = (start..(start + self.batch).min(count)).collect();
            let images: Vec<Vec<f32>> = indices
                .par_iter()
                .map(|&i| load(i))
                .collect::<Result<_>>()?;
            let mut pixels: Vec<f32> = images.concat();
            let mut embeddings = self.embed(&pixels)?;
            if flip {
                flip_horizontal(&mut pixels, self.meta.input_width);
                let mirrored = self.embed(&pixels)?;
                embeddings
                    .iter_mut()
                    .zip(mirrored)
                    .for_each(|(a, b)| *a += b);
            }
            l2_normalise(&mut embeddings, dim);
            out.extend(embeddings);
            progress.inc(indices.len() as u64);
        }
        progress.finish_and_clear();
        Ok(out)
    }
}

/// Time spent per op kind when `plan` runs `input` `runs` times: (op name, milliseconds per
/// run, nodes of that kind), slowest first. For `facelock bench infer --profile`.
pub fn profile_ops(
    plan: &Plan,
    input: &Tensor,
    runs: usize,
) -> TractResult<Vec<(String, f64, usize)>> {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Instant;

    let runs = runs.max(1);
    let mut state = tract_onnx::tract_core::plan::SimpleState::new(plan)?;
    let mut spent: BTreeMap<String, (f64, BTreeSet<usize>)> = BTreeMap::new();
    for _ in 0..runs {
        state.run_plan_with_eval(
            tvec![input.clone().into_tvalue()],
            |ctx, op_state, node, inputs| {
                let start = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                let entry = spent.entry(node.op().name().to_string()).or_default();
                entry.0 += start.elapsed().as_secs_f64() * 1000.0;
                entry.1.insert(node.id);
                out
            },
        )?;
    }
    let mut rows: Vec<(String, f64, usize)> = spent
        .into_iter()
        .map(|(name, (ms, nodes))| (name, ms / runs as f64, nodes.len()))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(rows)
}
