//! The 5-point landmarks TSV: `relative/path.jpg` then ten pixel coordinates per line.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Five (x, y) points in source pixels: left eye, right eye, nose, left and right mouth corners.
pub type FivePoints = [[f32; 2]; 5];

/// Landmarks keyed by image path relative to the data set root.
#[derive(Debug, Clone, Default)]
pub struct Landmarks {
    points: HashMap<PathBuf, FivePoints>,
}

impl Landmarks {
    /// Reads a landmarks TSV. Lines starting with `#` and blank lines are skipped; every other
    /// line must be a path and ten finite numbers separated by tabs. A repeated path is an error.
    pub fn load(path: &Path) -> Result<Landmarks> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses landmarks TSV text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Landmarks> {
        let mut points = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let parse_error = |reason: String| Error::Parse {
                path: source.to_path_buf(),
                line: index + 1,
                reason,
            };
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 11 {
                return Err(parse_error(format!(
                    "expected a path and 10 numbers separated by tabs, found {} fields",
                    fields.len()
                )));
            }
            let mut five = [[0.0f32; 2]; 5];
            for (k, field) in fields[1..].iter().enumerate() {
                let value: f32 = field
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| parse_error(format!("'{field}' is not a finite number")))?;
                five[k / 2][k % 2] = value;
            }
            let key = PathBuf::from(fields[0].trim());
            if points.insert(key, five).is_some() {
                return Err(parse_error(format!(
                    "path '{}' appears twice",
                    fields[0].trim()
                )));
            }
        }
        tracing::debug!("{}: {} landmark rows", source.display(), points.len());
        Ok(Landmarks { points })
    }

    /// The landmarks of the image at `relative` (relative to the data set root), if listed.
    pub fn get(&self, relative: &Path) -> Option<FivePoints> {
        self.points.get(relative).copied()
    }

    /// Adds or replaces the landmarks of one image.
    pub fn insert(&mut self, relative: PathBuf, points: FivePoints) {
        self.points.insert(relative, points);
    }

    /// Number of images with landmarks.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no image has landmarks.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Writes the landmarks TSV (a `#` header, then rows sorted by path), readable by [`Landmarks::load`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut rows: Vec<_> = self.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = String::from(
            "# path\tleft_eye_x\tleft_eye_y\tright_eye_x\tright_eye_y\tnose_x\tnose_y\t\
             mouth_left_x\tmouth_left_y\tmouth_right_x\tmouth_right_y\n",
        );
        for (relative, points) in rows {
            text.push_str(&relative.to_string_lossy());
            for p in points {
                text.push_str(&format!("\t{:.2}\t{:.2}", p[0], p[1]));
            }
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// All (relative path, landmarks) rows, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &FivePoints)> {
        self.points
            .iter()
            .map(|(path, points)| (path.as_path(), points))
    }
}
