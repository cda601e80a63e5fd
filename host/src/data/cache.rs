//! On-disk cache of aligned RGB u8 crops, so later epochs decode no JPEG.
//!
//! One file per crop, `<dir>/<2 hex>/<64 hex>.rgb`, holding the raw [112, 112, 3] bytes. The name
//! is a SHA-256 of the source path, its size and modification time, the landmarks (or the
//! fallback marker) and the crop geometry, so a changed image, landmark or template misses.
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use facelock_shared::align::ALIGNED_RGB_LEN;
use sha2::{Digest, Sha256};

use crate::data::align::{align_image_rgb, AlignConfig};
use crate::data::landmarks::FivePoints;
use crate::{Error, Result};

/// Bumped when the crop bytes for the same inputs would change (e.g. a new warp).
const CACHE_FORMAT: &[u8] = b"facelock-crop-v1";

/// A directory of aligned crops, shareable between threads.
#[derive(Debug)]
pub struct CropCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CropCache {
    /// Opens (creating if needed) the cache directory.
    pub fn open(dir: &Path) -> Result<CropCache> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(CropCache {
            dir: dir.to_path_buf(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cache key (64 hex digits) for aligning `source` with `landmarks` under `config`.
    pub fn key(
        source: &Path,
        landmarks: Option<&FivePoints>,
        config: &AlignConfig,
    ) -> Result<String> {
        let metadata = std::fs::metadata(source).map_err(|e| Error::io(source, e))?;
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let absolute = std::path::absolute(source).map_err(|e| Error::io(source, e))?;

        let mut hasher = Sha256::new();
        hasher.update(CACHE_FORMAT);
        hasher.update((absolute.as_os_str().len() as u64).to_le_bytes());
        hasher.update(absolute.as_os_str().as_bytes());
        hasher.update(metadata.len().to_le_bytes());
        hasher.update(modified.to_le_bytes());
        match landmarks {
            Some(points) => {
                hasher.update([1u8]);
                for value in points.iter().flatten() {
                    hasher.update(value.to_le_bytes());
                }
            }
            None => hasher.update([0u8]),
        }
        hasher.update(config.geometry_key());
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// The file of `key`; `None` unless the key is 64 lowercase hex digits.
    fn file(&self, key: &str) -> Option<PathBuf> {
        let valid = key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| self.dir.join(&key[..2]).join(format!("{key}.rgb")))
    }

    /// The cached crop for `key` (from [`CropCache::key`]), if present and intact.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.file(key)?;
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == ALIGNED_RGB_LEN => Some(bytes),
            Ok(bytes) => {
                tracing::warn!(
                    "{}: {} bytes, not a crop; re-aligning",
                    path.display(),
                    bytes.len()
                );
                None
            }
            Err(_) => None,
        }
    }

    /// Stores a crop, [112, 112, 3], under `key` (from [`CropCache::key`]) atomically (temporary file, then rename).
    pub fn put(&self, key: &str, crop: &[u8]) -> Result<()> {
        if crop.len() != ALIGNED_RGB_LEN {
            return Err(Error::InvalidInput(format!(
                "crop has {} bytes, expected {ALIGNED_RGB_LEN}",
                crop.len()
            )));
        }
        let path = self
            .file(key)
            .ok_or_else(|| Error::InvalidInput(format!("'{key}' is not a crop cache key")))?;
        let folder = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        let temporary = folder.join(format!(
            "{key}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut file = std::fs::File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        file.write_all(crop).map_err(|e| Error::io(&temporary, e))?;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(|e| Error::io(&path, e))
    }

    /// The aligned crop of `source`, from the cache or by decoding and aligning (then stored).
    pub fn get_or_align(
        &self,
        source: &Path,
        landmarks: Option<&FivePoints>,
        config: &AlignConfig,
    ) -> Result<Vec<u8>> {
        let key = Self::key(source, landmarks, config)?;
        if let Some(crop) = self.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(crop);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let crop = align_image_rgb(source, landmarks, config)?;
        self.put(&key, &crop)?;
        Ok(crop)
    }

    /// (hits, misses) since the cache was opened.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
