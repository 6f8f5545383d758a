//! Per-worker counters: each worker thread writes only its own (relaxed
//! atomics, no sharing of cache lines between writers); readers sum them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped. The names are the ones stats and logs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// From the TUN: destination in no known block.
    NoRoute,
    /// From the TUN: destination in a local block (should not reach the TUN).
    LocalBlock,
    /// From the TUN: not an IP packet weft can read.
    BadInner,
    /// From the TUN: a virtio-net header or offload weft cannot honour.
    BadOffload,
    /// From the TUN: too big for the overlay; answered with ICMP.
    TooBig,
    /// From the TUN: the peer has no underlay address of our family.
    NoUnderlay,
    /// From the underlay: source is not a known peer.
    UnknownSource,
    /// From the underlay: the inner source is not in the sender's blocks.
    SpoofedInner,
    /// From the underlay: malformed or unacceptable VXLAN (see reasons).
    BadVxlan,
    /// From the underlay: VNI other than ours.
    WrongVni,
    /// From the underlay: RFC 6040 CE over Not-ECT.
    EcnDrop,
    /// A send or write failed.
    IoError,
    /// Veth attach: destination in a local block with no registered port.
    NoEndpoint,
    /// Veth attach: a frame whose source MAC or IP is not the port's.
    SpoofedSource,
    /// Veth attach: a frame weftd does not route or answer (not addressed
    /// to the gateway MAC, ARP/ND for another address, link-local or
    /// multicast IP, other EtherTypes).
    NotForGateway,
    /// Veth attach: TTL or hop limit would reach 0.
    TtlExpired,
    /// Underlay datagrams the kernel dropped because weftd's socket
    /// buffer was full (SO_RXQ_OVFL).
    SocketOverflow,
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = 17;

impl DropReason {
    /// All reasons, in index order.
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::NoRoute,
        DropReason::LocalBlock,
        DropReason::BadInner,
        DropReason::BadOffload,
        DropReason::TooBig,
        DropReason::NoUnderlay,
        DropReason::UnknownSource,
        DropReason::SpoofedInner,
        DropReason::BadVxlan,
        DropReason::WrongVni,
        DropReason::EcnDrop,
        DropReason::IoError,
        DropReason::NoEndpoint,
        DropReason::SpoofedSource,
        DropReason::NotForGateway,
        DropReason::TtlExpired,
        DropReason::SocketOverflow,
    ];

    /// The reason's name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::LocalBlock => "local_block",
            DropReason::BadInner => "bad_inner",
            DropReason::BadOffload => "bad_offload",
            DropReason::TooBig => "too_big",
            DropReason::NoUnderlay => "no_underlay",
            DropReason::UnknownSource => "unknown_source",
            DropReason::SpoofedInner => "spoofed_inner",
            DropReason::BadVxlan => "bad_vxlan",
            DropReason::WrongVni => "wrong_vni",
            DropReason::EcnDrop => "ecn_ce_over_not_ect",
            DropReason::IoError => "io_error",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotForGateway => "not_for_gateway",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::SocketOverflow => "socket_overflow",
        }
    }
}

/// One worker's counters, on their own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    /// Packets from the TUN sent to the underlay (after segmentation).
    pub tx_packets: AtomicU64,
    /// Bytes of those inner packets.
    pub tx_bytes: AtomicU64,
    /// Packets from the underlay written to the TUN.
    pub rx_packets: AtomicU64,
    /// Bytes of those inner packets.
    pub rx_bytes: AtomicU64,
    /// Writes to pods that carried a coalesced super-packet (TCP segments
    /// or UDP datagrams of one flow; each counts in `rx_packets`):
    /// `rx_packets` per write shows how well receive coalescing works.
    pub rx_super_packets: AtomicU64,
    /// IP-in-IP packets the underlay NIC's GRO had merged before weftd
    /// read them (longer than the overlay MTU), delivered whole; each is
    /// also one of `rx_super_packets`.
    pub rx_underlay_gro: AtomicU64,
    /// ARP requests that arrived inside VXLAN and were answered.
    pub arp_replies: AtomicU64,
    /// Veth attach: ARP and neighbour solicitations from pods answered.
    pub gateway_replies: AtomicU64,
    /// Veth attach: pod-to-pod packets switched on this node.
    pub local_packets: AtomicU64,
    /// Drops by reason.
    pub drops: [AtomicU64; DROP_REASONS],
}

impl WorkerCounters {
    /// Counts one drop.
    #[inline]
    pub fn dropped(&self, why: DropReason) {
        self.dropped_n(why, 1);
    }

    /// Counts `n` drops for one reason (a whole batch refused at once).
    #[inline]
    pub fn dropped_n(&self, why: DropReason, n: u64) {
        self.drops[why as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The sum over workers, as JSON.
pub fn snapshot(workers: &[WorkerCounters]) -> serde_json::Value {
    snapshot_refs(&workers.iter().collect::<Vec<_>>())
}

/// As [`snapshot`], over references.
pub fn snapshot_refs(workers: &[&WorkerCounters]) -> serde_json::Value {
    let sum = |f: &dyn Fn(&WorkerCounters) -> &AtomicU64| -> u64 {
        workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    let mut drops = serde_json::Map::new();
    for why in DropReason::ALL {
        drops.insert(why.name().into(), sum(&|w| &w.drops[why as usize]).into());
    }
    serde_json::json!({
        "tx_packets": sum(&|w| &w.tx_packets),
        "tx_bytes": sum(&|w| &w.tx_bytes),
        "rx_packets": sum(&|w| &w.rx_packets),
        "rx_bytes": sum(&|w| &w.rx_bytes),
        "rx_super_packets": sum(&|w| &w.rx_super_packets),
        "rx_underlay_gro": sum(&|w| &w.rx_underlay_gro),
        "arp_replies": sum(&|w| &w.arp_replies),
        "gateway_replies": sum(&|w| &w.gateway_replies),
        "local_packets": sum(&|w| &w.local_packets),
        "drops": drops,
    })
}
