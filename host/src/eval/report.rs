//! The verification report: every metric of a scored pair set, as JSON and as PNG charts.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::verification::{self, FoldAccuracy, ScoredPairs, TarAtFar};
use crate::plot::{histogram, line_chart, Series};
use crate::{Error, Result};

/// FARs at which TAR and thresholds are reported.
pub const REPORT_FARS: [f64; 4] = [1e-1, 1e-2, 1e-3, 1e-4];

/// Best single-threshold accuracy over all pairs (view-1 files have no folds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestThreshold {
    /// Accept when score > threshold.
    pub threshold: f64,
    /// Accuracy at that threshold, in [0, 1]. Optimistic: chosen on the same pairs.
    pub accuracy: f64,
}

/// All verification metrics of one evaluation (written as `report.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerificationReport {
    /// Pairs scored.
    pub pairs: usize,
    /// Same-person pairs among them.
    pub genuine_pairs: usize,
    /// Different-person pairs among them.
    pub impostor_pairs: usize,
    /// K-fold accuracy when the pairs file has folds, else null.
    pub k_fold: Option<FoldAccuracy>,
    /// Best-threshold accuracy over all pairs.
    pub best_threshold: BestThreshold,
    /// TAR and threshold at FAR 1e-1, 1e-2, 1e-3, 1e-4 (each flagged when not measurable).
    pub tar_at_far: Vec<TarAtFar>,
    /// Equal error rate in [0, 1].
    pub eer: f64,
    /// Area under the ROC curve.
    pub auc: f64,
}

impl VerificationReport {
    /// Computes every metric; `folds` gives each pair's 0-based fold, when there are folds.
    pub fn compute(pairs: &ScoredPairs, folds: Option<&[usize]>) -> Result<Self> {
        let roc = verification::roc(pairs)?;
        let genuine = pairs.same.iter().filter(|&&s| s).count();
        let impostor = pairs.same.len() - genuine;
        let k_fold = match folds {
            Some(folds) => Some(verification::k_fold_accuracy(pairs, folds)?),
            None => None,
        };
        let all: Vec<usize> = (0..pairs.scores.len()).collect();
        let (threshold, accuracy) = verification::best_threshold(pairs, &all);
        Ok(Self {
            pairs: pairs.scores.len(),
            genuine_pairs: genuine,
            impostor_pairs: impostor,
            k_fold,
            best_threshold: BestThreshold {
                threshold,
                accuracy,
            },
            tar_at_far: verification::tar_at_far(&roc, impostor, &REPORT_FARS),
            eer: verification::eer(&roc),
            auc: verification::auc(&roc),
        })
    }

    /// Human-readable lines for the terminal.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "pairs: {} ({} same, {} different)",
            self.pairs, self.genuine_pairs, self.impostor_pairs
        )];
        if let Some(k) = &self.k_fold {
            lines.push(format!(
                "{}-fold accuracy: {:.2}% ± {:.2}%",
                k.folds.len(),
                100.0 * k.mean,
                100.0 * k.std
            ));
        }
        lines.push(format!(
            "best-threshold accuracy: {:.2}% at threshold {:.4}",
            100.0 * self.best_threshold.accuracy,
            self.best_threshold.threshold
        ));
        for t in &self.tar_at_far {
            let note = if t.measurable {
                String::new()
            } else {
                format!(" (not measurable: {} impostor pairs)", t.impostor_pairs)
            };
            lines.push(format!(
                "TAR@FAR={:.0e}: {:.2}% at threshold {:.4}{note}",
                t.far,
                100.0 * t.tar,
                t.threshold
            ));
        }
        lines.push(format!(
            "EER: {:.2}%   AUC: {:.4}",
            100.0 * self.eer,
            self.auc
        ));
        lines
    }

    /// Writes `report.json`, `roc.png` and `scores.png` into `dir`.
    pub fn write(&self, pairs: &ScoredPairs, dir: &Path, extra: serde_json::Value) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut json =
            serde_json::to_value(self).map_err(|e| Error::InvalidInput(e.to_string()))?;
        if let (Some(object), serde_json::Value::Object(extra)) = (json.as_object_mut(), extra) {
            object.extend(extra);
        }
        let path = dir.join("report.json");
        let text =
            serde_json::to_string_pretty(&json).map_err(|e| Error::InvalidInput(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;

        let roc = verification::roc(pairs)?;
        let floor = 1.0 / (self.impostor_pairs.max(1) as f64);
        let points = roc
            .iter()
            .filter(|p| p.far > 0.0)
            .map(|p| (p.far.max(floor).log10(), p.tar))
            .collect();
        let series = [Series {
            label: "ROC",
            points,
        }];
        line_chart(&dir.join("roc.png"), "ROC", "log10 FAR", "TAR", &series)?;
        let (same, different): (Vec<_>, Vec<_>) =
            (0..pairs.scores.len()).partition(|&i| pairs.same[i]);
        let same: Vec<f64> = same.iter().map(|&i| pairs.scores[i]).collect();
        let different: Vec<f64> = different.iter().map(|&i| pairs.scores[i]).collect();
        let series = [
            ("same person", same.as_slice()),
            ("different people", different.as_slice()),
        ];
        histogram(
            &dir.join("scores.png"),
            "pair scores",
            "cosine similarity",
            &series,
            40,
        )
    }
}
