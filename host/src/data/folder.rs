//! Identity folder trees (`<root>/<identity>/<image>`) filtered by an identity list.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::is_image_path;
use crate::{Error, Result};

/// One image of a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Path relative to the data set root, e.g. `Name/Name_0001.jpg`.
    pub path: PathBuf,
    /// Index into [`Dataset::identities`].
    pub label: u32,
}

/// Images grouped by identity; labels are dense, in sorted identity-name order.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder holding one sub-folder per identity.
    pub root: PathBuf,
    /// Identity names (folder names), sorted; `label` indexes this.
    pub identities: Vec<String>,
    /// All kept images, sorted by path.
    pub samples: Vec<Sample>,
    /// Identities named in the identity list that have no folder under `root` (skipped).
    pub missing_identities: Vec<String>,
    /// Identities dropped for having fewer than `min_images` images.
    pub too_few_images: Vec<String>,
    /// Files inside identity folders without an image extension (ignored).
    pub ignored_files: Vec<PathBuf>,
}

impl Dataset {
    /// Scans `root`. With `identity_list`, only the identities it names are read (LFW
    /// `peopleDevTrain.txt`/`people.txt` format, or one name per line); listed identities without a
    /// folder are skipped and counted in a warning. Identities with fewer than `min_images` images
    /// are dropped.
    pub fn from_folder(
        root: &Path,
        identity_list: Option<&Path>,
        min_images: usize,
    ) -> Result<Dataset> {
        let wanted = identity_list.map(read_identity_list).transpose()?;
        let names = match &wanted {
            Some(list) => list.clone(),
            None => list_subfolders(root)?,
        };

        let mut missing_identities = Vec::new();
        let mut too_few_images = Vec::new();
        let mut ignored_files = Vec::new();
        let mut kept: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for name in names {
            let folder = root.join(&name);
            if !folder.is_dir() {
                missing_identities.push(name);
                continue;
            }
            let mut images = Vec::new();
            for entry in std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
                let entry = entry.map_err(|e| Error::io(&folder, e))?;
                let relative = PathBuf::from(&name).join(entry.file_name());
                if !entry.path().is_file() {
                    continue;
                }
                if is_image_path(&relative) {
                    images.push(relative);
                } else {
                    ignored_files.push(relative);
                }
            }
            if images.len() < min_images.max(1) {
                too_few_images.push(name);
                continue;
            }
            images.sort();
            kept.insert(name, images);
        }

        if !missing_identities.is_empty() {
            tracing::warn!(
                "{} identities listed in {} have no folder under {}; skipped",
                missing_identities.len(),
                identity_list
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                root.display()
            );
        }
        if !ignored_files.is_empty() {
            tracing::warn!(
                "{} non-image files ignored under {}",
                ignored_files.len(),
                root.display()
            );
        }

        let mut identities = Vec::with_capacity(kept.len());
        let mut samples = Vec::new();
        for (label, (name, images)) in kept.into_iter().enumerate() {
            identities.push(name);
            samples.extend(images.into_iter().map(|path| Sample {
                path,
                label: label as u32,
            }));
        }
        let dataset = Dataset {
            root: root.to_path_buf(),
            identities,
            samples,
            missing_identities,
            too_few_images,
            ignored_files,
        };
        tracing::info!(
            "{}: {} identities, {} images ({} dropped below {} images)",
            root.display(),
            dataset.identities.len(),
            dataset.samples.len(),
            dataset.too_few_images.len(),
            min_images
        );
        Ok(dataset)
    }

    /// Number of images per identity, indexed by label.
    pub fn images_per_identity(&self) -> Vec<usize> {
        let mut counts = vec![0; self.identities.len()];
        for sample in &self.samples {
            counts[sample.label as usize] += 1;
        }
        counts
    }

    /// Histogram: images-per-identity value -> number of identities with that many images.
    pub fn histogram(&self) -> BTreeMap<usize, usize> {
        let mut histogram = BTreeMap::new();
        for count in self.images_per_identity() {
            *histogram.entry(count).or_insert(0) += 1;
        }
        histogram
    }

    /// Absolute (root-joined) path of a sample.
    pub fn full_path(&self, sample: &Sample) -> PathBuf {
        self.root.join(&sample.path)
    }
}

/// Sub-folder names of `root`, sorted.
fn list_subfolders(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        if entry.path().is_dir() {
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => tracing::warn!("skipping non-UTF-8 folder name {name:?}"),
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Reads identity names from an LFW-style list (`name<TAB>count` lines, bare-number count lines
/// such as the first line of `peopleDevTrain.txt` or the fold sizes of `people.txt`) or a plain
/// one-name-per-line list. Blank lines and `#` comments are skipped; repeats are kept once.
pub fn read_identity_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.parse::<u64>().is_ok() {
            continue;
        }
        let fields: Vec<&str> = line.split(['\t', ' ']).filter(|f| !f.is_empty()).collect();
        let name = match fields.as_slice() {
            [name] => *name,
            [name, count] if count.parse::<u64>().is_ok() => *name,
            _ => {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: index + 1,
                    reason: format!("expected 'name' or 'name<TAB>count', found '{line}'"),
                })
            }
        };
        if name.contains(['/', '\\']) || name == ".." || name == "." {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: index + 1,
                reason: format!("identity '{name}' is not a plain folder name"),
            });
        }
        if seen.insert(name.to_string()) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}
