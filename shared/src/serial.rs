//! The serial link on Linux (feature `serial`): a UART through `serialport`, or a raw terminal
//! (pseudo-terminals) through termios. Used by the board daemon and by the host client.
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::Link;

/// How long one read waits before returning no data, so the server can check for SIGTERM.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Puts a terminal into raw mode (8N1, no echo, no line editing) with reads that return
/// after at most 100 ms when no byte arrives.
pub fn make_raw(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: termios is plain old data; tcgetattr fills it for an open descriptor.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the lifetime of `file`; termios points to a valid struct.
    if unsafe { libc::tcgetattr(fd, &mut termios) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: termios was filled by tcgetattr above.
    unsafe { libc::cfmakeraw(&mut termios) };
    termios.c_cc[libc::VMIN] = 0;
    termios.c_cc[libc::VTIME] = (READ_TIMEOUT.as_millis() / 100) as libc::cc_t;
    // SAFETY: fd is open; termios is a valid, initialised struct.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &termios) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A byte link between host and board: either a `serialport` UART or a raw terminal file.
pub enum SerialLink {
    /// A UART opened and configured by `serialport`.
    Uart(serialport::TTYPort),
    /// A terminal (e.g. a pseudo-terminal) in raw mode, for devices where setting the
    /// baud rate fails.
    Raw(File),
}

impl SerialLink {
    /// Opens `path` at `baud`; if the driver refuses the line settings (as pseudo-terminals
    /// do for some baud rates), opens it as a raw terminal instead.
    pub fn open(path: &str, baud: u32) -> io::Result<Self> {
        match serialport::new(path, baud)
            .timeout(READ_TIMEOUT)
            .open_native()
        {
            Ok(port) => {
                tracing::info!(serial = path, baud, "serial port open");
                Ok(SerialLink::Uart(port))
            }
            Err(uart_error) => {
                tracing::debug!(serial = path, error = %uart_error, "serialport open failed; trying raw terminal");
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
                make_raw(&file).map_err(|e| {
                    let message =
                        format!("{path} is not a terminal ({e}); serialport said: {uart_error}");
                    io::Error::new(e.kind(), message)
                })?;
                tracing::info!(serial = path, "terminal open in raw mode");
                Ok(SerialLink::Raw(file))
            }
        }
    }
}

impl Read for SerialLink {
    /// Reads available bytes; returns `Ok(0)` when nothing arrived within [`READ_TIMEOUT`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match self {
            SerialLink::Uart(port) => port.read(buf),
            SerialLink::Raw(file) => file.read(buf),
        };
        match result {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            other => other,
        }
    }
}

impl Write for SerialLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SerialLink::Uart(port) => port.write(buf),
            SerialLink::Raw(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SerialLink::Uart(port) => port.flush(),
            SerialLink::Raw(file) => file.flush(),
        }
    }
}

impl Link for SerialLink {
    type Error = io::Error;

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)?;
        Write::flush(self)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }
}

/// A pseudo-terminal pair: a virtual board's serial line on one machine.
pub struct Pty {
    /// The controller side, the "host end" of the cable.
    pub controller: File,
    /// Path of the terminal side (`/dev/pts/N`), for `facelockd --serial`.
    pub path: PathBuf,
    /// The terminal side, held open so the line survives daemon restarts.
    pub terminal: File,
}

/// Opens a pseudo-terminal pair, its terminal side in raw mode.
pub fn open_pty() -> io::Result<Pty> {
    let mut controller = -1;
    let mut terminal = -1;
    // SAFETY: both out-pointers are valid i32s; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both descriptors are open and owned by nobody else.
    let (controller, terminal) =
        unsafe { (File::from_raw_fd(controller), File::from_raw_fd(terminal)) };
    make_raw(&terminal)?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", terminal.as_raw_fd()))?;
    Ok(Pty {
        controller,
        path,
        terminal,
    })
}

/// The controller side of a pseudo-terminal as a [`Link`] whose reads wait at most `timeout`.
pub struct ControllerLink {
    file: File,
    timeout: Duration,
}

impl ControllerLink {
    /// Wraps the controller side of a [`Pty`].
    pub fn new(file: File, timeout: Duration) -> Self {
        Self { file, timeout }
    }
}

impl Link for ControllerLink {
    type Error = io::Error;

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = self.timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `poll` points to one valid pollfd whose descriptor `self.file` keeps open.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        match ready {
            0 => Ok(0),
            n if n < 0 => {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => Ok(0),
                    _ => Err(error),
                }
            }
            _ => self.file.read(buf),
        }
    }
}
