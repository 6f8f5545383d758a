//! weft's forwarding tables: the answers to "where does this packet go?".
//!
//! - blocks: pod prefixes (IPv4 and IPv6) → owning node, longest-prefix
//!   match, the local node's own blocks included ([`Route::Local`]: never
//!   sent out);
//! - nodes: node id → underlay addresses, VTEP MAC, encapsulations, same
//!   underlay subnet or not;
//! - endpoints: pod IP → MAC, node and (on this node) host port;
//! - neighbours: which MAC answers ARP/ND for which IP.
//!
//! Every entry carries its [`Source`], a version and, if learned, an expiry
//! ([`Meta`]); [`Entry::beats`] decides conflicts the same way on every
//! node. Writers change the tables in transactions ([`Fdb::update`]) that
//! publish one immutable [`Snapshot`]; data-path threads read snapshots
//! through a [`Reader`] without locks; subscribers ([`Fdb::subscribe`]) see
//! every change once and in order, or a snapshot to resynchronise from.
//!
//! No I/O, no dependency on other weft crates.
//!
//! ```
//! use fdb::{Fdb, Meta, NodeId, NodeRecord, Route, Source, Endpoint, Mac};
//! let local = NodeId::new("node-1");
//! let fdb = Fdb::new(local.clone(), NodeRecord::default());
//! let peer = NodeId::new("node-2");
//! fdb.update(|t| {
//!     t.upsert_node(peer.clone(), NodeRecord::default(), Meta::new(Source::Gossip, 1))?;
//!     t.upsert_block("10.244.1.0/26".parse().unwrap(), peer.clone(), Meta::new(Source::Gossip, 1))?;
//!     t.upsert_block("10.244.0.0/26".parse().unwrap(), local.clone(), Meta::new(Source::Static, 1))
//! }).unwrap();
//! let mut reader = fdb.reader();
//! let snap = reader.load();
//! assert!(matches!(snap.route("10.244.1.7".parse().unwrap()), Route::Remote { .. }));
//! assert!(matches!(snap.route("10.244.0.7".parse().unwrap()), Route::Local { .. }));
//! assert!(matches!(snap.route("10.9.9.9".parse().unwrap()), Route::NoRoute));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod change;
pub mod error;
pub mod lpm;
pub mod sharded;
pub mod snapshot;
pub mod table;
pub mod types;

pub use change::{Change, Event, Subscription, What};

/// The FNV-1a offset basis (64-bit).
pub const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a (64-bit) of `bytes`, continuing from `h` (start from
/// [`FNV_BASIS`]). weft's one stable hash of names and byte streams: node
/// ids, derived MACs and interface names, gossip digests. The same on
/// every node and build, so its values may travel and be stored.
pub fn fnv1a_from(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// FNV-1a (64-bit) of `bytes` (see [`fnv1a_from`]).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_BASIS, bytes)
}
pub use error::{Error, Result};
pub use snapshot::{Counts, Route, Snapshot};
pub use table::{Fdb, Limits, Outcome, Reader, Txn};
pub use types::{
    BlockOwner, EncapSet, Endpoint, Entry, Families, Mac, Meta, NodeId, NodeRecord, Source,
};
