//! Opening the serial device: a real UART through `serialport`, a pseudo-terminal raw via termios.
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::error::{Error, Result};

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

/// A byte link to the host: either a `serialport` UART or a raw terminal file.
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
    pub fn open(path: &str, baud: u32) -> Result<Self> {
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
                    .map_err(|e| Error::Serial {
                        path: path.into(),
                        message: e.to_string(),
                    })?;
                make_raw(&file).map_err(|e| Error::Serial {
                    path: path.into(),
                    message: format!("not a terminal ({e}); serialport said: {uart_error}"),
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
