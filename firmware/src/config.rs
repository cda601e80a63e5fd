//! Start-up settings: the optional `facelock.toml` and the admin key file.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Shortest admin key accepted, in bytes (the shared authentication minimum).
pub const MIN_ADMIN_KEY_LEN: usize = facelock_shared::auth::KEY_LEN_MIN;

/// Settings read from `--config facelock.toml`; every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Cosine threshold for accepting a verify; default: the model's FAR 1e-3 threshold.
    pub threshold: Option<f32>,
    /// Lock pulse length in milliseconds (the `--pulse-ms` flag wins).
    pub pulse_ms: Option<u64>,
    /// Serial baud rate (the `--baud` flag wins).
    pub baud: Option<u32>,
    /// Centre-crop fraction for images sent without landmarks, in (0, 1]; default 0.5.
    pub crop_fraction: Option<f32>,
    /// Failed verifies in a row that start a lockout; default 5.
    pub max_failures: Option<u8>,
    /// First lockout in milliseconds (doubling after each further lockout); default 30000.
    pub lockout_ms: Option<u64>,
}

impl FileConfig {
    /// Reads and checks a TOML config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("reading config", path, e))?;
        let config: FileConfig = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(t) = config.threshold {
            if !(-1.0..=1.0).contains(&t) {
                return Err(Error::Config {
                    path: path.to_owned(),
                    message: format!("threshold {t} is not a cosine in [-1, 1]"),
                });
            }
        }
        if let Some(f) = config.crop_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::Config {
                    path: path.to_owned(),
                    message: format!("crop_fraction {f} is not in (0, 1]"),
                });
            }
        }
        Ok(config)
    }
}

/// The admin key: secret bytes shared with the enrolling host. Never logged or printed.
pub struct AdminKey(Vec<u8>);

impl AdminKey {
    /// Reads the key file: hex text (whitespace ignored) if it is all hex digits, otherwise
    /// the raw bytes. Refuses a missing file or a key shorter than [`MIN_ADMIN_KEY_LEN`].
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::AdminKey {
            path: PathBuf::from(path),
            message,
        };
        let raw = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let text: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let key = if !text.is_empty()
            && text.len().is_multiple_of(2)
            && text.iter().all(u8::is_ascii_hexdigit)
        {
            text.chunks(2)
                .map(|pair| {
                    let digits = std::str::from_utf8(pair).unwrap_or("00");
                    u8::from_str_radix(digits, 16).unwrap_or(0)
                })
                .collect()
        } else {
            raw
        };
        if key.len() < MIN_ADMIN_KEY_LEN {
            return Err(bad(format!(
                "key is {} bytes, shorter than the minimum of {MIN_ADMIN_KEY_LEN}",
                key.len()
            )));
        }
        Ok(AdminKey(key))
    }

    /// The key bytes, for HMAC only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminKey({} bytes, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_hex_raw_short_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let hex = dir.path().join("hex");
        std::fs::write(&hex, "00112233445566778899aabbccddeeff\n").unwrap();
        assert_eq!(AdminKey::load(&hex).unwrap().expose()[15], 0xff);

        let short = dir.path().join("short");
        std::fs::write(&short, "0011").unwrap();
        let err = AdminKey::load(&short).unwrap_err().to_string();
        assert!(err.contains("2 bytes") && err.contains("short"), "{err}");

        let missing = AdminKey::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("nope") && missing.contains("cannot read"),
            "{missing}"
        );
        assert!(!format!("{:?}", AdminKey::load(&hex).unwrap()).contains("00112233"));
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facelock.toml");
        std::fs::write(&path, "threshold = 0.4\npulse_ms = 500\n").unwrap();
        let config = FileConfig::load(&path).unwrap();
        assert_eq!((config.threshold, config.pulse_ms), (Some(0.4), Some(500)));
        std::fs::write(&path, "treshold = 0.4\n").unwrap();
        assert!(FileConfig::load(&path)
            .unwrap_err()
            .to_string()
            .contains("treshold"));
        std::fs::write(&path, "threshold = 3.0\n").unwrap();
        assert!(FileConfig::load(&path).is_err());
    }
}
