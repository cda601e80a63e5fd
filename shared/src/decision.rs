//! The unlock decision and the lockout after repeated failures, driven by a caller's clock.
//!
//! `shared` has no clock: every call takes `now_ms` from a monotonic millisecond clock of the
//! caller's choice. Such clocks restart at boot, so the persisted form ([`Persisted`]) stores
//! the *remaining* lockout, and [`Lockout::resume`] re-bases it on the new clock. Persist after
//! every [`Lockout::record`]; a board restarted during a lockout then waits at least the time
//! that was left at the last write (never less), so power-cycling does not shorten a lockout.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frame::CRC32;
use crate::gallery::Score;

/// When a score unlocks, and how failures are punished.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Policy {
    /// Lowest cosine score that unlocks, in [-1, 1] (from the model's metadata).
    pub threshold: f32,
    /// Consecutive failures that start a lockout (default 5).
    pub max_failures: u8,
    /// First lockout duration in milliseconds (default 30 000).
    pub lockout_ms: u64,
    /// Each further lockout without a success in between lasts twice as long (default on).
    pub doubling: bool,
    /// Upper bound of a doubled lockout in milliseconds (default one hour).
    pub max_lockout_ms: u64,
}

impl Policy {
    /// The default policy (5 failures, 30 s doubling up to 1 h) at `threshold`.
    pub const fn new(threshold: f32) -> Self {
        Self {
            threshold,
            max_failures: 5,
            lockout_ms: 30_000,
            doubling: true,
            max_lockout_ms: 3_600_000,
        }
    }

    /// Checks the values: threshold finite in [-1, 1], at least one failure, a non-zero
    /// lockout and a cap no shorter than it.
    pub fn validate(&self) -> Result<()> {
        let threshold_ok = self.threshold.is_finite() && self.threshold.abs() <= 1.0;
        if !threshold_ok
            || self.max_failures == 0
            || self.lockout_ms == 0
            || self.max_lockout_ms < self.lockout_ms
        {
            return Err(Error::InvalidPolicy);
        }
        Ok(())
    }

    /// Whether `score` unlocks: at least the threshold (NaN never does).
    pub fn accepts(&self, score: Score) -> bool {
        score >= self.threshold
    }

    /// Duration of the lockout number `level` (0 = first), doubled and capped per policy.
    pub fn lockout_duration(&self, level: u8) -> u64 {
        let factor = if self.doubling {
            1u64.checked_shl(u32::from(level))
        } else {
            Some(1)
        };
        let duration = factor.map_or(u64::MAX, |f| self.lockout_ms.saturating_mul(f));
        duration.min(self.max_lockout_ms.max(self.lockout_ms))
    }
}

/// A verify attempt refused because of a lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LockedOut {
    /// Milliseconds until attempts are allowed again.
    pub remaining_ms: u64,
}

/// What the lockout looks like after a recorded attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Outcome {
    /// Consecutive failures since the last success or the last lockout start.
    pub failures: u8,
    /// Milliseconds of lockout now in force (0 if none).
    pub locked_out_ms: u64,
}

/// Failure counting and lockout state. Drive it with [`Lockout::check`] before a verify and
/// [`Lockout::record`] after it.
///
/// Rules: a success clears everything; `max_failures` failures in a row start a lockout and
/// reset the count; the next lockout without a success in between lasts twice as long
/// (see [`Policy::lockout_duration`]). Attempts during a lockout are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lockout {
    failures: u8,
    level: u8,
    locked_until_ms: u64,
}

impl Lockout {
    /// No failures, not locked.
    pub const fn new() -> Self {
        Self {
            failures: 0,
            level: 0,
            locked_until_ms: 0,
        }
    }

    /// `Err` with the time left if attempts are locked out at `now_ms`.
    pub fn check(&self, now_ms: u64) -> core::result::Result<(), LockedOut> {
        match self.remaining_ms(now_ms) {
            0 => Ok(()),
            remaining_ms => Err(LockedOut { remaining_ms }),
        }
    }

    /// Milliseconds of lockout left at `now_ms`, 0 if none.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.locked_until_ms.saturating_sub(now_ms)
    }

    /// Consecutive failures counted now.
    pub fn failures(&self) -> u8 {
        self.failures
    }

    /// Records the result of a verify at `now_ms` and returns the new state.
    ///
    /// An attempt made while locked out is ignored (the caller should have asked
    /// [`Lockout::check`] first).
    pub fn record(&mut self, policy: &Policy, now_ms: u64, accepted: bool) -> Outcome {
        if self.remaining_ms(now_ms) == 0 {
            if accepted {
                *self = Self::new();
            } else {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= policy.max_failures.max(1) {
                    let duration = policy.lockout_duration(self.level);
                    self.locked_until_ms = now_ms.saturating_add(duration);
                    self.level = self.level.saturating_add(1);
                    self.failures = 0;
                }
            }
        }
        Outcome {
            failures: self.failures,
            locked_out_ms: self.remaining_ms(now_ms),
        }
    }

    /// The state to persist, with the lockout as time remaining after `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> Persisted {
        Persisted {
            failures: self.failures,
            level: self.level,
            remaining_ms: self.remaining_ms(now_ms),
        }
    }

    /// Restores a persisted state on a clock that reads `now_ms` now (e.g. after a reboot).
    pub fn resume(persisted: &Persisted, now_ms: u64) -> Self {
        let locked_until_ms = match persisted.remaining_ms {
            0 => 0,
            remaining => now_ms.saturating_add(remaining),
        };
        Self {
            failures: persisted.failures,
            level: persisted.level,
            locked_until_ms,
        }
    }
}

/// Clock-independent lockout state for storage (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Persisted {
    /// Consecutive failures.
    pub failures: u8,
    /// Lockouts since the last success (the doubling exponent).
    pub level: u8,
    /// Lockout milliseconds left when the snapshot was taken.
    pub remaining_ms: u64,
}

impl Persisted {
    /// Bytes of [`Persisted::to_bytes`]: version, failures, level, 0, remaining_ms (LE u64),
    /// CRC-32 (LE) of the first 12 bytes.
    pub const LEN: usize = 16;

    /// Format version of the byte form.
    const VERSION: u8 = 1;

    /// The fixed 16-byte storage form.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = Self::VERSION;
        out[1] = self.failures;
        out[2] = self.level;
        out[4..12].copy_from_slice(&self.remaining_ms.to_le_bytes());
        let crc = CRC32.checksum(&out[..12]);
        out[12..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the storage form: `Truncated`, `UnsupportedVersion` or `CrcMismatch` on damage.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; Self::LEN] = bytes
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::Truncated)?;
        let (body, crc) = bytes.split_at(12);
        let mut stored = [0u8; 4];
        stored.copy_from_slice(crc);
        if CRC32.checksum(body) != u32::from_le_bytes(stored) {
            return Err(Error::CrcMismatch);
        }
        if body[0] != Self::VERSION {
            return Err(Error::UnsupportedVersion);
        }
        let mut remaining = [0u8; 8];
        remaining.copy_from_slice(&body[4..12]);
        Ok(Self {
            failures: body[1],
            level: body[2],
            remaining_ms: u64::from_le_bytes(remaining),
        })
    }
}
