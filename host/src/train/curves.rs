//! Loss and accuracy curves (`loss.png`, `accuracy.png`) from a run's `metrics.jsonl`.
use std::path::Path;

use crate::plot::{line_chart, Series};
use crate::{Error, Result};

/// Redraws both charts in `out_dir` from the step and epoch records in `metrics`.
pub fn write(metrics: &Path, out_dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).map_err(|e| Error::io(metrics, e))?;
    let (mut step_loss, mut epoch_loss, mut epoch_accuracy) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let number = |key: &str| record[key].as_f64();
        match record["kind"].as_str() {
            Some("step") => {
                if let (Some(step), Some(loss)) = (number("step"), number("loss")) {
                    step_loss.push((step, loss));
                }
            }
            Some("epoch") => {
                if let (Some(epoch), Some(loss), Some(acc)) =
                    (number("epoch"), number("loss"), number("accuracy"))
                {
                    epoch_loss.push((epoch + 1.0, loss));
                    epoch_accuracy.push((epoch + 1.0, 100.0 * acc));
                }
            }
            _ => {}
        }
    }
    let steps_per_epoch = match epoch_loss.len() {
        0 => 1.0,
        n => step_loss.len().max(1) as f64 / n as f64,
    };
    let step_curve: Vec<(f64, f64)> = smooth(&step_loss, 20)
        .into_iter()
        .map(|(step, loss)| (step / steps_per_epoch, loss))
        .collect();
    let loss = [
        Series {
            label: "per step (moving mean of 20)",
            points: step_curve,
        },
        Series {
            label: "epoch mean",
            points: epoch_loss,
        },
    ];
    line_chart(
        &out_dir.join("loss.png"),
        "training loss",
        "epoch",
        "loss",
        &loss,
    )?;
    let accuracy = [Series {
        label: "train accuracy",
        points: epoch_accuracy,
    }];
    line_chart(
        &out_dir.join("accuracy.png"),
        "training accuracy",
        "epoch",
        "accuracy (%)",
        &accuracy,
    )
}

fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    let mut out = Vec::with_capacity(points.len());
    for (index, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if index >= window {
            sum -= points[index - window].1;
        }
        out.push((x, sum / (index + 1).min(window) as f64));
    }
    out
}
