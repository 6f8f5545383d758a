//! weftd as a process: bringing a node up from its configuration and
//! taking it down ([`node`]), the control plane's I/O ([`gossip`]), the
//! socket the CNI plugin reports pods on ([`endpoints`]), the thread that
//! keeps the kernel's routes, rules and addresses in line
//! ([`kernel_sync`]), the choice between the kernel's data path and
//! weftd's own ([`kernel_path`]), and the metrics endpoint ([`metrics`]).
//! The userspace packet path itself is [`crate::dataplane`].

pub mod endpoints;
pub mod gossip;
pub mod kernel_path;
pub mod kernel_sync;
pub mod metrics;
pub mod node;
