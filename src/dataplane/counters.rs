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
    /// From the underlay: the inner destination is neither in this node's
    /// blocks nor one of its addresses (broadcast, multicast, or transit to
    /// another node, which weft never does).
    NotForThisNode,
    /// From the underlay: malformed or unacceptable VXLAN (see reasons).
    BadVxlan,
    /// From the underlay: malformed IP-in-IP (outer or inner header).
    BadIpip,
    /// From the underlay: an inner TCP or UDP checksum that does not add
    /// up (found while coalescing, which must check it).
    BadInnerChecksum,
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
    /// A multicast datagram to a group with no member anywhere else.
    NoGroupMembers,
    /// An IGMP or MLD report from a pod that does not parse.
    BadMembershipReport,
    /// A datagram to a group or broadcast address of the pod's own link
    /// (224.0.0.0/24, ff02::/16, broadcast): never carried.
    LinkScope,
    /// A pod (or the node's pods together) sent multicast faster than
    /// `multicast.pod_rate_pps` (`node_rate_pps`).
    MulticastRateLimited,
    /// A join past `multicast.max_groups_per_pod` or `max_groups`.
    GroupLimit,
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = 25;

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
        DropReason::NotForThisNode,
        DropReason::BadVxlan,
        DropReason::BadIpip,
        DropReason::BadInnerChecksum,
        DropReason::WrongVni,
        DropReason::EcnDrop,
        DropReason::IoError,
        DropReason::NoEndpoint,
        DropReason::SpoofedSource,
        DropReason::NotForGateway,
        DropReason::TtlExpired,
        DropReason::SocketOverflow,
        DropReason::NoGroupMembers,
        DropReason::BadMembershipReport,
        DropReason::LinkScope,
        DropReason::MulticastRateLimited,
        DropReason::GroupLimit,
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
            DropReason::NotForThisNode => "not_for_this_node",
            DropReason::BadVxlan => "bad_vxlan",
            DropReason::BadIpip => "bad_ipip",
            DropReason::BadInnerChecksum => "bad_inner_checksum",
            DropReason::WrongVni => "wrong_vni",
            DropReason::EcnDrop => "ecn_ce_over_not_ect",
            DropReason::IoError => "io_error",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotForGateway => "not_for_gateway",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::SocketOverflow => "socket_overflow",
            DropReason::NoGroupMembers => "no_group_members",
            DropReason::BadMembershipReport => "bad_membership_report",
            DropReason::LinkScope => "link_scope",
            DropReason::MulticastRateLimited => "multicast_rate_limited",
            DropReason::GroupLimit => "group_limit",
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
    /// IPv6 neighbour solicitations that arrived inside VXLAN and were
    /// answered.
    pub nd_replies: AtomicU64,
    /// Veth attach: ARP and neighbour solicitations from pods answered.
    pub gateway_replies: AtomicU64,
    /// Veth attach: pod-to-pod packets switched on this node.
    pub local_packets: AtomicU64,
    /// Multicast copies sent to other nodes.
    pub multicast_copies: AtomicU64,
    /// Bytes of those copies (inner packets).
    pub multicast_copy_bytes: AtomicU64,
    /// Multicast copies handed to member pods (from this node's pods or
    /// from other nodes).
    pub multicast_local: AtomicU64,
    /// IGMP and MLD reports read from pods.
    pub multicast_reports: AtomicU64,
    /// General queries sent to pods.
    pub multicast_queries: AtomicU64,
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

    /// Counts packets sent to the underlay and their inner bytes.
    #[inline]
    pub fn sent(&self, packets: u64, bytes: u64) {
        Self::add(&self.tx_packets, packets);
        Self::add(&self.tx_bytes, bytes);
    }

    /// Counts packets delivered to pods and their bytes.
    #[inline]
    pub fn delivered(&self, packets: u64, bytes: u64) {
        Self::add(&self.rx_packets, packets);
        Self::add(&self.rx_bytes, bytes);
    }

    /// Adds to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One of a worker's packet counters, as stats and metrics show it.
pub struct Counter {
    /// Its name in `weftctl stats` (metrics add the `weft_` prefix).
    pub name: &'static str,
    /// What it counts (the metric's help text).
    pub help: &'static str,
    /// The counter in a worker's set.
    pub get: fn(&WorkerCounters) -> &AtomicU64,
}

/// Every packet counter (drops aside): the one list stats and metrics
/// both print.
pub const COUNTERS: [Counter; 15] = [
    Counter {
        name: "tx_packets",
        help: "Packets sent to the underlay.",
        get: |w| &w.tx_packets,
    },
    Counter {
        name: "tx_bytes",
        help: "Bytes sent to the underlay.",
        get: |w| &w.tx_bytes,
    },
    Counter {
        name: "rx_packets",
        help: "Packets received from the underlay and delivered.",
        get: |w| &w.rx_packets,
    },
    Counter {
        name: "rx_bytes",
        help: "Bytes received from the underlay and delivered.",
        get: |w| &w.rx_bytes,
    },
    Counter {
        name: "rx_super_packets",
        help: "Coalesced super-packets written to pods (their segments count in weft_rx_packets).",
        get: |w| &w.rx_super_packets,
    },
    Counter {
        name: "rx_underlay_gro",
        help: "IP-in-IP packets the underlay NIC's GRO merged, delivered whole.",
        get: |w| &w.rx_underlay_gro,
    },
    Counter {
        name: "arp_replies",
        help: "ARP requests from VXLAN peers answered from fdb.",
        get: |w| &w.arp_replies,
    },
    Counter {
        name: "nd_replies",
        help: "IPv6 neighbour solicitations from VXLAN peers answered from fdb.",
        get: |w| &w.nd_replies,
    },
    Counter {
        name: "gateway_replies",
        help: "Veth attachment: ARP and neighbour solicitations from pods answered.",
        get: |w| &w.gateway_replies,
    },
    Counter {
        name: "local_packets",
        help: "Veth attachment: pod-to-pod packets switched on this node.",
        get: |w| &w.local_packets,
    },
    Counter {
        name: "multicast_copies",
        help: "Multicast datagrams replicated to other nodes (one per node with members).",
        get: |w| &w.multicast_copies,
    },
    Counter {
        name: "multicast_copy_bytes",
        help: "Bytes of the multicast copies sent to other nodes (inner packets).",
        get: |w| &w.multicast_copy_bytes,
    },
    Counter {
        name: "multicast_local",
        help: "Multicast datagrams handed to member pods on this node.",
        get: |w| &w.multicast_local,
    },
    Counter {
        name: "multicast_reports",
        help: "IGMP and MLD membership reports read from pods.",
        get: |w| &w.multicast_reports,
    },
    Counter {
        name: "multicast_queries",
        help: "IGMP and MLD general queries sent to pods.",
        get: |w| &w.multicast_queries,
    },
];

/// The sum of one counter over workers.
pub fn sum(workers: &[&WorkerCounters], get: impl Fn(&WorkerCounters) -> &AtomicU64) -> u64 {
    workers.iter().map(|w| get(w).load(Ordering::Relaxed)).sum()
}

/// The counters shown per worker as well as summed: how flows spread over
/// the workers (the first four of [`COUNTERS`]).
pub const PER_WORKER: &[Counter] = COUNTERS.split_at(4).0;

/// The sums over workers, as JSON: every counter of [`COUNTERS`], the
/// drops by reason under `drops`, and [`PER_WORKER`] for each worker under
/// `workers`; `others` (threads that are not workers: multicast) count in
/// the sums only.
pub fn snapshot_refs(workers: &[&WorkerCounters], others: &[&WorkerCounters]) -> serde_json::Value {
    let all: Vec<&WorkerCounters> = workers.iter().chain(others).copied().collect();
    let mut drops = serde_json::Map::new();
    for why in DropReason::ALL {
        drops.insert(
            why.name().into(),
            sum(&all, |w| &w.drops[why as usize]).into(),
        );
    }
    let mut v = serde_json::Map::new();
    for c in &COUNTERS {
        v.insert(c.name.into(), sum(&all, c.get).into());
    }
    v.insert("drops".into(), drops.into());
    let each: Vec<serde_json::Value> = workers
        .iter()
        .map(|w| {
            PER_WORKER
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        (c.get)(w).load(Ordering::Relaxed).into(),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    v.insert("workers".into(), each.into());
    v.into()
}
