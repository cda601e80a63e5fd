//! facelock's no_std core: what the host and the board must agree on.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod align;
pub mod model_meta;
