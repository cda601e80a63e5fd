//! facelockd library: inference, gallery store, serial server and lock output for the board.
#![warn(missing_docs)]

pub mod camera;
pub mod config;
pub mod device;
pub mod enroll;
pub mod error;
pub mod finder;
pub mod lock;
pub mod model;
pub mod nonce;
pub mod pipeline;
pub mod server;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod v4l2;

pub use error::{Error, Result};
