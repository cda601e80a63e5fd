//! Admin challenge bookkeeping: fresh random nonces, single use, and failed-attempt backoff.
use std::io::Read;
use std::time::{Duration, Instant};

/// Length of an authentication nonce in bytes.
pub const NONCE_LEN: usize = 32;

/// How long an issued challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30);

/// How long an authenticated admin session lasts without activity.
pub const SESSION_TTL: Duration = Duration::from_secs(120);

/// Fills `out` from the kernel's random source.
pub fn random_bytes(out: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(out)
}

/// Why an auth response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No challenge is outstanding (never issued, already used, or expired).
    NoChallenge,
    /// Too many recent failures; try again after the given time.
    RateLimited(Duration),
    /// The response did not match.
    BadResponse,
}

/// Per-link admin authentication state.
#[derive(Debug, Default)]
pub struct AuthState {
    challenge: Option<([u8; NONCE_LEN], Instant)>,
    session_until: Option<Instant>,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl AuthState {
    /// Issues a fresh nonce, replacing any outstanding one (so each nonce answers once).
    pub fn issue(&mut self, now: Instant) -> std::io::Result<[u8; NONCE_LEN]> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        self.challenge = Some((nonce, now));
        Ok(nonce)
    }

    /// Checks a response: `verify(nonce)` says whether it matches the outstanding nonce.
    /// The challenge is consumed whatever the outcome, so a response cannot be replayed.
    pub fn answer(
        &mut self,
        now: Instant,
        verify: impl FnOnce(&[u8; NONCE_LEN]) -> bool,
    ) -> Result<(), AuthRefusal> {
        if let Some(until) = self.blocked_until.filter(|&until| now < until) {
            return Err(AuthRefusal::RateLimited(until - now));
        }
        let (nonce, issued) = self.challenge.take().ok_or(AuthRefusal::NoChallenge)?;
        if now.duration_since(issued) > CHALLENGE_TTL {
            return Err(AuthRefusal::NoChallenge);
        }
        if verify(&nonce) {
            self.failures = 0;
            self.blocked_until = None;
            self.session_until = Some(now + SESSION_TTL);
            Ok(())
        } else {
            // 1 s after the first failure, doubling, capped at 5 minutes.
            self.failures += 1;
            let wait = Duration::from_secs(1u64 << self.failures.min(8).saturating_sub(1))
                .min(Duration::from_secs(300));
            self.blocked_until = Some(now + wait);
            self.session_until = None;
            Err(AuthRefusal::BadResponse)
        }
    }

    /// Whether an admin session is open at `now`; refreshes its expiry when it is.
    pub fn is_admin(&mut self, now: Instant) -> bool {
        match self.session_until {
            Some(until) if now < until => {
                self.session_until = Some(now + SESSION_TTL);
                true
            }
            _ => {
                self.session_until = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_fresh_single_use_and_failures_back_off() {
        let t0 = Instant::now();
        let mut auth = AuthState::default();
        let a = auth.issue(t0).unwrap();
        let b = auth.issue(t0).unwrap();
        assert_ne!(a, b);

        // Only the latest nonce is answerable, once.
        assert_eq!(auth.answer(t0, |n| *n == a), Err(AuthRefusal::BadResponse));
        assert_eq!(
            auth.answer(t0, |_| true),
            Err(AuthRefusal::RateLimited(Duration::from_secs(1)))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(auth.answer(t1, |_| true), Err(AuthRefusal::NoChallenge));
        let c = auth.issue(t1).unwrap();
        assert_eq!(auth.answer(t1, |n| *n == c), Ok(()));
        assert!(auth.is_admin(t1));
        assert_eq!(
            auth.answer(t1, |n| *n == c),
            Err(AuthRefusal::NoChallenge),
            "replay"
        );

        // Expired challenges and sessions.
        auth.issue(t1).unwrap();
        assert_eq!(
            auth.answer(t1 + CHALLENGE_TTL * 2, |_| true),
            Err(AuthRefusal::NoChallenge)
        );
        assert!(!auth.is_admin(t1 + SESSION_TTL * 2));
    }
}
