//! Reads the verification thresholds at FAR 1e-2/1e-3/1e-4 from a `facelock eval` report.
use std::path::Path;

use serde_json::Value;

use crate::onnx::Thresholds;
use crate::{Error, Result};

/// The thresholds in `report.json` (field `tar_at_far`: objects with `far`, `threshold`,
/// `measurable`, `impostor_pairs`). The source names the pairs file (field `pairs_file` when
/// present, else the report path), the pair count, and any FAR the set was too small for.
pub fn thresholds_from_report(path: &Path) -> Result<Thresholds> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let report: Value = serde_json::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        reason: e.to_string(),
    })?;
    let bad = |reason: &str| Error::Parse {
        path: path.to_path_buf(),
        line: 0,
        reason: reason.into(),
    };
    let entries = report["tar_at_far"]
        .as_array()
        .ok_or_else(|| bad("no 'tar_at_far' list"))?;
    let mut unmeasurable = Vec::new();
    let mut at = |far: f64| -> Result<f64> {
        let entry = entries
            .iter()
            .find(|e| {
                e["far"]
                    .as_f64()
                    .is_some_and(|f| (f / far - 1.0).abs() < 1e-6)
            })
            .ok_or_else(|| bad(&format!("no entry for FAR {far:e} in 'tar_at_far'")))?;
        if entry["measurable"].as_bool() == Some(false) {
            unmeasurable.push(format!("{far:e}"));
        }
        entry["threshold"]
            .as_f64()
            .ok_or_else(|| bad(&format!("FAR {far:e} has no threshold")))
    };
    let (far_1e2, far_1e3, far_1e4) = (at(1e-2)?, at(1e-3)?, at(1e-4)?);

    let pairs_file = report["pairs_file"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| path.display().to_string());
    let mut source = match report["pairs"].as_u64() {
        Some(n) => format!("{pairs_file} ({n} pairs"),
        None => format!("{pairs_file} ("),
    };
    if !unmeasurable.is_empty() {
        let impostors = report["impostor_pairs"].as_u64().unwrap_or(0);
        source.push_str(&format!(
            "; FAR {} not measurable with {impostors} impostor pairs",
            unmeasurable.join(", ")
        ));
    }
    source.push(')');
    let source = source
        .replace("()", "")
        .replace("(;", "(")
        .trim()
        .to_string();
    Ok(Thresholds {
        far_1e2,
        far_1e3,
        far_1e4,
        source,
    })
}
