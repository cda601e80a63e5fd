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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy::new(0.4);

    fn fail_n(lockout: &mut Lockout, now: u64, n: usize) -> Outcome {
        let mut last = Outcome {
            failures: 0,
            locked_out_ms: 0,
        };
        for _ in 0..n {
            last = lockout.record(&POLICY, now, false);
        }
        last
    }

    #[test]
    fn five_failures_lock_for_30s_then_doubling_and_success_resets() {
        let mut lockout = Lockout::new();
        assert_eq!(lockout.check(0), Ok(()));

        // Four failures: counted, not locked.
        let outcome = fail_n(&mut lockout, 1_000, 4);
        assert_eq!(
            outcome,
            Outcome {
                failures: 4,
                locked_out_ms: 0
            }
        );
        assert_eq!(lockout.check(1_000), Ok(()));

        // The fifth locks for 30 s.
        let outcome = lockout.record(&POLICY, 2_000, false);
        assert_eq!(
            outcome,
            Outcome {
                failures: 0,
                locked_out_ms: 30_000
            }
        );
        assert_eq!(
            lockout.check(2_000),
            Err(LockedOut {
                remaining_ms: 30_000
            })
        );
        assert_eq!(lockout.check(31_999), Err(LockedOut { remaining_ms: 1 }));

        // Attempts during the lockout are not counted, even successes.
        assert_eq!(lockout.record(&POLICY, 10_000, true).locked_out_ms, 22_000);
        assert_eq!(lockout.failures(), 0);
        assert_eq!(lockout.check(32_000), Ok(()));

        // Five more failures: 60 s, then 120 s.
        assert_eq!(fail_n(&mut lockout, 40_000, 5).locked_out_ms, 60_000);
        assert_eq!(fail_n(&mut lockout, 100_000, 5).locked_out_ms, 120_000);

        // A success after the lockout clears failures and the doubling.
        assert_eq!(lockout.record(&POLICY, 220_000, false).failures, 1);
        assert_eq!(
            lockout.record(&POLICY, 220_001, true),
            Outcome::default_ok()
        );
        assert_eq!(fail_n(&mut lockout, 230_000, 5).locked_out_ms, 30_000);
    }

    impl Outcome {
        fn default_ok() -> Self {
            Outcome {
                failures: 0,
                locked_out_ms: 0,
            }
        }
    }

    #[test]
    fn doubling_is_capped_and_optional() {
        assert_eq!(POLICY.lockout_duration(0), 30_000);
        assert_eq!(POLICY.lockout_duration(3), 240_000);
        assert_eq!(POLICY.lockout_duration(10), 3_600_000);
        assert_eq!(POLICY.lockout_duration(255), 3_600_000);
        let flat = Policy {
            doubling: false,
            ..POLICY
        };
        assert_eq!(flat.lockout_duration(7), 30_000);
    }

    #[test]
    fn accepts_at_threshold_never_nan() {
        assert!(POLICY.accepts(0.4));
        assert!(POLICY.accepts(0.9));
        assert!(!POLICY.accepts(0.399));
        assert!(!POLICY.accepts(f32::NAN));
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert_eq!(POLICY.validate(), Ok(()));
        for bad in [
            Policy {
                threshold: f32::NAN,
                ..POLICY
            },
            Policy {
                threshold: 1.5,
                ..POLICY
            },
            Policy {
                max_failures: 0,
                ..POLICY
            },
            Policy {
                lockout_ms: 0,
                ..POLICY
            },
            Policy {
                max_lockout_ms: 10,
                ..POLICY
            },
        ] {
            assert_eq!(bad.validate(), Err(Error::InvalidPolicy), "{bad:?}");
        }
    }

    #[test]
    fn lockout_survives_a_reboot_with_a_new_clock() {
        let mut lockout = Lockout::new();
        fail_n(&mut lockout, 50_000, 5);
        fail_n(&mut lockout, 90_000, 2);
        assert!(lockout.check(90_000).is_ok());
        fail_n(&mut lockout, 90_000, 3);
        let stored = lockout.snapshot(100_000).to_bytes();

        // The clock restarts at 0 after the reboot; 50 s of the 60 s lockout remain.
        let restored = Persisted::from_bytes(&stored).unwrap();
        assert_eq!(
            restored,
            Persisted {
                failures: 0,
                level: 2,
                remaining_ms: 50_000
            }
        );
        let resumed = Lockout::resume(&restored, 5);
        assert_eq!(
            resumed.check(5),
            Err(LockedOut {
                remaining_ms: 50_000
            })
        );
        assert_eq!(resumed.check(50_005), Ok(()));

        // The doubling level survives too: the next lockout lasts 120 s.
        let mut resumed = resumed;
        assert_eq!(fail_n(&mut resumed, 60_000, 5).locked_out_ms, 120_000);
    }

    #[test]
    fn persisted_bytes_error_paths() {
        let good = Persisted {
            failures: 3,
            level: 1,
            remaining_ms: 1234,
        }
        .to_bytes();
        assert_eq!(Persisted::from_bytes(&good[..15]), Err(Error::Truncated));
        let mut flipped = good;
        flipped[5] ^= 0x10;
        assert_eq!(Persisted::from_bytes(&flipped), Err(Error::CrcMismatch));

        let mut other_version = good;
        other_version[0] = 9;
        let crc = CRC32.checksum(&other_version[..12]);
        other_version[12..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Persisted::from_bytes(&other_version),
            Err(Error::UnsupportedVersion)
        );
    }

    #[test]
    fn persisted_postcard_round_trip() {
        let state = Persisted {
            failures: 4,
            level: 3,
            remaining_ms: 99,
        };
        let mut buf = [0u8; 32];
        let bytes = postcard::to_slice(&state, &mut buf).unwrap();
        assert_eq!(postcard::from_bytes::<Persisted>(bytes).unwrap(), state);
    }
}
