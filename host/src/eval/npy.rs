//! Writes f32 matrices as NumPy `.npy` files (format version 1.0, little-endian, C order).
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// The complete file bytes for `data` of shape [rows, cols].
pub fn encode_f32(data: &[f32], rows: usize, cols: usize) -> Result<Vec<u8>> {
    if data.len() != rows * cols {
        return Err(Error::InvalidInput(format!(
            "{} values do not make a {rows}x{cols} matrix",
            data.len()
        )));
    }
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let length = u16::try_from(header.len())
        .map_err(|_| Error::InvalidInput("npy header too long".into()))?;
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in data {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    Ok(bytes)
}

/// Writes `data` [rows, cols] to `path`.
pub fn write_f32(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    let bytes = encode_f32(data, rows, cols)?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_candle_reads_it_back() {
        let data = [1.0f32, -2.5, 3.25, 0.0, 7.0, 8.5];
        let bytes = encode_f32(&data, 2, 3).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        write_f32(&path, &data, 2, 3).unwrap();
        // candle's independent .npy reader as the reference.
        let tensor = candle_core::Tensor::read_npy(&path).unwrap();
        assert_eq!(tensor.dims(), [2, 3]);
        assert_eq!(
            tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            data
        );
        assert!(encode_f32(&data, 4, 2).is_err());
    }
}
