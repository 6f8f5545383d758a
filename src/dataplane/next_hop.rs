//! Where a pod's packet goes: one pure function over an fdb snapshot, used
//! by the data path for every packet it sends, by `weftctl trace` to
//! explain it, and by the pipeline bench.

use super::counters::DropReason;
use fdb::{Families, NodeId, NodeRecord, Route, Snapshot};
use ipnet::IpNet;
use std::net::IpAddr;

/// The decision for a packet to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop<'s> {
    /// Encapsulated to another node.
    Peer {
        /// The node.
        node: &'s NodeId,
        /// Its record (VTEP MAC, addresses).
        record: &'s NodeRecord,
        /// The underlay address it is sent to.
        underlay: IpAddr,
        /// The node's block holding the destination; None when the
        /// destination is the node's own address.
        block: Option<IpNet>,
    },
    /// The destination is in a block of this node: not for the underlay.
    Local {
        /// The block.
        block: IpNet,
    },
    /// The destination is in no known block and is no node's address.
    NoRoute,
    /// The owning node advertised no underlay address of a family this
    /// node tunnels over.
    NoUnderlay {
        /// The node.
        node: &'s NodeId,
    },
}

impl<'s> NextHop<'s> {
    /// The node to encapsulate to and its underlay address, or why the
    /// packet is dropped.
    pub fn peer(self) -> Result<(&'s NodeRecord, IpAddr), DropReason> {
        match self {
            NextHop::Peer {
                record, underlay, ..
            } => Ok((record, underlay)),
            NextHop::Local { .. } => Err(DropReason::LocalBlock),
            NextHop::NoRoute => Err(DropReason::NoRoute),
            NextHop::NoUnderlay { .. } => Err(DropReason::NoUnderlay),
        }
    }
}

/// The next hop for `dst` in `snap`, from a node whose tunnels go over
/// `from`: the owner of its block (or the node whose own address it is),
/// reached at the underlay address of a family both have, its preferred
/// one first ([`NodeRecord::tunnel_address_from`]).
pub fn next_hop(snap: &Snapshot, dst: IpAddr, from: Families) -> NextHop<'_> {
    let (node, record, block) = match snap.route(dst) {
        Route::Remote {
            block,
            node,
            record,
        } => (node, record, Some(block)),
        Route::Host { node, record } => (node, record, None),
        Route::Local { block } => return NextHop::Local { block },
        Route::NoRoute => return NextHop::NoRoute,
    };
    match record.tunnel_address_from(from) {
        Some(underlay) => NextHop::Peer {
            node,
            record,
            underlay,
            block,
        },
        None => NextHop::NoUnderlay { node },
    }
}
