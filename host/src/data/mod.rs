//! Face data sets as users have them: identity folders, landmarks, pairs, and aligned batches.
//!
//! Paths inside a data set are relative to its root (LFW: `Name/Name_0001.jpg`), so the same
//! landmarks and pairs files work wherever the images live.

pub mod align;
pub mod cache;
pub mod folder;
pub mod image_io;
pub mod landmarks;
pub mod loader;
pub mod pairs;

pub use align::{align_image, align_image_rgb, align_many, AlignConfig};
pub use cache::CropCache;
pub use folder::{Dataset, Sample};
pub use image_io::{decode_bytes, decode_file, DecodedImage};
pub use landmarks::{FivePoints, Landmarks};
pub use loader::{jitter_landmarks, Batch, BatchLoader, EpochBatches, LoaderConfig};
pub use pairs::{Pair, Pairs, ResolvedPairs};

/// File extensions (lowercase) read as images: jpg/jpeg, png, pgm/ppm/pnm, gif.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "pgm", "ppm", "pnm", "gif"];

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn is_image_path(path: &std::path::Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    })
}
