//! Logging shim: the macros forward to `defmt` with the `defmt` feature and compile to nothing
//! otherwise (arguments are still type-checked and evaluated by reference, never formatted).
#![allow(unused_macros, unused_imports)]

/// Logs at debug level (defmt format string syntax).
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log::forward!(debug, $($arg)*) };
}

/// Logs at warn level (defmt format string syntax).
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::forward!(warn, $($arg)*) };
}

#[cfg(feature = "defmt")]
macro_rules! forward {
    ($level:ident, $($arg:tt)*) => { defmt::$level!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! forward {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}

pub(crate) use {forward, log_debug, log_warn};
