//! weftd's data plane: pods' packets (from a TUN queue with offloads, or
//! from their veths) ↔ VXLAN over UDP sockets or IP-in-IP over raw sockets.
//!
//! One worker per TUN queue, each with its own underlay receive socket
//! (for VXLAN a UDP socket with SO_REUSEPORT on the VXLAN port; datagrams
//! leave from per-flow source ports, `source_ports`) and one thread for
//! both directions (`event_loop`). Pods → underlay: TCP super-packets are
//! segmented straight into back-to-back datagrams and sent with UDP GSO
//! (or `sendmmsg` on raw sockets), after an fdb lookup. Underlay → pods:
//! UDP GRO receive; the sender must be a known peer, the VNI right and the
//! inner source in that peer's blocks; in-order TCP segments are coalesced
//! into one super-packet per write. See docs/ARCHITECTURE.md.

mod attach;
pub mod counters;
mod event_loop;
pub mod multicast;
pub mod next_hop;
pub mod pending;
pub mod ports;
pub mod rx;
pub mod source_ports;
pub mod spin;
pub mod sys;
pub mod tx;
mod veth;

pub use attach::Attachment;
use counters::WorkerCounters;
use encap::virtio;
use encap::vxlan::Vni;
use encap::MacAddr;
use fdb::Fdb;
use source_ports::SourcePorts;
use std::sync::Arc;
use sys::udp_gso::UnderlaySocket;

/// Bytes reserved in front of every inner packet: the VXLAN header and
/// inner Ethernet header are written there.
const HEADROOM: usize = 64;
/// A slot for one segment's headers when a super-packet is sent without
/// copying its payload: VXLAN + Ethernet + IP and TCP with options (at most
/// 22 + 60 + 60 bytes), rounded up to a cache line.
const HEADER_SLOT: usize = 192;
/// Most segments merged into one delivered super-packet: what one GRO
/// receive or one IP-in-IP batch holds.
const MAX_RUN: usize = 64;
/// Largest packet a TUN read can return (a 64 KiB super-packet).
const MAX_PACKET: usize = 65_536;
/// Bytes every packet handed to [`Attachment::emit`] must have free in
/// front of it: a virtio-net header and an Ethernet header.
const EMIT_HEADROOM: usize = virtio::HEADER_LEN + 14;

/// What a worker needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// VXLAN network identifier.
    pub vni: Vni,
    /// VXLAN UDP port.
    pub port: u16,
    /// This node's VTEP MAC.
    pub local_mac: MacAddr,
    /// Largest inner packet the overlay carries.
    pub overlay_mtu: usize,
    /// The underlay families this node's tunnels go over (both on a
    /// dual-stack underlay): each peer is reached over one of them
    /// ([`next_hop::next_hop`]).
    pub tunnels: fdb::Families,
    /// Source of ICMP errors to pods (their gateway).
    pub icmp_source_v4: std::net::Ipv4Addr,
    /// Source of ICMPv6 errors to pods.
    pub icmp_source_v6: std::net::Ipv6Addr,
    /// How long a worker keeps polling after its last packet before it
    /// sleeps (zero: sleep at once).
    pub busy_poll: std::time::Duration,
}

/// The derived VTEP MAC of a node: stable, locally administered, the same
/// on every node that knows the name.
pub fn vtep_mac(node: &str) -> MacAddr {
    MacAddr::local_from_seed(fdb::fnv1a(node.as_bytes()))
}

/// The sockets a worker sends and receives encapsulated packets on, in
/// each underlay family this node tunnels over (one, or both on a
/// dual-stack underlay).
pub enum UnderlayIo {
    /// VXLAN: a UDP socket per family on the VXLAN port to receive on
    /// (SO_REUSEPORT, one per worker: the kernel spreads flows over them by
    /// their outer addresses and ports), and the sockets datagrams leave
    /// from, one per outer source port and family ([`SourcePorts`], shared
    /// by all workers).
    Vxlan {
        /// The worker's receive sockets on the VXLAN port, one per family.
        receive: Vec<Arc<UnderlaySocket>>,
        /// The send sockets.
        sources: SourcePorts,
    },
    /// IP-in-IP: a pair of raw sockets per underlay family; the kernel
    /// writes the outer header on send and hands the whole packet over on
    /// receive. No ipip kernel module is involved. One set serves all
    /// workers: the kernel gives every raw socket of a protocol its own copy
    /// of every packet, so a set per worker would only multiply that work.
    IpIp {
        /// One pair per family this node tunnels over.
        over: Vec<RawPair>,
        /// Whether this worker receives: every raw socket sees every packet,
        /// so exactly one worker reads them.
        receive: bool,
    },
}

impl UnderlayIo {
    /// How many underlay sockets this worker reads ([`Worker`]'s sources
    /// 1..=n, after the attachment).
    pub fn receive_count(&self) -> usize {
        match self {
            UnderlayIo::Vxlan { receive, .. } => receive.len(),
            UnderlayIo::IpIp { over, receive } => 2 * over.len() * usize::from(*receive),
        }
    }
}

/// IP-in-IP's raw sockets over one underlay family.
#[derive(Clone)]
pub struct RawPair {
    /// Protocol 4 (inner IPv4).
    pub v4: Arc<socket2::Socket>,
    /// Protocol 41 (inner IPv6).
    pub v6: Arc<socket2::Socket>,
    /// Over IPv6, this node's address there. IPv6 raw sockets hand over the
    /// payload alone (RFC 3542), so the worker rebuilds the outer header in
    /// the headroom — the sender's address and the traffic class from the
    /// socket, this address — and decapsulates like any IP-in-IP packet.
    pub outer_v6: Option<std::net::Ipv6Addr>,
}

impl RawPair {
    /// The socket for an inner packet of `family`.
    pub fn for_inner(&self, family: encap::Family) -> &socket2::Socket {
        match family {
            encap::Family::V4 => &self.v4,
            encap::Family::V6 => &self.v6,
        }
    }
}

/// The pair of `over` for a peer at `to` (the first if none is of its
/// family: [`next_hop::next_hop`] picks only families this node has, so a
/// send through the wrong one can only fail, and is counted).
pub fn raw_pair_to(over: &[RawPair], to: std::net::IpAddr) -> Option<&RawPair> {
    over.iter()
        .find(|p| p.outer_v6.is_some() == to.is_ipv6())
        .or(over.first())
}

/// One worker's two loops over its attachment and its underlay sockets.
pub struct Worker {
    /// Where pods' packets come from and decapsulated ones go.
    pub attach: Attachment,
    /// The underlay sockets.
    pub underlay: UnderlayIo,
    /// The forwarding tables.
    pub fdb: Fdb,
    /// Settings.
    pub settings: Settings,
    /// This worker's counters.
    pub counters: Arc<WorkerCounters>,
    /// The node's multicast plane (None: multicast not carried).
    pub multicast: Option<Arc<multicast::Multicast>>,
}

impl Worker {
    /// Starts the worker's thread (both directions; see `event_loop`).
    pub fn spawn(self, index: usize) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(format!("weft-w{index}"))
            .spawn(move || self.run(index))
            .map(|_| ())
    }
}
