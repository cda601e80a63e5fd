//! Verification pairs: LFW `pairs.txt` (`folds n` header or a single count) and the plain TSV
//! `fold<TAB>label<TAB>a<TAB>b` format.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Two images to compare; paths are relative to the data set root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Cross-validation fold, 0-based (0 for files without folds).
    pub fold: usize,
    /// Whether both images show the same person.
    pub same: bool,
    /// First image, e.g. `Name/Name_0001.jpg`.
    pub a: PathBuf,
    /// Second image.
    pub b: PathBuf,
}

/// All pairs of one file.
#[derive(Debug, Clone)]
pub struct Pairs {
    /// The file they came from.
    pub source: PathBuf,
    /// Number of folds (1 for files without folds).
    pub folds: usize,
    /// Pairs in file order.
    pub pairs: Vec<Pair>,
}

/// Pairs whose images both exist under a root, and what was skipped.
#[derive(Debug, Clone)]
pub struct ResolvedPairs {
    /// Usable pairs, in file order.
    pub pairs: Vec<Pair>,
    /// Pairs skipped because at least one image is missing.
    pub skipped: Vec<Pair>,
    /// The distinct missing images (relative paths).
    pub missing_images: BTreeSet<PathBuf>,
}

/// LFW image path `Name/Name_0001.jpg` for 1-based image `number`.
pub fn lfw_image_path(name: &str, number: u32) -> PathBuf {
    PathBuf::from(name).join(format!("{name}_{number:04}.jpg"))
}

impl Pairs {
    /// Reads a pairs file; the format is chosen by its first non-comment line: one or two integers
    /// mean LFW, anything else the TSV format.
    pub fn load(path: &Path) -> Result<Pairs> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses pairs text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Pairs> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
            .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
            .collect();
        let Some((_, header)) = lines.first() else {
            return Err(Error::Parse {
                path: source.into(),
                line: 1,
                reason: "no pairs".into(),
            });
        };
        let numbers: Option<Vec<usize>> = words(header).map(|f| f.parse().ok()).collect();
        let pairs = match numbers.as_deref() {
            Some([count]) => parse_lfw(&lines, 1, *count, source)?,
            Some([folds, count]) => parse_lfw(&lines, *folds, *count, source)?,
            _ => parse_tsv(&lines, source)?,
        };
        let folds = pairs.iter().map(|p| p.fold + 1).max().unwrap_or(1);
        Ok(Pairs {
            source: source.to_path_buf(),
            folds,
            pairs,
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the file held no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Keeps the pairs whose two images exist under `root`; the others are counted, listed and
    /// reported in a warning.
    pub fn resolve(&self, root: &Path) -> ResolvedPairs {
        let mut resolved = ResolvedPairs {
            pairs: Vec::new(),
            skipped: Vec::new(),
            missing_images: BTreeSet::new(),
        };
        for pair in &self.pairs {
            let mut complete = true;
            for image in [&pair.a, &pair.b] {
                if !root.join(image).is_file() {
                    resolved.missing_images.insert(image.clone());
                    complete = false;
                }
            }
            if complete {
                resolved.pairs.push(pair.clone());
            } else {
                resolved.skipped.push(pair.clone());
            }
        }
        if !resolved.skipped.is_empty() {
            tracing::warn!(
                "{}: skipped {} of {} pairs ({} missing images under {})",
                self.source.display(),
                resolved.skipped.len(),
                self.pairs.len(),
                resolved.missing_images.len(),
                root.display()
            );
        }
        resolved
    }
}

/// LFW body: `folds` blocks of `count` same-person lines (`name i j`) and `count`
/// different-person lines (`name1 i name2 j`).
fn parse_lfw(
    lines: &[(usize, &str)],
    folds: usize,
    count: usize,
    source: &Path,
) -> Result<Vec<Pair>> {
    let body = &lines[1..];
    let expected = folds.checked_mul(count).and_then(|n| n.checked_mul(2));
    if folds == 0 || expected != Some(body.len()) {
        let last = lines.last().map_or(1, |(i, _)| *i);
        return Err(Error::Parse {
            path: source.into(),
            line: last,
            reason: format!(
                "header promises {folds} fold(s) of {count} same + {count} different pairs, \
                 but {} pair lines follow",
                body.len()
            ),
        });
    }

    let mut pairs = Vec::with_capacity(body.len());
    for (k, (line, text)) in body.iter().enumerate() {
        let fields: Vec<&str> = words(text).collect();
        let error = |reason: String| Error::Parse {
            path: source.into(),
            line: *line,
            reason,
        };
        let number = |field: &str| -> Result<u32> {
            field
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| error(format!("'{field}' is not an image number (1, 2, ...)")))
        };
        let (same, a, b) = match fields.as_slice() {
            [name, i, j] => (
                true,
                lfw_image_path(name, number(i)?),
                lfw_image_path(name, number(j)?),
            ),
            [n1, i, n2, j] => (
                false,
                lfw_image_path(n1, number(i)?),
                lfw_image_path(n2, number(j)?),
            ),
            _ => {
                return Err(error(format!(
                    "expected 3 or 4 fields, found {}",
                    fields.len()
                )))
            }
        };
        pairs.push(Pair {
            fold: k / (2 * count),
            same,
            a,
            b,
        });
    }
    Ok(pairs)
}

/// TSV body: `fold<TAB>label<TAB>a<TAB>b`, label 1 = same person, 0 = different.
fn parse_tsv(lines: &[(usize, &str)], source: &Path) -> Result<Vec<Pair>> {
    let mut pairs = Vec::with_capacity(lines.len());
    for (line, text) in lines {
        let fields: Vec<&str> = text.split('\t').map(str::trim).collect();
        let error = |reason: String| Error::Parse {
            path: source.into(),
            line: *line,
            reason,
        };
        let [fold, label, a, b] = fields.as_slice() else {
            return Err(error(format!(
                "expected 'fold<TAB>label<TAB>a<TAB>b', found {} fields",
                fields.len()
            )));
        };
        if a.is_empty() || b.is_empty() {
            return Err(error("empty image path".into()));
        }
        let fold = fold
            .parse()
            .map_err(|_| error(format!("fold '{fold}' is not a number")))?;
        let same = match *label {
            "1" => true,
            "0" => false,
            other => return Err(error(format!("label '{other}' must be 1 (same) or 0"))),
        };
        pairs.push(Pair {
            fold,
            same,
            a: PathBuf::from(a),
            b: PathBuf::from(b),
        });
    }
    Ok(pairs)
}

/// Whitespace-separated fields of an LFW line.
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split_whitespace()
}
