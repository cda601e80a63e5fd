//! facelockd library: inference, gallery store, serial server and lock output for the board.
#![warn(missing_docs)]
