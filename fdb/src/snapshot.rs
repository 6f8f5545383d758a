//! One immutable, consistent version of all the tables: what a data-path
//! thread reads, and what a subscriber resynchronises from.

use crate::lpm::Lpm;
use crate::sharded::ShardedMap;
use crate::types::{BlockOwner, Endpoint, Entry, Mac, NodeId, NodeRecord};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// All tables at one sequence number.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) local: NodeId,
    pub(crate) blocks_v4: Lpm<u32, Entry<BlockOwner>>,
    pub(crate) blocks_v6: Lpm<u128, Entry<BlockOwner>>,
    pub(crate) nodes: ShardedMap<NodeId, Entry<NodeRecord>>,
    /// Underlay address → the node it belongs to (every node, this one
    /// included): kept in step with `nodes` by the writer.
    pub(crate) hosts: ShardedMap<IpAddr, NodeId>,
    pub(crate) endpoints: ShardedMap<IpAddr, Entry<Endpoint>>,
    pub(crate) neighbours: ShardedMap<IpAddr, Entry<Mac>>,
}

/// Where a destination address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Inside one of this node's own blocks: deliver locally, never send out.
    Local {
        /// The block.
        block: IpNet,
    },
    /// Inside another node's block.
    Remote {
        /// The block.
        block: IpNet,
        /// Its owner.
        node: &'a NodeId,
        /// The owner's record.
        record: &'a NodeRecord,
    },
    /// Another node's own (underlay) address: host traffic between a pod
    /// and that node goes through the overlay, as pod traffic does.
    Host {
        /// The node.
        node: &'a NodeId,
        /// Its record.
        record: &'a NodeRecord,
    },
    /// In no known block.
    NoRoute,
}

/// Entry counts, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// IPv4 and IPv6 blocks.
    pub blocks: usize,
    /// Node records (the local node included).
    pub nodes: usize,
    /// Endpoints.
    pub endpoints: usize,
    /// Neighbour answers.
    pub neighbours: usize,
}

impl Snapshot {
    pub(crate) fn empty(local: NodeId) -> Self {
        Snapshot {
            seq: 0,
            local,
            blocks_v4: Lpm::new(),
            blocks_v6: Lpm::new(),
            nodes: ShardedMap::new(),
            hosts: ShardedMap::new(),
            endpoints: ShardedMap::new(),
            neighbours: ShardedMap::new(),
        }
    }

    /// The sequence number of the last change this snapshot contains.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// This node's id.
    pub fn local_node(&self) -> &NodeId {
        &self.local
    }

    /// The longest block containing `ip`, and its owner.
    #[inline]
    pub fn block_for(&self, ip: IpAddr) -> Option<(IpNet, &Entry<BlockOwner>)> {
        match ip {
            IpAddr::V4(a) => self
                .blocks_v4
                .lookup(u32::from(a))
                .map(|(net, len, e)| (IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(net), len)), e)),
            IpAddr::V6(a) => self
                .blocks_v6
                .lookup(u128::from(a))
                .map(|(net, len, e)| (IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(net), len)), e)),
        }
    }

    /// The owner node of the longest block containing `ip` (no IpNet built:
    /// the data path's per-packet question).
    #[inline]
    pub fn owner_of(&self, ip: IpAddr) -> Option<&NodeId> {
        match ip {
            IpAddr::V4(a) => self
                .blocks_v4
                .lookup(u32::from(a))
                .map(|(_, _, e)| &e.value.node),
            IpAddr::V6(a) => self
                .blocks_v6
                .lookup(u128::from(a))
                .map(|(_, _, e)| &e.value.node),
        }
    }

    /// The node whose underlay address `ip` is (an IPv4-mapped IPv6
    /// address counts as the IPv4 one).
    #[inline]
    pub fn node_at(&self, ip: IpAddr) -> Option<&NodeId> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.hosts.get(&ip)
    }

    /// Whether `peer` may send inner packets from `src`: an address in one
    /// of its blocks, or one of its own underlay addresses (a node's host
    /// traffic to pods). The receive path's anti-spoofing check.
    #[inline]
    pub fn may_send_from(&self, peer: &NodeId, src: IpAddr) -> bool {
        match self.owner_of(src) {
            Some(owner) => owner == peer,
            None => self.node_at(src) == Some(peer),
        }
    }

    /// Whether an inner packet to `dst` that arrived over the underlay is
    /// for this node: an address in one of its blocks, or one of its own
    /// addresses. Anything else (broadcast, multicast, another node's
    /// pods: transit) is not. The receive path's destination check.
    #[inline]
    pub fn is_for_this_node(&self, dst: IpAddr) -> bool {
        match self.owner_of(dst) {
            Some(owner) => *owner == self.local,
            None => self.node_at(dst) == Some(&self.local),
        }
    }

    /// Where `ip` goes: a local block, a remote node's block, a remote
    /// node's own address, or nowhere.
    #[inline]
    pub fn route(&self, ip: IpAddr) -> Route<'_> {
        let Some((block, owner)) = self.block_for(ip) else {
            return match self.node_at(ip) {
                Some(node) if *node != self.local => match self.nodes.get(node) {
                    Some(rec) => Route::Host {
                        node,
                        record: &rec.value,
                    },
                    None => Route::NoRoute,
                },
                _ => Route::NoRoute,
            };
        };
        let node = &owner.value.node;
        if *node == self.local {
            return Route::Local { block };
        }
        match self.nodes.get(node) {
            Some(rec) => Route::Remote {
                block,
                node,
                record: &rec.value,
            },
            None => Route::NoRoute,
        }
    }

    /// A node's record.
    pub fn node(&self, id: &NodeId) -> Option<&Entry<NodeRecord>> {
        self.nodes.get(id)
    }

    /// An endpoint.
    #[inline]
    pub fn endpoint(&self, ip: IpAddr) -> Option<&Entry<Endpoint>> {
        self.endpoints.get(&ip)
    }

    /// The MAC that answers ARP/ND for `ip`: an explicit neighbour entry, or
    /// the endpoint's own MAC.
    #[inline]
    pub fn neighbour(&self, ip: IpAddr) -> Option<Mac> {
        self.neighbours
            .get(&ip)
            .map(|e| e.value)
            .or_else(|| self.endpoints.get(&ip).map(|e| e.value.mac))
    }

    /// All blocks with their owners.
    pub fn blocks(&self) -> impl Iterator<Item = (IpNet, &Entry<BlockOwner>)> {
        let v4 = self
            .blocks_v4
            .iter()
            .map(|(n, l, e)| (IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(n), l)), e));
        let v6 = self
            .blocks_v6
            .iter()
            .map(|(n, l, e)| (IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(n), l)), e));
        v4.chain(v6)
    }

    /// The owner entry of exactly `prefix`.
    pub fn block(&self, prefix: IpNet) -> Option<&Entry<BlockOwner>> {
        match prefix {
            IpNet::V4(n) => self.blocks_v4.get(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self.blocks_v6.get(u128::from(n.network()), n.prefix_len()),
        }
    }

    /// All node records.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &Entry<NodeRecord>)> {
        self.nodes.iter()
    }

    /// All endpoints.
    pub fn endpoints(&self) -> impl Iterator<Item = (&IpAddr, &Entry<Endpoint>)> {
        self.endpoints.iter()
    }

    /// All explicit neighbour answers.
    pub fn neighbours(&self) -> impl Iterator<Item = (&IpAddr, &Entry<Mac>)> {
        self.neighbours.iter()
    }

    /// Entry counts.
    pub fn counts(&self) -> Counts {
        Counts {
            blocks: self.blocks_v4.len() + self.blocks_v6.len(),
            nodes: self.nodes.len(),
            endpoints: self.endpoints.len(),
            neighbours: self.neighbours.len(),
        }
    }

    /// Approximate heap bytes of the tables (node ids shared, not counted).
    pub fn approx_heap_bytes(&self) -> usize {
        self.blocks_v4.approx_heap_bytes()
            + self.blocks_v6.approx_heap_bytes()
            + self.nodes.approx_heap_bytes()
            + self.hosts.approx_heap_bytes()
            + self.endpoints.approx_heap_bytes()
            + self.neighbours.approx_heap_bytes()
    }
}
