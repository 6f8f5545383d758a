//! weft's gossip control plane, as a sans-I/O core.
//!
//! Nodes find each other, detect failures and replicate what the data path
//! needs (node records, block claims, pod endpoints) without etcd or BGP:
//!
//! - [`auth`]: every datagram authenticated (optionally encrypted) with the
//!   cluster keyring, with a replay window per sender;
//! - [`identity`]: per-node signing keys and the operator's trusted-nodes
//!   file, so a member cannot write records in another node's name;
//! - [`wire`]: the bodies inside (SWIM packets, anti-entropy digests and
//!   records);
//! - [`record`] and [`state`]: single-writer versioned records and their
//!   order-independent merge; block-claim arbitration; the effective view;
//! - [`member`]: the identity foca (the SWIM implementation) tracks;
//! - [`agent`]: one node's core, fed datagrams and time, producing
//!   datagrams and events;
//! - [`fdb_sync`]: writing the view into the forwarding tables;
//! - [`sim`]: a deterministic simulator running many agents in virtual time.
//!
//! No sockets and no clocks here: weftd owns the I/O.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod auth;
pub mod counters;
pub mod fdb_sync;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod member;
pub mod record;
pub mod signatures;
pub mod sim;
pub mod state;
pub mod wire;

pub use agent::{Agent, AgentConfig, AutoBlock, Claiming, Event, MemberInfo, NoBlock};
pub use auth::Keyring;
pub use counters::Counters;
pub use record::NodeInfo;
pub use state::{Rules, View};
