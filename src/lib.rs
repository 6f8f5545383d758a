//! weft's daemon, CNI plugin and CLI share this library: configuration,
//! the data plane, kernel programming, the control plane's I/O (gossip) and
//! the CNI plugin. See docs/ARCHITECTURE.md.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod cni;
pub mod config;
pub mod daemon;
pub mod dataplane;
#[doc(hidden)]
pub mod fuzzing;
pub mod kernel;
pub mod podnet;
