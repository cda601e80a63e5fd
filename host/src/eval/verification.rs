//! Verification metrics from pair scores: k-fold accuracy, best threshold, ROC, TAR@FAR,
//! EER and AUC. A pair is accepted as "same person" when its score is strictly above the
//! threshold.
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Scored pairs: similarity (higher = more alike) and ground truth.
pub struct ScoredPairs<'a> {
    /// Similarity per pair (cosine of the embeddings).
    pub scores: &'a [f64],
    /// True when the pair shows the same person.
    pub same: &'a [bool],
}

impl ScoredPairs<'_> {
    fn check(&self) -> Result<(usize, usize)> {
        if self.scores.len() != self.same.len() {
            return Err(Error::InvalidInput(format!(
                "{} scores for {} pair labels",
                self.scores.len(),
                self.same.len()
            )));
        }
        if let Some(i) = self.scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "score of pair {i} is not finite"
            )));
        }
        let genuine = self.same.iter().filter(|&&s| s).count();
        Ok((genuine, self.same.len() - genuine))
    }
}

/// Threshold with the highest accuracy on the pairs at `indices`, and that accuracy. Among
/// equally good thresholds the lowest gap midpoint is taken.
pub fn best_threshold(pairs: &ScoredPairs, indices: &[usize]) -> (f64, f64) {
    let mut order: Vec<usize> = indices.to_vec();
    order.sort_by(|&a, &b| pairs.scores[a].total_cmp(&pairs.scores[b]));
    // Threshold below everything: all accepted, correct = genuine count.
    let genuine = order.iter().filter(|&&i| pairs.same[i]).count();
    let mut correct = genuine as i64;
    let lowest = order.first().map_or(0.0, |&i| pairs.scores[i]);
    let (mut best_correct, mut best_threshold) = (correct, lowest - 1e-6);
    let mut k = 0;
    while k < order.len() {
        // Move every pair with this score to the rejected side.
        let score = pairs.scores[order[k]];
        while k < order.len() && pairs.scores[order[k]] == score {
            correct += if pairs.same[order[k]] { -1 } else { 1 };
            k += 1;
        }
        if correct > best_correct {
            best_correct = correct;
            best_threshold = match order.get(k) {
                Some(&next) => 0.5 * (score + pairs.scores[next]),
                None => score + 1e-6,
            };
        }
    }
    (
        best_threshold,
        best_correct as f64 / indices.len().max(1) as f64,
    )
}

/// Accuracy of the pairs at `indices` at a fixed threshold.
pub fn accuracy_at(pairs: &ScoredPairs, indices: &[usize], threshold: f64) -> f64 {
    let correct = indices
        .iter()
        .filter(|&&i| (pairs.scores[i] > threshold) == pairs.same[i])
        .count();
    correct as f64 / indices.len().max(1) as f64
}

/// K-fold verification accuracy: each fold is tested at the threshold picked on the others.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FoldAccuracy {
    /// Mean of the fold accuracies.
    pub mean: f64,
    /// Population standard deviation of the fold accuracies.
    pub std: f64,
    /// Accuracy of each fold.
    pub folds: Vec<f64>,
    /// Threshold used for each fold.
    pub thresholds: Vec<f64>,
}

/// Runs k-fold verification with `folds[i]` giving each pair's fold (0-based).
pub fn k_fold_accuracy(pairs: &ScoredPairs, folds: &[usize]) -> Result<FoldAccuracy> {
    pairs.check()?;
    if folds.len() != pairs.scores.len() {
        return Err(Error::InvalidInput(format!(
            "{} fold ids for {} pairs",
            folds.len(),
            pairs.scores.len()
        )));
    }
    let count = folds.iter().max().map_or(0, |m| m + 1);
    if count < 2 {
        return Err(Error::InvalidInput(
            "k-fold accuracy needs at least 2 folds".into(),
        ));
    }
    let (mut accuracies, mut thresholds) = (Vec::new(), Vec::new());
    for fold in 0..count {
        let (test, train): (Vec<usize>, Vec<usize>) =
            (0..folds.len()).partition(|&i| folds[i] == fold);
        if test.is_empty() {
            continue;
        }
        let (threshold, _) = best_threshold(pairs, &train);
        accuracies.push(accuracy_at(pairs, &test, threshold));
        thresholds.push(threshold);
    }
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    let var = accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accuracies.len() as f64;
    Ok(FoldAccuracy {
        mean,
        std: var.sqrt(),
        folds: accuracies,
        thresholds,
    })
}

/// One operating point of the ROC curve.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RocPoint {
    /// Accept when score > threshold.
    pub threshold: f64,
    /// False accept rate: accepted impostor pairs / impostor pairs.
    pub far: f64,
    /// True accept rate: accepted genuine pairs / genuine pairs.
    pub tar: f64,
}

/// ROC from "accept nothing" to "accept everything", one point per distinct score.
pub fn roc(pairs: &ScoredPairs) -> Result<Vec<RocPoint>> {
    let (genuine, impostor) = pairs.check()?;
    if genuine == 0 || impostor == 0 {
        return Err(Error::InvalidInput(format!(
            "ROC needs genuine and impostor pairs, got {genuine} and {impostor}"
        )));
    }
    let mut order: Vec<usize> = (0..pairs.scores.len()).collect();
    order.sort_by(|&a, &b| pairs.scores[b].total_cmp(&pairs.scores[a]));
    let top = pairs.scores[order[0]];
    let mut points = vec![RocPoint {
        threshold: top,
        far: 0.0,
        tar: 0.0,
    }];
    let (mut tp, mut fp, mut k) = (0usize, 0usize, 0usize);
    while k < order.len() {
        let score = pairs.scores[order[k]];
        while k < order.len() && pairs.scores[order[k]] == score {
            if pairs.same[order[k]] {
                tp += 1
            } else {
                fp += 1
            }
            k += 1;
        }
        let threshold = order
            .get(k)
            .map_or(score - 1e-6, |&next| 0.5 * (score + pairs.scores[next]));
        points.push(RocPoint {
            threshold,
            far: fp as f64 / impostor as f64,
            tar: tp as f64 / genuine as f64,
        });
    }
    Ok(points)
}

/// Area under the ROC curve (trapezoids).
pub fn auc(roc: &[RocPoint]) -> f64 {
    roc.windows(2)
        .map(|w| (w[1].far - w[0].far) * 0.5 * (w[1].tar + w[0].tar))
        .sum()
}

/// Equal error rate: where FAR equals 1 − TAR, linearly interpolated between ROC points.
pub fn eer(roc: &[RocPoint]) -> f64 {
    for w in roc.windows(2) {
        let (d0, d1) = (w[0].far - (1.0 - w[0].tar), w[1].far - (1.0 - w[1].tar));
        if d0 <= 0.0 && d1 >= 0.0 {
            let t = if d1 - d0 > 0.0 { -d0 / (d1 - d0) } else { 0.0 };
            return w[0].far + t * (w[1].far - w[0].far);
        }
    }
    1.0
}

/// TAR at a target FAR, with the threshold and whether the FAR is resolvable at all.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TarAtFar {
    /// Target false accept rate.
    pub far: f64,
    /// Highest TAR with an FAR not above the target.
    pub tar: f64,
    /// Accept when score > threshold.
    pub threshold: f64,
    /// FAR actually reached at that threshold.
    pub achieved_far: f64,
    /// Impostor pairs available.
    pub impostor_pairs: usize,
    /// False when far < 1 / impostor_pairs: the set is too small to measure this FAR, and
    /// the numbers are those of the strictest threshold (no impostor accepted).
    pub measurable: bool,
}

/// TAR at each target FAR.
pub fn tar_at_far(roc: &[RocPoint], impostor_pairs: usize, targets: &[f64]) -> Vec<TarAtFar> {
    targets
        .iter()
        .map(|&far| {
            let point = roc
                .iter()
                .rev()
                .find(|p| p.far <= far + 1e-12)
                .copied()
                .unwrap_or(RocPoint {
                    threshold: f64::INFINITY,
                    far: 0.0,
                    tar: 0.0,
                });
            TarAtFar {
                far,
                tar: point.tar,
                threshold: point.threshold,
                achieved_far: point.far,
                impostor_pairs,
                measurable: far * impostor_pairs as f64 >= 1.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separable_scores_give_full_accuracy() {
        let scores: Vec<f64> = (0..200)
            .map(|i| {
                if i % 2 == 0 {
                    0.6 + i as f64 * 1e-3
                } else {
                    0.4 - i as f64 * 1e-3
                }
            })
            .collect();
        let same: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let folds: Vec<usize> = (0..200).map(|i| i % 10).collect();
        let pairs = ScoredPairs {
            scores: &scores,
            same: &same,
        };
        let result = k_fold_accuracy(&pairs, &folds).unwrap();
        assert_eq!(result.mean, 1.0);
        assert_eq!(result.std, 0.0);
        let roc = roc(&pairs).unwrap();
        assert!((auc(&roc) - 1.0).abs() < 1e-12);
        assert!(eer(&roc).abs() < 1e-12);
    }

    /// Each fold: 10 genuine at 0.60..0.69, one genuine at 0.1, 10 impostors at 0.00..0.36.
    /// The best threshold on any 9 folds lies in (0.36, 0.60) and misclassifies exactly the
    /// low genuine pair, so every fold scores 20/21.
    #[test]
    fn constructed_case_has_the_computed_accuracy() {
        let (mut scores, mut same, mut folds) = (Vec::new(), Vec::new(), Vec::new());
        for fold in 0..10 {
            for k in 0..10 {
                scores.extend([0.6 + k as f64 * 0.01, k as f64 * 0.04]);
                same.extend([true, false]);
                folds.extend([fold, fold]);
            }
            scores.push(0.1);
            same.push(true);
            folds.push(fold);
        }
        let pairs = ScoredPairs {
            scores: &scores,
            same: &same,
        };
        let result = k_fold_accuracy(&pairs, &folds).unwrap();
        assert!((result.mean - 20.0 / 21.0).abs() < 1e-12, "{}", result.mean);
        assert!(result.thresholds.iter().all(|t| (0.36..0.6).contains(t)));
        let all: Vec<usize> = (0..scores.len()).collect();
        let (threshold, accuracy) = best_threshold(&pairs, &all);
        assert!((accuracy - 200.0 / 210.0).abs() < 1e-12 && (0.36..0.6).contains(&threshold));

        // 100 impostors: FAR 1e-2 is measurable (1 false accept allowed), 1e-3 is not.
        let roc = roc(&pairs).unwrap();
        let tars = tar_at_far(&roc, 100, &[1e-1, 1e-2, 1e-3]);
        assert!(tars[1].measurable && !tars[2].measurable);
        // At FAR 0 every genuine pair except the ten low ones is above all impostors.
        assert!((tars[2].tar - 100.0 / 110.0).abs() < 1e-12);
        // AUC = P(genuine > impostor): the 100 high genuine pairs beat all 100 impostors;
        // the 10 low ones (0.1) beat the 30 impostors at 0.00, 0.04 and 0.08.
        let expected_auc = (100.0 * 100.0 + 10.0 * 30.0) / (110.0 * 100.0);
        assert!((auc(&roc) - expected_auc).abs() < 1e-12, "{}", auc(&roc));
    }
}
