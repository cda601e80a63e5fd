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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn template<const DIM: usize>(seed: u32) -> Template<DIM> {
        // Deterministic pseudo-random embedding per seed (xorshift).
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut embedding = [0.0f32; DIM];
        for e in embedding.iter_mut() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *e = (state % 2001) as f32 / 1000.0 - 1.0;
        }
        Template::from_embedding(&embedding).unwrap()
    }

    #[test]
    fn enroll_get_verify_identify() {
        let mut gallery = Gallery::<4, 16>::new(42);
        gallery.enroll(7, "Ada", 3, template(7)).unwrap();
        gallery.enroll(9, "Björk", 1, template(9)).unwrap();
        assert_eq!(gallery.len(), 2);
        assert_eq!(gallery.get(7).unwrap().name.as_str(), "Ada");
        assert_eq!(gallery.get(9).unwrap().samples, 1);
        assert!(gallery.get(8).is_none());

        let score = gallery.verify(7, &template(7)).unwrap();
        assert!((score - 1.0).abs() < 1e-6);
        let other = gallery.verify(7, &template(9)).unwrap();
        assert!(other < 0.9);

        let best = gallery.identify(&template(9)).unwrap();
        assert_eq!(best.user_id, 9);
        assert!((best.score - 1.0).abs() < 1e-6);
        assert_eq!(Gallery::<4, 16>::new(0).identify(&template(1)), None);

        let ids: Vec<u32> = gallery.iter().map(|r| r.user_id).collect();
        assert_eq!(ids, [7, 9]);
    }

    #[test]
    fn replace_and_remove_keep_order() {
        let mut gallery = Gallery::<4, 16>::new(1);
        for id in [1, 2, 3] {
            gallery.enroll(id, "u", 1, template(id)).unwrap();
        }
        gallery.replace(2, "two", 5, template(20)).unwrap();
        assert_eq!(gallery.get(2).unwrap().name.as_str(), "two");
        assert_eq!(gallery.get(2).unwrap().template, template(20));
        assert_eq!(gallery.remove(1).unwrap().user_id, 1);
        let ids: Vec<u32> = gallery.iter().map(|r| r.user_id).collect();
        assert_eq!(ids, [2, 3]);
        gallery.clear();
        assert!(gallery.is_empty());
        assert_eq!(gallery.model_id(), 1);
    }

    #[test]
    fn error_paths_leave_the_gallery_unchanged() {
        let mut gallery = Gallery::<2, 8>::new(1);
        gallery.enroll(1, "a", 1, template(1)).unwrap();
        assert_eq!(
            gallery.enroll(1, "b", 1, template(2)),
            Err(Error::DuplicateUser)
        );
        let long = "x".repeat(NAME_MAX_LEN + 1);
        assert_eq!(
            gallery.enroll(2, &long, 1, template(2)),
            Err(Error::NameTooLong)
        );
        // 32 bytes of UTF-8 is allowed, 33 (with a 2-byte character) is not.
        let exact = "é".repeat(NAME_MAX_LEN / 2);
        assert_eq!(gallery.replace(1, &exact, 1, template(1)), Ok(()));
        let over = format!("{exact}a");
        assert_eq!(
            gallery.replace(1, &over, 1, template(1)),
            Err(Error::NameTooLong)
        );

        let bad_scale = Template {
            scale: 0.0,
            ..template::<8>(3)
        };
        assert_eq!(gallery.enroll(3, "c", 1, bad_scale), Err(Error::BadScale));
        let zero = Template {
            values: [0; 8],
            scale: 1.0,
        };
        assert_eq!(gallery.enroll(3, "c", 1, zero), Err(Error::ZeroNorm));

        gallery.enroll(2, "b", 1, template(2)).unwrap();
        assert_eq!(
            gallery.enroll(3, "c", 1, template(3)),
            Err(Error::GalleryFull)
        );
        assert_eq!(
            gallery.replace(5, "e", 1, template(5)),
            Err(Error::UnknownUser)
        );
        assert_eq!(gallery.remove(5), Err(Error::UnknownUser));
        assert_eq!(gallery.verify(5, &template(5)), Err(Error::UnknownUser));
        assert_eq!(gallery.len(), 2);
        assert_eq!(gallery.get(1).unwrap().name.as_str(), exact);
    }

    #[test]
    fn dimension_mismatch_from_an_embedding_of_the_wrong_length() {
        assert_eq!(
            Template::<16>::from_embedding(&[0.5; 15]),
            Err(Error::DimensionMismatch)
        );
    }

    fn filled<const USERS: usize, const DIM: usize>(n: u32) -> Gallery<USERS, DIM> {
        let mut gallery = Gallery::new(0x0123_4567_89ab_cdef);
        for id in 0..n {
            let name = format!("user {id}");
            gallery
                .enroll(id * 3 + 1, &name, (id % 7) as u16 + 1, template(id))
                .unwrap();
        }
        gallery
    }

    fn bytes_of<const USERS: usize, const DIM: usize>(gallery: &Gallery<USERS, DIM>) -> Vec<u8> {
        let mut out = vec![0u8; Gallery::<USERS, DIM>::SERIALIZED_LEN_MAX];
        let n = gallery.to_bytes(&mut out).unwrap();
        assert_eq!(n, gallery.serialized_len());
        out.truncate(n);
        out
    }

    fn same<const U: usize, const D: usize>(a: &Gallery<U, D>, b: &Gallery<U, D>) -> bool {
        a.model_id() == b.model_id() && a.records() == b.records()
    }

    #[test]
    fn byte_layout_of_an_empty_gallery() {
        let bytes = bytes_of(&Gallery::<4, 8>::new(0x1122_3344_5566_7788));
        assert_eq!(bytes.len(), HEADER_LEN + 4);
        assert_eq!(&bytes[..4], b"FLGY");
        assert_eq!(&bytes[4..8], &[1, 0, 8, 0]);
        assert_eq!(
            &bytes[8..16],
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(&bytes[16..20], &[0, 0, 0, 0]);
        let header = read_header(&bytes).unwrap();
        assert_eq!(
            header,
            GalleryHeader {
                version: 1,
                dim: 8,
                model_id: 0x1122_3344_5566_7788,
                users: 0
            }
        );
    }

    #[test]
    fn round_trip_through_bytes() {
        let gallery = filled::<8, 32>(5);
        let bytes = bytes_of(&gallery);
        let back = Gallery::<8, 32>::from_bytes(&bytes, Some(gallery.model_id())).unwrap();
        assert!(same(&gallery, &back));
        let any_model = Gallery::<8, 32>::from_bytes(&bytes, None).unwrap();
        assert!(same(&gallery, &any_model));
    }

    #[test]
    fn full_size_board_gallery_loads_in_place() {
        let gallery: Box<Gallery<1000, 128>> = Box::new(filled(1000));
        let bytes = bytes_of(&*gallery);
        assert_eq!(bytes.len(), Gallery::<1000, 128>::SERIALIZED_LEN_MAX);
        let mut loaded: Box<Gallery<1000, 128>> = Box::new(Gallery::new(0));
        let start = std::time::Instant::now();
        loaded.load_into(&bytes, Some(gallery.model_id())).unwrap();
        eprintln!(
            "loaded 1000 users ({} bytes) in {:?}",
            bytes.len(),
            start.elapsed()
        );
        assert!(same(&gallery, &loaded));
    }

    #[test]
    fn buffer_too_small() {
        let gallery = filled::<4, 8>(2);
        let mut out = vec![0u8; gallery.serialized_len() - 1];
        assert_eq!(gallery.to_bytes(&mut out), Err(Error::BufferTooSmall));
    }

    /// Recomputes the CRC after a deliberate edit, so the content checks are reached.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - CRC_LEN;
        let crc = crate::frame::CRC32.checksum(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn loading_error_paths_leave_the_gallery_untouched() {
        let original = filled::<4, 8>(3);
        let good = bytes_of(&original);
        let mut target = filled::<4, 8>(1);
        let before = target.clone();
        let mut check = |bytes: &[u8], expected_model: Option<u64>, error: Error| {
            assert_eq!(target.load_into(bytes, expected_model), Err(error));
            assert!(same(&target, &before));
        };

        check(&good[..10], None, Error::Truncated);
        check(&good[..good.len() - 1], None, Error::Truncated);
        let mut longer = good.clone();
        longer.push(0);
        check(&longer, None, Error::Corrupt);

        let mut magic = good.clone();
        magic[0] = b'X';
        check(&magic, None, Error::BadMagic);

        let mut version = good.clone();
        version[4] = 2;
        reseal(&mut version);
        check(&version, None, Error::UnsupportedVersion);

        let mut flipped = good.clone();
        flipped[HEADER_LEN + 50] ^= 0x04;
        check(&flipped, None, Error::CrcMismatch);

        check(&good, Some(original.model_id() + 1), Error::WrongModel);
        assert_eq!(read_header(&good).unwrap().model_id, original.model_id());

        let other_dim = bytes_of(&filled::<4, 16>(1));
        check(&other_dim, None, Error::DimensionMismatch);

        let too_many = bytes_of(&filled::<8, 8>(5));
        check(&too_many, None, Error::GalleryFull);

        let record = |i: usize| HEADER_LEN + i * record_len(8);
        let mut name_len = good.clone();
        name_len[record(1) + 6] = 33;
        reseal(&mut name_len);
        check(&name_len, None, Error::Corrupt);

        let mut utf8 = good.clone();
        utf8[record(0) + 7] = 0xff;
        reseal(&mut utf8);
        check(&utf8, None, Error::Corrupt);

        let mut scale = good.clone();
        scale[record(2) + 39..record(2) + 43].copy_from_slice(&f32::NAN.to_le_bytes());
        reseal(&mut scale);
        check(&scale, None, Error::Corrupt);

        let mut duplicate = good.clone();
        let first_id: [u8; 4] = duplicate[record(0)..record(0) + 4].try_into().unwrap();
        duplicate[record(2)..record(2) + 4].copy_from_slice(&first_id);
        reseal(&mut duplicate);
        check(&duplicate, None, Error::Corrupt);
    }

    proptest! {
        #[test]
        fn any_gallery_round_trips(
            users in proptest::collection::vec(
                (any::<u32>(), "\\PC{0,10}", 1u16..100, proptest::collection::vec(-1.0f32..1.0, 24)),
                0..6,
            ),
            model_id in any::<u64>(),
        ) {
            let mut gallery = Gallery::<6, 24>::new(model_id);
            for (id, name, samples, embedding) in &users {
                let Ok(template) = Template::from_embedding(embedding) else { continue };
                // Names over 32 bytes and repeated ids are refused; the rest go in.
                let _ = gallery.enroll(*id, name, *samples, template);
            }
            let bytes = bytes_of(&gallery);
            let back = Gallery::<6, 24>::from_bytes(&bytes, Some(model_id)).unwrap();
            prop_assert!(same(&gallery, &back));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Gallery::<4, 8>::from_bytes(&bytes, None);
            let mut with_magic = b"FLGY\x01\x00\x08\x00".to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = Gallery::<4, 8>::from_bytes(&with_magic, None);
        }
    }
}
