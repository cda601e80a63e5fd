//! Admin authentication: HMAC-SHA256 challenge-response over a board nonce.
//!
//! The board draws a random [`NONCE_LEN`]-byte nonce (shared has no RNG), sends it in
//! `Response::Challenge`, and accepts admin requests after an `AuthResponse` whose MAC
//! [`verify`] accepts. Each nonce must be used once. The MAC covers a fixed label, the nonce
//! and a device context (e.g. the board's serial number or model id, or empty), so a response
//! cannot be replayed to another board or another protocol.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
pub use crate::protocol::NONCE_LEN;

/// Shortest admin key accepted, in bytes.
pub const KEY_LEN_MIN: usize = 16;

/// Length of a MAC, in bytes.
pub const MAC_LEN: usize = 32;

/// Domain-separation label hashed before the nonce.
const LABEL: &[u8] = b"facelock admin auth v1";

/// HMAC-SHA256 of the concatenation of `parts` under `key` (any key length, as in RFC 2104).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut mac = new_mac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The MAC a host sends for `nonce`: HMAC-SHA256(key, label ‖ nonce ‖ context).
///
/// Keys shorter than [`KEY_LEN_MIN`] give [`Error::KeyTooShort`].
pub fn respond(key: &[u8], nonce: &[u8; NONCE_LEN], context: &[u8]) -> Result<[u8; MAC_LEN]> {
    check_key(key)?;
    Ok(hmac_sha256(key, &[LABEL, nonce, context]))
}

/// Whether `mac` is the right response to `nonce`, compared in constant time.
pub fn verify(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    context: &[u8],
    mac: &[u8; MAC_LEN],
) -> Result<bool> {
    check_key(key)?;
    let mut expected = new_mac(key);
    expected.update(LABEL);
    expected.update(nonce);
    expected.update(context);
    Ok(expected.verify_slice(mac).is_ok())
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() < KEY_LEN_MIN {
        return Err(Error::KeyTooShort);
    }
    Ok(())
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long ones are hashed), so this never fails.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac accepts every key length"),
    }
}

/// Longest admin key [`parse_key_file`] accepts, in bytes.
pub const KEY_LEN_MAX: usize = 256;

/// Decodes the contents of an admin key file into `out` and returns the key's length.
///
/// A file holding only hex digits (an even number, whitespace ignored) is the key written in
/// hex, as `facelock` provisions it; any other file is the key as raw bytes. Keys shorter than
/// [`KEY_LEN_MIN`] give [`Error::KeyTooShort`]; keys longer than `out` give
/// [`Error::BufferTooSmall`].
pub fn parse_key_file(raw: &[u8], out: &mut [u8]) -> Result<usize> {
    let digits = || raw.iter().copied().filter(|b| !b.is_ascii_whitespace());
    let count = digits().count();
    let is_hex = count > 0 && count % 2 == 0 && digits().all(|b| b.is_ascii_hexdigit());

    let len = if is_hex {
        let len = count / 2;
        let slots = out.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut nibbles = digits().map(hex_value);
        for slot in slots.iter_mut() {
            let high = nibbles.next().unwrap_or(0);
            let low = nibbles.next().unwrap_or(0);
            *slot = (high << 4) | low;
        }
        len
    } else {
        out.get_mut(..raw.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(raw);
        raw.len()
    };
    check_key(&out[..len])?;
    Ok(len)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc4231_test_cases_1_and_2() {
        let case1 = hmac_sha256(&[0x0b; 20], &[b"Hi There"]);
        assert_eq!(
            hex(&case1),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Split input must hash like the concatenation.
        let case2 = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&case2),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_test_case_6_long_key() {
        let mac = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn respond_then_verify_accepts_and_any_change_rejects() {
        let key = [7u8; 32];
        let nonce = [9u8; NONCE_LEN];
        let mac = respond(&key, &nonce, b"board-1").unwrap();
        assert_eq!(verify(&key, &nonce, b"board-1", &mac), Ok(true));

        let mut wrong_mac = mac;
        wrong_mac[31] ^= 1;
        assert_eq!(verify(&key, &nonce, b"board-1", &wrong_mac), Ok(false));
        let mut other_nonce = nonce;
        other_nonce[0] ^= 1;
        assert_eq!(verify(&key, &other_nonce, b"board-1", &mac), Ok(false));
        assert_eq!(verify(&key, &nonce, b"board-2", &mac), Ok(false));
        assert_eq!(verify(&[8u8; 32], &nonce, b"board-1", &mac), Ok(false));
    }

    #[test]
    fn respond_is_the_labelled_hmac() {
        let key = [1u8; 16];
        let nonce = [2u8; NONCE_LEN];
        let mut message = LABEL.to_vec();
        message.extend_from_slice(&nonce);
        message.extend_from_slice(b"ctx");
        assert_eq!(
            respond(&key, &nonce, b"ctx").unwrap(),
            hmac_sha256(&key, &[&message])
        );
    }

    #[test]
    fn short_keys_are_refused() {
        let nonce = [0u8; NONCE_LEN];
        assert_eq!(respond(&[1u8; 15], &nonce, b""), Err(Error::KeyTooShort));
        assert_eq!(
            verify(&[1u8; 15], &nonce, b"", &[0; MAC_LEN]),
            Err(Error::KeyTooShort)
        );
    }

    #[test]
    fn key_files_in_hex_or_raw_bytes() {
        let mut out = [0u8; KEY_LEN_MAX];
        let hex = b"00112233445566778899aabbccddeeff\n";
        assert_eq!(parse_key_file(hex, &mut out), Ok(16));
        assert_eq!(out[..3], [0x00, 0x11, 0x22]);
        assert_eq!(out[15], 0xff);

        let raw = b"not hex at all, but long enough";
        assert_eq!(parse_key_file(raw, &mut out), Ok(raw.len()));
        assert_eq!(&out[..raw.len()], raw);

        assert_eq!(parse_key_file(b"abcd", &mut out), Err(Error::KeyTooShort));
        assert_eq!(
            parse_key_file(&[7u8; 300], &mut out),
            Err(Error::BufferTooSmall)
        );
    }
}
