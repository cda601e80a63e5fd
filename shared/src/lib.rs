//! facelock's no_std core: what the host and the board must agree on.
//!
//! Embedding arithmetic ([`embedding`]), the enrolled-user store ([`gallery`]), the unlock
//! decision and lockout ([`decision`]), the serial messages ([`protocol`]) and their framing
//! ([`frame`]), and admin authentication ([`auth`]). No allocation; every fallible operation
//! returns [`Error`]. The optional `defmt` feature derives `defmt::Format` on public types.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]

mod log;

pub mod align;
pub mod auth;
pub mod client;
pub mod decision;
#[cfg(feature = "detect")]
pub mod detect;
pub mod embedding;
pub mod error;
pub mod frame;
pub mod gallery;
pub mod landmarks;
pub mod model_meta;
pub mod protocol;
#[cfg(feature = "serial")]
pub mod serial;

pub use error::{Error, Result};
