//! weft's daemon, CNI plugin and CLI share this library: configuration
//! today; the data plane, kernel programming and admin API as they land.
//! See docs/ARCHITECTURE.md.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cni;
pub mod config;
pub mod dataplane;
#[doc(hidden)]
pub mod fuzzing;
pub mod kernel;
