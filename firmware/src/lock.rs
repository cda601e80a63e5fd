//! The lock output: an embedded-hal `OutputPin` energised for a pulse on each accepted verify.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

use crate::error::{Error, Result};

/// Where the lock is wired, as given to `--lock-gpio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockSpec {
    /// A GPIO character device line: `gpiochip0:17` or `/dev/gpiochip0:17`.
    Gpio {
        /// Chip device path.
        chip: PathBuf,
        /// Line offset on the chip.
        line: u32,
    },
    /// `file:<path>`: each transition appended as a line `<unix ms> <energised|released>`.
    File(PathBuf),
    /// `none`: no lock output (accepted verifies only answer on the serial link).
    None,
}

impl FromStr for LockSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |message: &str| Error::Lock {
            spec: spec.into(),
            message: message.into(),
        };
        if spec == "none" {
            return Ok(LockSpec::None);
        }
        if let Some(path) = spec.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad("file: needs a path, e.g. file:/tmp/lock.log"));
            }
            return Ok(LockSpec::File(path.into()));
        }
        let (chip, line) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("expected <gpiochip>:<line>, file:<path> or none"))?;
        let line = line
            .parse::<u32>()
            .map_err(|_| bad("the line after ':' is not a number"))?;
        if chip.is_empty() {
            return Err(bad("the gpio chip name is empty"));
        }
        let chip = if chip.contains('/') {
            PathBuf::from(chip)
        } else {
            PathBuf::from("/dev").join(chip)
        };
        Ok(LockSpec::Gpio { chip, line })
    }
}

/// Error of a [`BoardPin`] transition.
#[derive(Debug)]
pub struct PinError(pub String);

impl embedded_hal::digital::Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// The concrete pins `facelockd` can drive.
pub enum BoardPin {
    /// A GPIO line through the Linux character device.
    Cdev(CdevPin),
    /// A file receiving one line per transition.
    File(File),
    /// No output.
    None,
}

impl BoardPin {
    /// Opens the pin described by `spec` (the line requested as an output, initially low).
    pub fn open(spec: &LockSpec) -> Result<Self> {
        match spec {
            LockSpec::None => Ok(BoardPin::None),
            LockSpec::File(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(BoardPin::File)
                .map_err(|e| Error::io("opening lock file", path, e)),
            LockSpec::Gpio { chip, line } => {
                let fail = |e: &dyn std::fmt::Display| Error::Lock {
                    spec: format!("{}:{line}", chip.display()),
                    message: e.to_string(),
                };
                let handle = Chip::new(chip)
                    .and_then(|mut c| c.get_line(*line))
                    .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, "facelockd"))
                    .map_err(|e| fail(&e))?;
                CdevPin::new(handle)
                    .map(BoardPin::Cdev)
                    .map_err(|e| fail(&e))
            }
        }
    }

    fn write_transition(file: &mut File, state: &str) -> Result<(), PinError> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        writeln!(file, "{ms} {state}")
            .and_then(|()| file.flush())
            .map_err(|e| PinError(e.to_string()))
    }
}

impl ErrorType for BoardPin {
    type Error = PinError;
}

impl OutputPin for BoardPin {
    fn set_low(&mut self) -> Result<(), PinError> {
        match self {
            BoardPin::Cdev(pin) => pin.set_low().map_err(|e| PinError(format!("{e:?}"))),
            BoardPin::File(file) => Self::write_transition(file, "released"),
            BoardPin::None => Ok(()),
        }
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        match self {
            BoardPin::Cdev(pin) => pin.set_high().map_err(|e| PinError(format!("{e:?}"))),
            BoardPin::File(file) => Self::write_transition(file, "energised"),
            BoardPin::None => Ok(()),
        }
    }
}

/// Drives a lock pin: energised (high) for `pulse` after each unlock, otherwise released (low).
pub struct Lock<P: OutputPin> {
    pin: P,
    pulse: Duration,
    release_at: Option<Instant>,
}

impl<P: OutputPin> Lock<P> {
    /// Takes the pin and releases it, so the lock starts de-energised.
    pub fn new(mut pin: P, pulse: Duration) -> Self {
        if let Err(e) = pin.set_low() {
            tracing::error!(error = ?e, "lock output: releasing at start failed");
        }
        Lock {
            pin,
            pulse,
            release_at: None,
        }
    }

    /// Energises the lock until `now + pulse` (extending a pulse already running).
    pub fn unlock(&mut self, now: Instant) {
        if self.release_at.is_none() {
            if let Err(e) = self.pin.set_high() {
                tracing::error!(error = ?e, "lock output: energising failed");
                return;
            }
        }
        self.release_at = Some(now + self.pulse);
        tracing::info!(pulse_ms = self.pulse.as_millis() as u64, "lock energised");
    }

    /// Releases the lock if its pulse has ended by `now`; call often (every read timeout).
    pub fn poll(&mut self, now: Instant) {
        if self.release_at.is_some_and(|at| now >= at) {
            self.release();
        }
    }

    /// Whether the lock is energised now.
    pub fn is_energised(&self) -> bool {
        self.release_at.is_some()
    }

    /// Releases the lock now (pulse end, shutdown).
    pub fn release(&mut self) {
        if let Err(e) = self.pin.set_low() {
            tracing::error!(error = ?e, "lock output: releasing failed");
        }
        if self.release_at.take().is_some() {
            tracing::info!("lock released");
        }
    }

    /// Gives back the pin (tests).
    pub fn into_pin(self) -> P {
        self.pin
    }
}

/// Shutdown request set by SIGTERM or SIGINT.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Installs SIGTERM/SIGINT handlers that only set a flag (no SA_RESTART, so blocking reads
/// return early); the server checks [`stop_requested`] and releases the lock before exiting.
pub fn install_stop_handlers() -> std::io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: sigaction is zeroed POD; the handler is async-signal-safe (one atomic store).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Whether SIGTERM or SIGINT has arrived.
pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct RecordingPin(Vec<bool>);

    impl ErrorType for RecordingPin {
        type Error = core::convert::Infallible;
    }

    impl OutputPin for RecordingPin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            self.0.push(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            self.0.push(true);
            Ok(())
        }
    }

    #[test]
    fn pulse_energises_then_releases_after_pulse() {
        let start = Instant::now();
        let mut lock = Lock::new(RecordingPin::default(), Duration::from_millis(3000));
        lock.unlock(start);
        lock.poll(start + Duration::from_millis(2999));
        assert!(lock.is_energised());
        lock.poll(start + Duration::from_millis(3000));
        assert!(!lock.is_energised());
        assert_eq!(lock.into_pin().0, vec![false, true, false]);
    }

    #[test]
    fn spec_parsing_names_bad_input() {
        assert_eq!("none".parse::<LockSpec>().unwrap(), LockSpec::None);
        assert_eq!(
            "gpiochip0:17".parse::<LockSpec>().unwrap(),
            LockSpec::Gpio {
                chip: "/dev/gpiochip0".into(),
                line: 17
            }
        );
        assert_eq!(
            "file:/tmp/x".parse::<LockSpec>().unwrap(),
            LockSpec::File("/tmp/x".into())
        );
        let err = "gpiochip0:x".parse::<LockSpec>().unwrap_err().to_string();
        assert!(err.contains("gpiochip0:x"), "{err}");
        assert!("file:".parse::<LockSpec>().is_err());
        assert!("relay".parse::<LockSpec>().is_err());
    }
}
