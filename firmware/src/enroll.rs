//! Chunked multi-image enrollment: reassembles each image from its chunks, in order.
use crate::pipeline::Landmarks;

/// Largest enrollment image accepted after reassembly, in bytes.
pub const MAX_ENROLL_IMAGE_LEN: usize = 512 * 1024;

/// Longest user name in bytes of UTF-8 (the gallery's limit).
pub const MAX_NAME_LEN: usize = facelock_shared::gallery::NAME_MAX_LEN;

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRefusal {
    /// The chunk is not the next one expected (wrong image or offset).
    OutOfOrder(String),
    /// The image grew past [`MAX_ENROLL_IMAGE_LEN`].
    TooLarge,
}

/// One user's enrollment in progress.
#[derive(Debug)]
pub struct Enrollment {
    /// The user's id.
    pub user_id: u32,
    /// Display name.
    pub name: String,
    /// Images announced in `EnrollBegin`.
    pub image_count: u8,
    /// Replace an existing user with the same id.
    pub replace: bool,
    /// Embeddings of the images completed so far, each `[dim]`, L2-normalised.
    pub embeddings: Vec<Vec<f32>>,
    current: Vec<u8>,
    current_landmarks: Option<Landmarks>,
}

/// A reassembled image, ready to embed.
#[derive(Debug)]
pub struct CompleteImage {
    /// Which image of the enrollment.
    pub index: u8,
    /// Encoded image bytes.
    pub bytes: Vec<u8>,
    /// Landmarks sent with its first chunk.
    pub landmarks: Option<Landmarks>,
}

impl Enrollment {
    /// Starts an enrollment.
    pub fn new(user_id: u32, name: &str, image_count: u8, replace: bool) -> Self {
        Enrollment {
            user_id,
            name: name.to_owned(),
            image_count,
            replace,
            embeddings: Vec::new(),
            current: Vec::new(),
            current_landmarks: None,
        }
    }

    /// Index of the image the next chunk must belong to.
    pub fn next_image(&self) -> u8 {
        self.embeddings.len() as u8
    }

    /// Whether every announced image has been embedded.
    pub fn is_complete(&self) -> bool {
        self.embeddings.len() == self.image_count as usize
    }

    /// Bytes of the current image received so far.
    pub fn received(&self) -> usize {
        self.current.len()
    }

    /// Adds one chunk; returns the whole image when `last` completes it.
    pub fn add_chunk(
        &mut self,
        image_index: u8,
        offset: u32,
        last: bool,
        landmarks: Option<Landmarks>,
        bytes: &[u8],
    ) -> Result<Option<CompleteImage>, ChunkRefusal> {
        if self.is_complete() {
            return Err(ChunkRefusal::OutOfOrder(format!(
                "all {} images already received",
                self.image_count
            )));
        }
        if image_index != self.next_image() || offset as usize != self.current.len() {
            return Err(ChunkRefusal::OutOfOrder(format!(
                "expected image {} at offset {}, got image {image_index} at offset {offset}",
                self.next_image(),
                self.current.len()
            )));
        }
        if self.current.len() + bytes.len() > MAX_ENROLL_IMAGE_LEN {
            self.current.clear();
            return Err(ChunkRefusal::TooLarge);
        }
        if offset == 0 {
            self.current_landmarks = landmarks;
        }
        self.current.extend_from_slice(bytes);
        if !last {
            return Ok(None);
        }
        Ok(Some(CompleteImage {
            index: image_index,
            bytes: std::mem::take(&mut self.current),
            landmarks: self.current_landmarks.take(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_in_order_and_refuse_gaps() {
        let mut e = Enrollment::new(7, "ada", 2, false);
        assert!(e.add_chunk(0, 0, false, None, b"abc").unwrap().is_none());
        assert!(matches!(
            e.add_chunk(0, 5, true, None, b"x"),
            Err(ChunkRefusal::OutOfOrder(_))
        ));
        assert!(matches!(
            e.add_chunk(1, 0, true, None, b"x"),
            Err(ChunkRefusal::OutOfOrder(_))
        ));
        let image = e.add_chunk(0, 3, true, None, b"def").unwrap().unwrap();
        assert_eq!((image.index, image.bytes.as_slice()), (0, &b"abcdef"[..]));
        e.embeddings.push(vec![1.0]);
        assert_eq!(e.next_image(), 1);
        let big = vec![0u8; MAX_ENROLL_IMAGE_LEN + 1];
        assert_eq!(
            e.add_chunk(1, 0, true, None, &big).unwrap_err(),
            ChunkRefusal::TooLarge
        );
    }
}
