//! The enrolled users: a fixed-capacity gallery of int8 templates, 1:1 and 1:N matching, and
//! its CRC-checked byte format for flash or disk.
//!
//! Byte format (little-endian), version [`FORMAT_VERSION`]:
//! `magic "FLGY" | version u16 | dim u16 | model_id u64 | users u32 | records | crc32 u32`,
//! each record `user_id u32 | samples u16 | name_len u8 | name [u8; 32] (zero padded) |
//! scale f32 | values [i8; DIM]`; the CRC-32/ISO-HDLC covers everything before it.

use heapless::{String, Vec};

use crate::embedding::Template;
use crate::error::{Error, Result};

mod bytes;

/// Longest user name in bytes of UTF-8.
pub const NAME_MAX_LEN: usize = 32;

/// A user's display name, at most [`NAME_MAX_LEN`] bytes.
pub type Name = String<NAME_MAX_LEN>;

/// A cosine similarity in [-1, 1]; higher means more alike.
pub type Score = f32;

/// Gallery file magic number.
pub const MAGIC: [u8; 4] = *b"FLGY";

/// Gallery file format version written by this build.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes before the first record.
pub const HEADER_LEN: usize = 4 + 2 + 2 + 8 + 4;

/// Bytes of the trailing CRC-32.
const CRC_LEN: usize = 4;

/// Bytes of one record for embeddings of dimension `dim`.
pub const fn record_len(dim: usize) -> usize {
    4 + 2 + 1 + NAME_MAX_LEN + 4 + dim
}

/// Bytes of a serialised gallery with `users` users of dimension `dim`.
pub const fn serialized_len(users: usize, dim: usize) -> usize {
    HEADER_LEN + users * record_len(dim) + CRC_LEN
}

/// One enrolled user.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Record<const DIM: usize> {
    /// Unique id of the user.
    pub user_id: u32,
    /// Display name.
    pub name: Name,
    /// Number of images averaged into the template.
    pub samples: u16,
    /// The averaged, normalised, quantized embedding.
    pub template: Template<DIM>,
}

impl<const DIM: usize> Record<DIM> {
    /// Builds a record, checking the name length and the template.
    pub fn new(user_id: u32, name: &str, samples: u16, template: Template<DIM>) -> Result<Self> {
        let name = Name::try_from(name).map_err(|_| Error::NameTooLong)?;
        check_template(&template)?;
        Ok(Self {
            user_id,
            name,
            samples,
            template,
        })
    }
}

/// A usable template has a positive finite scale and at least one non-zero value.
fn check_template<const DIM: usize>(template: &Template<DIM>) -> Result<()> {
    if !(template.scale > 0.0 && template.scale.is_finite()) {
        return Err(Error::BadScale);
    }
    if template.values.iter().all(|&v| v == 0) {
        return Err(Error::ZeroNorm);
    }
    Ok(())
}

/// The best match of a 1:N search.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Match {
    /// The user whose template is closest to the probe.
    pub user_id: u32,
    /// Their cosine score.
    pub score: Score,
}

/// The fixed part of a gallery file, readable without checking the CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GalleryHeader {
    /// Format version of the file.
    pub version: u16,
    /// Embedding dimension of the templates.
    pub dim: u16,
    /// Model the templates were made with.
    pub model_id: u64,
    /// Number of records.
    pub users: u32,
}

/// Reads the header of a gallery file: magic, version, dimension, model id and user count.
///
/// Checks only the magic and the length of the header (not the CRC), so a caller can say
/// which model a refused gallery belongs to after [`Error::WrongModel`].
pub fn read_header(bytes: &[u8]) -> Result<GalleryHeader> {
    let header = bytes.get(..HEADER_LEN).ok_or(Error::Truncated)?;
    if header[..4] != MAGIC {
        return Err(Error::BadMagic);
    }
    let mut reader = Reader {
        bytes: &header[4..],
    };
    Ok(GalleryHeader {
        version: u16::from_le_bytes(reader.take()?),
        dim: u16::from_le_bytes(reader.take()?),
        model_id: u64::from_le_bytes(reader.take()?),
        users: u32::from_le_bytes(reader.take()?),
    })
}

/// Cursor over bytes whose length was checked beforehand.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    /// Takes the next `K` bytes.
    fn take<const K: usize>(&mut self) -> Result<[u8; K]> {
        let (head, tail) = self
            .bytes
            .split_first_chunk::<K>()
            .ok_or(Error::Truncated)?;
        self.bytes = tail;
        Ok(*head)
    }
}

/// Enrolled users of one model, at most `USERS`, with `DIM`-dimensional templates.
///
/// Records keep their enrollment order (removal shifts later ones down), so list positions
/// are stable between pages. About `USERS * (DIM + 48)` bytes: keep large galleries on the
/// heap or in a `static`, and reload with [`Gallery::load_into`] rather than `from_bytes`.
#[derive(Debug, Clone)]
pub struct Gallery<const USERS: usize, const DIM: usize> {
    model_id: u64,
    records: Vec<Record<DIM>, USERS>,
}

impl<const USERS: usize, const DIM: usize> Gallery<USERS, DIM> {
    /// Bytes of a serialised gallery at full capacity: a buffer this long always suffices
    /// for [`Gallery::to_bytes`].
    pub const SERIALIZED_LEN_MAX: usize = serialized_len(USERS, DIM);

    /// An empty gallery for templates of model `model_id`.
    pub const fn new(model_id: u64) -> Self {
        Self {
            model_id,
            records: Vec::new(),
        }
    }

    /// The model whose embeddings the templates come from.
    pub fn model_id(&self) -> u64 {
        self.model_id
    }

    /// Number of enrolled users.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No users enrolled.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Maximum number of users, `USERS`.
    pub const fn capacity(&self) -> usize {
        USERS
    }

    /// Bytes [`Gallery::to_bytes`] writes for the current users.
    pub fn serialized_len(&self) -> usize {
        serialized_len(self.records.len(), DIM)
    }

    /// Adds a new user. Fails with `DuplicateUser`, `GalleryFull`, `NameTooLong`, or a
    /// template error (`BadScale`, `ZeroNorm`); the gallery is unchanged on error.
    pub fn enroll(
        &mut self,
        user_id: u32,
        name: &str,
        samples: u16,
        template: Template<DIM>,
    ) -> Result<()> {
        if self.position(user_id).is_some() {
            return Err(Error::DuplicateUser);
        }
        let record = Record::new(user_id, name, samples, template)?;
        self.records.push(record).map_err(|_| Error::GalleryFull)
    }

    /// Replaces an enrolled user's name, sample count and template in place.
    pub fn replace(
        &mut self,
        user_id: u32,
        name: &str,
        samples: u16,
        template: Template<DIM>,
    ) -> Result<()> {
        let index = self.position(user_id).ok_or(Error::UnknownUser)?;
        self.records[index] = Record::new(user_id, name, samples, template)?;
        Ok(())
    }

    /// Removes a user and returns their record.
    pub fn remove(&mut self, user_id: u32) -> Result<Record<DIM>> {
        let index = self.position(user_id).ok_or(Error::UnknownUser)?;
        Ok(self.records.remove(index))
    }

    /// Removes every user; the model id stays.
    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// The record of `user_id`, if enrolled.
    pub fn get(&self, user_id: u32) -> Option<&Record<DIM>> {
        self.records.iter().find(|r| r.user_id == user_id)
    }

    /// All records in enrollment order.
    pub fn records(&self) -> &[Record<DIM>] {
        &self.records
    }

    /// Iterates over the records in enrollment order.
    pub fn iter(&self) -> core::slice::Iter<'_, Record<DIM>> {
        self.records.iter()
    }

    /// 1:1 score of `probe` against the template of `user_id`.
    pub fn verify(&self, user_id: u32, probe: &Template<DIM>) -> Result<Score> {
        let record = self.get(user_id).ok_or(Error::UnknownUser)?;
        record.template.cosine(probe)
    }

    /// 1:N search: the user whose template scores highest against `probe` (the first one on
    /// ties), or `None` if the gallery is empty or the probe is all zeros.
    pub fn identify(&self, probe: &Template<DIM>) -> Option<Match> {
        let mut best: Option<Match> = None;
        for record in &self.records {
            let Ok(score) = record.template.cosine(probe) else {
                continue;
            };
            if best.is_none_or(|b| score > b.score) {
                best = Some(Match {
                    user_id: record.user_id,
                    score,
                });
            }
        }
        best
    }

    fn position(&self, user_id: u32) -> Option<usize> {
        self.records.iter().position(|r| r.user_id == user_id)
    }
}
