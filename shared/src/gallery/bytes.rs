//! Gallery serialisation: the CRC-checked byte format described in [`crate::gallery`].

use super::{
    check_template, read_header, record_len, Gallery, Name, Reader, Record, CRC_LEN,
    FORMAT_VERSION, HEADER_LEN, MAGIC, NAME_MAX_LEN,
};
use crate::embedding::Template;
use crate::error::{Error, Result};
use crate::frame::CRC32;

impl<const USERS: usize, const DIM: usize> Gallery<USERS, DIM> {
    /// Writes the gallery to `out` and returns the number of bytes written
    /// ([`Gallery::serialized_len`]); `out` may be longer.
    pub fn to_bytes(&self, out: &mut [u8]) -> Result<usize> {
        let dim = u16::try_from(DIM).map_err(|_| Error::DimensionMismatch)?;
        let total = self.serialized_len();
        let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;

        let (header, rest) = out.split_at_mut(HEADER_LEN);
        header[..4].copy_from_slice(&MAGIC);
        header[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[6..8].copy_from_slice(&dim.to_le_bytes());
        header[8..16].copy_from_slice(&self.model_id.to_le_bytes());
        header[16..20].copy_from_slice(&(self.records.len() as u32).to_le_bytes());

        for (record, chunk) in self
            .records
            .iter()
            .zip(rest.chunks_exact_mut(record_len(DIM)))
        {
            write_record(record, chunk);
        }

        let crc = CRC32.checksum(&out[..total - CRC_LEN]);
        out[total - CRC_LEN..].copy_from_slice(&crc.to_le_bytes());
        Ok(total)
    }

    /// Reads a gallery written by [`Gallery::to_bytes`].
    ///
    /// With `expected_model_id`, a gallery of another model is refused with
    /// [`Error::WrongModel`] (use [`read_header`] to learn its model id). The result is
    /// returned by value, about `USERS * (DIM + 48)` bytes: for large galleries prefer
    /// [`Gallery::load_into`].
    pub fn from_bytes(bytes: &[u8], expected_model_id: Option<u64>) -> Result<Self> {
        let mut gallery = Self::new(0);
        gallery.load_into(bytes, expected_model_id)?;
        Ok(gallery)
    }

    /// Replaces this gallery's content (and model id) with the one in `bytes`, in place.
    ///
    /// Everything is checked before anything is changed: on error the gallery is untouched.
    /// Errors: `Truncated`, `BadMagic`, `UnsupportedVersion`, `CrcMismatch` (damage),
    /// `DimensionMismatch` (other embedding size), `WrongModel`, `GalleryFull` (more users
    /// than `USERS`), `Corrupt` (bad name, scale, trailing bytes or duplicate ids).
    pub fn load_into(&mut self, bytes: &[u8], expected_model_id: Option<u64>) -> Result<()> {
        let header = read_header(bytes)?;
        if header.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion);
        }

        // The user count and dimension decide the length; check it before trusting the CRC.
        let users = header.users as usize;
        let total = HEADER_LEN
            .checked_add(
                users
                    .checked_mul(record_len(usize::from(header.dim)))
                    .ok_or(Error::Corrupt)?,
            )
            .and_then(|n| n.checked_add(CRC_LEN))
            .ok_or(Error::Corrupt)?;
        if bytes.len() < total {
            return Err(Error::Truncated);
        }
        if bytes.len() > total {
            return Err(Error::Corrupt);
        }
        let (body, crc) = bytes.split_at(total - CRC_LEN);
        let mut stored = [0u8; CRC_LEN];
        stored.copy_from_slice(crc);
        if CRC32.checksum(body) != u32::from_le_bytes(stored) {
            return Err(Error::CrcMismatch);
        }

        // Content checks, in the order a caller would want them reported.
        if usize::from(header.dim) != DIM {
            return Err(Error::DimensionMismatch);
        }
        if expected_model_id.is_some_and(|id| id != header.model_id) {
            return Err(Error::WrongModel);
        }
        if users > USERS {
            return Err(Error::GalleryFull);
        }
        let records = &body[HEADER_LEN..];
        for (i, chunk) in records.chunks_exact(record_len(DIM)).enumerate() {
            check_record::<DIM>(chunk)?;
            let id = user_id_of(chunk);
            if records
                .chunks_exact(record_len(DIM))
                .take(i)
                .any(|c| user_id_of(c) == id)
            {
                return Err(Error::Corrupt);
            }
        }

        // All checks passed: nothing below can fail.
        self.model_id = header.model_id;
        self.records.clear();
        for chunk in records.chunks_exact(record_len(DIM)) {
            if let Ok(record) = read_record::<DIM>(chunk) {
                // Cannot fail: users <= USERS was checked above.
                let _ = self.records.push(record);
            }
        }
        Ok(())
    }
}

fn write_record<const DIM: usize>(record: &Record<DIM>, out: &mut [u8]) {
    let name = record.name.as_bytes();
    out[0..4].copy_from_slice(&record.user_id.to_le_bytes());
    out[4..6].copy_from_slice(&record.samples.to_le_bytes());
    out[6] = name.len() as u8;
    out[7..7 + NAME_MAX_LEN].fill(0);
    out[7..7 + name.len()].copy_from_slice(name);
    let at = 7 + NAME_MAX_LEN;
    out[at..at + 4].copy_from_slice(&record.template.scale.to_le_bytes());
    for (o, &v) in out[at + 4..].iter_mut().zip(&record.template.values) {
        *o = v as u8;
    }
}

fn user_id_of(chunk: &[u8]) -> u32 {
    Reader { bytes: chunk }
        .take::<4>()
        .map_or(0, u32::from_le_bytes)
}

/// Validates one record without building it (no large stack copies while checking).
fn check_record<const DIM: usize>(chunk: &[u8]) -> Result<()> {
    let (name, scale, values) = record_fields(chunk)?;
    core::str::from_utf8(name).map_err(|_| Error::Corrupt)?;
    if !(scale > 0.0 && scale.is_finite()) || values.iter().all(|&v| v == 0) {
        return Err(Error::Corrupt);
    }
    Ok(())
}

/// Splits a record into name bytes, scale and values, checking the name length byte.
fn record_fields(chunk: &[u8]) -> Result<(&[u8], f32, &[u8])> {
    let name_len = usize::from(*chunk.get(6).ok_or(Error::Truncated)?);
    if name_len > NAME_MAX_LEN {
        return Err(Error::Corrupt);
    }
    let at = 7 + NAME_MAX_LEN;
    let scale_bytes = chunk.get(at..at + 4).ok_or(Error::Truncated)?;
    let mut scale = [0u8; 4];
    scale.copy_from_slice(scale_bytes);
    Ok((
        &chunk[7..7 + name_len],
        f32::from_le_bytes(scale),
        &chunk[at + 4..],
    ))
}

fn read_record<const DIM: usize>(chunk: &[u8]) -> Result<Record<DIM>> {
    let (name, scale, values) = record_fields(chunk)?;
    let name = core::str::from_utf8(name).map_err(|_| Error::Corrupt)?;
    let mut reader = Reader { bytes: chunk };
    let user_id = u32::from_le_bytes(reader.take::<4>()?);
    let samples = u16::from_le_bytes(reader.take::<2>()?);
    let mut template = Template {
        values: [0; DIM],
        scale,
    };
    if values.len() != DIM {
        return Err(Error::DimensionMismatch);
    }
    for (t, &v) in template.values.iter_mut().zip(values) {
        *t = v as i8;
    }
    check_template(&template)?;
    Ok(Record {
        user_id,
        name: Name::try_from(name).map_err(|_| Error::Corrupt)?,
        samples,
        template,
    })
}
