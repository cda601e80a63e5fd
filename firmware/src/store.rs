//! Crash-safe single-file stores: atomic replace on save, corrupt files kept aside on load.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// What [`FileStore::load`] found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file yet.
    Missing,
    /// The file parsed.
    Found(T),
    /// The file did not parse; it was renamed to `kept_as` and the store is now empty.
    Corrupt {
        /// Why it did not parse.
        reason: String,
        /// Where the old file now is (`<name>.corrupt-<unix seconds>`).
        kept_as: PathBuf,
    },
}

/// One file replaced as a whole: written to `<name>.tmp` in the same directory, fsynced,
/// renamed over `<name>`, then the directory fsynced. A reader sees the old or the new
/// contents, never a mix, even if the process is killed at any instant.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    what: &'static str,
}

impl FileStore {
    /// A store at `path`; `what` names it in logs and errors ("gallery", "lockout state").
    pub fn new(path: impl Into<PathBuf>, what: &'static str) -> Self {
        FileStore {
            path: path.into(),
            what,
        }
    }

    /// The file this store owns.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file used while saving.
    pub fn temp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    fn directory(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// Reads and parses the file. A file that `parse` rejects is renamed aside (never
    /// deleted or overwritten), logged at error level and reported as [`Loaded::Corrupt`].
    pub fn load<T>(&self, parse: impl FnOnce(&[u8]) -> Result<T, String>) -> Result<Loaded<T>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => return Err(Error::io("reading", &self.path, e)),
        };
        match parse(&bytes) {
            Ok(value) => Ok(Loaded::Found(value)),
            Err(reason) => {
                let kept_as = self.quarantine()?;
                tracing::error!(
                    store = self.what,
                    path = %self.path.display(),
                    kept_as = %kept_as.display(),
                    %reason,
                    "corrupt file kept aside; starting empty"
                );
                Ok(Loaded::Corrupt { reason, kept_as })
            }
        }
    }

    /// Renames the current file to `<name>.corrupt-<unix seconds>` (with a counter if taken).
    fn quarantine(&self) -> Result<PathBuf> {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = self
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut kept_as = self
            .path
            .with_file_name(format!("{base}.corrupt-{seconds}"));
        let mut counter = 1;
        while kept_as.exists() {
            kept_as = self
                .path
                .with_file_name(format!("{base}.corrupt-{seconds}.{counter}"));
            counter += 1;
        }
        fs::rename(&self.path, &kept_as)
            .map_err(|e| Error::io("renaming corrupt", &self.path, e))?;
        sync_directory(&self.directory())?;
        Ok(kept_as)
    }

    /// Replaces the file's contents with `bytes` atomically and durably.
    pub fn save(&self, bytes: &[u8]) -> Result<()> {
        let temp = self.temp_path();
        let result = write_synced(&temp, bytes)
            .and_then(|()| {
                fs::rename(&temp, &self.path).map_err(|e| Error::io("renaming", &temp, e))
            })
            .and_then(|()| sync_directory(&self.directory()));
        if result.is_err() {
            // The old file is untouched; drop the partial temp file if we made one.
            if temp.is_file() {
                let _ = fs::remove_file(&temp);
            }
        }
        tracing::debug!(store = self.what, path = %self.path.display(), bytes = bytes.len(), ok = result.is_ok(), "save");
        result
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))?;
    file.sync_all().map_err(|e| Error::io("syncing", path, e))
}

fn sync_directory(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}
