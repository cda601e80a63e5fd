//! The workstation's side of the serial link to a board: opening it, the admin key, and
//! turning the board's answers into text people can act on.
use std::path::Path;
use std::time::Duration;

use facelock_shared::auth::{parse_key_file, KEY_LEN_MAX, KEY_LEN_MIN};
use facelock_shared::client::{Client, ClientError, Link};
use facelock_shared::protocol::{Landmarks, Response};
use facelock_shared::serial::SerialLink;

use crate::data::landmarks::FivePoints;
use crate::{Error, Result};

/// How many empty reads (100 ms each on a serial port) a request waits before giving up.
pub const DEFAULT_IDLE_READS: u32 = 100;

/// Opens the board's serial port (a UART, or a pseudo-terminal of a virtual board).
pub fn open_serial(port: &str, baud: u32, timeout: Duration) -> Result<Client<SerialLink>> {
    let link = SerialLink::open(port, baud).map_err(|e| Error::io(port, e))?;
    let idle_reads = (timeout.as_millis() / 100).max(1) as u32;
    Ok(Client::new(link, idle_reads))
}

/// Reads an admin key file (hex digits, or raw bytes), as the board reads it.
pub fn read_admin_key(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut key = vec![0u8; KEY_LEN_MAX];
    let len = parse_key_file(&raw, &mut key).map_err(|e| {
        Error::InvalidInput(format!(
            "admin key file '{}': {e} (at least {KEY_LEN_MIN} bytes, or twice as many hex digits)",
            path.display()
        ))
    })?;
    key.truncate(len);
    Ok(key)
}

/// Writes a fresh random 32-byte admin key as hex to `path` (mode 0600), for provisioning.
pub fn write_new_admin_key(path: &Path) -> Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;

    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(file, "{hex}").map_err(|e| Error::io(path, e))
}

/// Five landmark points in the wire layout (x0, y0, x1, y1, ...).
pub fn wire_landmarks(points: &FivePoints) -> Landmarks {
    let mut flat = [0.0; 10];
    for (i, [x, y]) in points.iter().enumerate() {
        flat[2 * i] = *x;
        flat[2 * i + 1] = *y;
    }
    flat
}

/// A client failure as a host error.
pub fn link_error<E: std::fmt::Display>(error: ClientError<E>) -> Error {
    Error::Device(error.to_string())
}

/// One line describing a response, error codes with their meaning.
pub fn describe(response: &Response<'_>) -> String {
    match response {
        Response::Hello {
            protocol_version,
            firmware_version,
            model_id,
            embedding_dim,
            threshold,
            capacity,
            enrolled,
        } => format!(
            "facelockd {firmware_version} (protocol {protocol_version}), model {model_id:016x}, \
             {embedding_dim}-d embeddings, threshold {threshold:.4}, {enrolled}/{capacity} users"
        ),
        Response::Challenge { .. } => "challenge received".to_string(),
        Response::AuthOk => "admin authenticated".to_string(),
        Response::EnrollReady => "ready for images".to_string(),
        Response::EnrollProgress {
            image_index,
            received,
            image_done,
        } => {
            format!("image {image_index}: {received} bytes received, complete: {image_done}")
        }
        Response::Enrolled { user_id, samples } => {
            format!("user {user_id} enrolled from {samples} images")
        }
        Response::Verified {
            user_id,
            score,
            accepted,
            failures,
            locked_out_ms,
        } => {
            let verdict = if *accepted { "ACCEPTED" } else { "rejected" };
            let mut line = format!("user {user_id}: {verdict}, score {score:.4}");
            if *failures > 0 {
                line.push_str(&format!(", {failures} failures in a row"));
            }
            if *locked_out_ms > 0 {
                line.push_str(&format!(
                    ", locked out for {:.1} s",
                    *locked_out_ms as f64 / 1e3
                ));
            }
            line
        }
        Response::UserList {
            total,
            entries,
            more,
        } => {
            let mut text = format!("{total} users");
            for entry in entries {
                text.push_str(&format!(
                    "\n  {:>6}  {:<32}  {} samples",
                    entry.user_id, entry.name, entry.samples
                ));
            }
            if *more {
                text.push_str("\n  ...");
            }
            text
        }
        Response::Deleted { user_id } => format!("user {user_id} deleted"),
        Response::Stats(c) => format!(
            "uptime {:.1} s, {} verifies ({} accepted, {} rejected), {} lockouts, {} bad frames, \
             {}/{} users, {} failures in a row, locked out for {:.1} s",
            c.uptime_ms as f64 / 1e3,
            c.verifies,
            c.accepts,
            c.rejects,
            c.lockouts,
            c.bad_frames,
            c.enrolled,
            c.capacity,
            c.failures,
            c.locked_out_ms as f64 / 1e3
        ),
        Response::Error { code, detail } => {
            let mut line = format!("error {} ({code:?}): {}", code.number(), code.meaning());
            if !detail.is_empty() {
                line.push_str(&format!(": {detail}"));
            }
            line
        }
    }
}

/// Authenticates as admin; an error unless the board says `AuthOk`.
pub fn authenticate<L: Link>(client: &mut Client<L>, key: &[u8]) -> Result<()>
where
    L::Error: std::fmt::Display,
{
    let answer = client
        .authenticate(key, |r| match r {
            Response::AuthOk => None,
            other => Some(describe(other)),
        })
        .map_err(link_error)?;
    match answer {
        None => Ok(()),
        Some(text) => Err(Error::Device(format!(
            "admin authentication refused: {text}"
        ))),
    }
}
