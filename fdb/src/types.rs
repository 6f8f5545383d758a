//! What the tables hold: node records, block owners, endpoints, neighbour
//! answers, and the provenance every entry carries.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A node's name, unique in the cluster (the Kubernetes node name).
///
/// Cheap to clone, hash and compare on the data path: the name's hash is
/// computed once and kept inline (not behind the `Arc`, whose reference
/// count writers touch on every clone: reading a hash there would bounce
/// that cache line between writer and readers); equality checks the hash,
/// then the pointer, then the name.
#[derive(Clone)]
pub struct NodeId {
    hash: u64,
    name: Arc<str>,
}

impl NodeId {
    /// A node id from its name.
    pub fn new(name: &str) -> Self {
        // Stable, and computed once per id, not per lookup.
        let hash = crate::fnv1a(name.as_bytes());
        NodeId {
            hash,
            name: Arc::from(name),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl PartialEq for NodeId {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.name, &other.name) || self.name == other.name)
    }
}

impl Eq for NodeId {}

impl core::hash::Hash for NodeId {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", &*self.name)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId::new(s)
    }
}

/// A MAC address (kept here as bytes so this crate depends on no other weft
/// crate; `encap::MacAddr` converts with `.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Where an entry came from. Sources are ranked: an entry from a higher
/// source replaces one from a lower source whatever their versions (an
/// operator's static config beats gossip; this node's own CNI knows its pods
/// better than gossip; gossip beats what was learned from traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Learned from traffic; expires.
    Learned,
    /// Disseminated by the gossip control plane.
    Gossip,
    /// Written by this node's CNI plugin.
    LocalCni,
    /// From the configuration file.
    Static,
}

/// Provenance of an entry: its source, a version chosen by its author, and
/// for learned entries an expiry time (milliseconds on the caller's
/// monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Meta {
    /// Where it came from.
    pub source: Source,
    /// Higher versions win within a source.
    pub version: u64,
    /// When it expires (learned entries), on the clock `Fdb::expire` is fed.
    pub expires_at_ms: Option<u64>,
}

impl Meta {
    /// A non-expiring entry.
    pub fn new(source: Source, version: u64) -> Self {
        Meta {
            source,
            version,
            expires_at_ms: None,
        }
    }

    /// A learned entry that expires at `expires_at_ms`.
    pub fn learned(version: u64, expires_at_ms: u64) -> Self {
        Meta {
            source: Source::Learned,
            version,
            expires_at_ms: Some(expires_at_ms),
        }
    }
}

/// Which encapsulations a node accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EncapSet {
    /// VXLAN.
    pub vxlan: bool,
    /// IP-in-IP.
    pub ipip: bool,
}

/// Everything the data path needs to reach a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeRecord {
    /// Underlay IPv4 address.
    pub underlay_v4: Option<Ipv4Addr>,
    /// Underlay IPv6 address.
    pub underlay_v6: Option<Ipv6Addr>,
    /// The node's VTEP MAC (inner Ethernet destination for VXLAN).
    pub vtep_mac: Mac,
    /// Encapsulations the node accepts.
    pub encaps: EncapSet,
    /// True if the node sits in this node's underlay subnet (CrossSubnet
    /// mode routes to it without encapsulation).
    pub same_subnet: bool,
    /// Its underlay (where tunnels to it go) is its IPv6 address; the IPv4
    /// one, if any, is a host address only. False: IPv4 if it has one.
    pub tunnel_v6: bool,
}

/// The underlay families a node sends its tunnels over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Families {
    /// Over IPv4.
    pub v4: bool,
    /// Over IPv6.
    pub v6: bool,
}

impl Families {
    /// IPv4 only.
    pub const V4: Families = Families {
        v4: true,
        v6: false,
    };
    /// IPv6 only.
    pub const V6: Families = Families {
        v4: false,
        v6: true,
    };
    /// Both.
    pub const BOTH: Families = Families { v4: true, v6: true };

    /// The one family of `addr`.
    pub fn of(addr: std::net::IpAddr) -> Families {
        if addr.is_ipv6() {
            Families::V6
        } else {
            Families::V4
        }
    }

    /// Whether `addr`'s family is one of these.
    pub fn holds(self, addr: std::net::IpAddr) -> bool {
        if addr.is_ipv6() {
            self.v6
        } else {
            self.v4
        }
    }
}

impl NodeRecord {
    /// Where tunnels to the node go by its own choice: its preferred
    /// underlay address (the one it advertises first).
    pub fn tunnel_address(&self) -> Option<std::net::IpAddr> {
        let v4 = self.underlay_v4.map(std::net::IpAddr::V4);
        let v6 = self.underlay_v6.map(std::net::IpAddr::V6);
        if self.tunnel_v6 {
            v6
        } else {
            v4.or(v6)
        }
    }

    /// Where tunnels to the node go from a node that sends over `from`:
    /// its preferred address if `from` holds that family, else its other
    /// address if `from` holds that one (a dual-stack node takes tunnels on
    /// both), else None (no family in common).
    pub fn tunnel_address_from(&self, from: Families) -> Option<std::net::IpAddr> {
        let v4 = self.underlay_v4.map(std::net::IpAddr::V4);
        let v6 = self.underlay_v6.map(std::net::IpAddr::V6);
        let (first, second) = if self.tunnel_v6 { (v6, v4) } else { (v4, v6) };
        first.into_iter().chain(second).find(|a| from.holds(*a))
    }
}

/// The owner of a pod block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockOwner {
    /// The node that owns the block.
    pub node: NodeId,
}

/// A pod endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The pod interface's MAC.
    pub mac: Mac,
    /// The node the pod runs on.
    pub node: NodeId,
    /// On this node: the host-side port (ifindex of the pod's veth).
    pub local_port: Option<u32>,
}

/// An entry as stored: value and provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<V> {
    /// The value.
    pub value: V,
    /// Its provenance.
    pub meta: Meta,
}

impl<V: Ord> Entry<V> {
    /// True if `self` should replace `old`: higher source, then higher
    /// version, then (equal versions) the larger value, so every node that
    /// sees the same set of updates, in any order, keeps the same entry.
    pub fn beats(&self, old: &Entry<V>) -> bool {
        (self.meta.source, self.meta.version, &self.value)
            > (old.meta.source, old.meta.version, &old.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v4: Option<&str>, v6: Option<&str>, tunnel_v6: bool) -> NodeRecord {
        NodeRecord {
            underlay_v4: v4.map(|a| a.parse().unwrap()),
            underlay_v6: v6.map(|a| a.parse().unwrap()),
            tunnel_v6,
            ..NodeRecord::default()
        }
    }

    /// The peer's preferred family when the sender has it, its other
    /// address when only that one is shared, nothing when none is.
    #[test]
    fn each_peer_is_reached_over_a_family_both_sides_have() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        let dual_v6 = record(Some("10.0.0.2"), Some("fd00::2"), true);
        assert_eq!(dual_v6.tunnel_address_from(Families::BOTH), ip("fd00::2"));
        assert_eq!(dual_v6.tunnel_address_from(Families::V4), ip("10.0.0.2"));
        assert_eq!(dual_v6.tunnel_address_from(Families::V6), ip("fd00::2"));
        let dual_v4 = record(Some("10.0.0.3"), Some("fd00::3"), false);
        assert_eq!(dual_v4.tunnel_address_from(Families::BOTH), ip("10.0.0.3"));
        assert_eq!(dual_v4.tunnel_address_from(Families::V6), ip("fd00::3"));
        let v4_only = record(Some("10.0.0.4"), None, false);
        assert_eq!(v4_only.tunnel_address_from(Families::V6), None);
        assert_eq!(v4_only.tunnel_address_from(Families::default()), None);
        assert_eq!(v4_only.tunnel_address(), ip("10.0.0.4"));
    }
}
