//! TCP and UDP segmentation and coalescing for TUN offloads.
//!
//! A TUN device with `IFF_VNET_HDR` and TSO hands weftd TCP super-packets of
//! up to 64 KiB; the wire needs MSS-sized segments ([`split_tcp`]). With USO
//! it also hands over UDP super-packets from applications that send with
//! `UDP_SEGMENT` (QUIC stacks do); [`split_udp`] cuts them into datagrams. On the way
//! back, in-order segments of one flow are merged into one super-packet
//! ([`TcpCoalescer`]) so the receiving TUN takes one write per window, not per
//! segment; equal-sized datagrams of one UDP flow likewise
//! ([`UdpCoalescer`], the TUN's USO), and [`InPlaceRun`] holds either.
//!
//! Why not tun-rs's offload module: it splits into separate buffers and
//! coalesces packets already read into its own buffers. weft wants segments
//! laid out at a fixed stride with headroom for the tunnel headers in front
//! of each, so one UDP GSO send carries a whole run with no further copy, and
//! wants to merge straight out of a GRO'd UDP receive buffer. Both are layout
//! decisions of weft's data path, so this crate owns them.
//!
//! One job per file: `split` (super-packet → segments), `coalesce_tcp`
//! and `coalesce_udp` (segments → super-packet), `run` (either, for the data path's
//! in-place writes); this file holds the header parsing they share.

mod coalesce_tcp;
mod coalesce_udp;
mod run;
mod split;

pub use coalesce_tcp::{merged_by_kernel, TcpCoalescer};
pub use coalesce_udp::{UdpCoalescer, MAX_UDP_SEGMENTS};
pub use run::{InPlaceRun, RunRules};
pub use split::{split_tcp, split_tcp_headers, split_udp, SplitHeaders};

use crate::checksum::Checksum;
use crate::error::{Error, Layer, Result};
use crate::ip::{Family, IpPacket};
use crate::ipv4::{Ipv4Packet, PROTO_TCP, PROTO_UDP};
use crate::ipv6::Ipv6Packet;
use crate::tcp::TcpSegment;
use core::net::IpAddr;

/// Where split segments go in the output buffer: segment `i` starts at
/// `i * stride + headroom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes left free in front of each segment (for tunnel headers).
    pub headroom: usize,
    /// Distance between the starts of consecutive slots.
    pub stride: usize,
}

/// The IP and transport headers of one TCP or UDP packet, as splitting
/// and coalescing need them.
#[derive(Debug, Clone, Copy)]
struct FlowHeaders {
    family: Family,
    src: IpAddr,
    dst: IpAddr,
    /// IP header length (IPv4 options included).
    ip_hl: usize,
    /// Transport header length (TCP options included; 8 for UDP).
    l4_hl: usize,
    /// The IP packet's declared total length.
    total: usize,
}

impl FlowHeaders {
    fn hdr_len(&self) -> usize {
        self.ip_hl + self.l4_hl
    }
}

/// Reads the headers of an unfragmented IP packet carrying `proto` (TCP
/// or UDP) with no IPv6 extension headers.
fn parse_flow(packet: &[u8], proto: u8) -> Result<FlowHeaders> {
    let ip = IpPacket::new_checked(packet)?;
    let layer = match ip.family() {
        Family::V4 => Layer::Ipv4,
        Family::V6 => Layer::Ipv6,
    };
    if ip.protocol() != proto || ip.is_fragment() {
        return Err(Error::Unsupported {
            layer,
            what: if proto == PROTO_TCP {
                "not TCP (or a fragment, or extension headers)"
            } else {
                "not UDP (or a fragment, or extension headers)"
            },
        });
    }
    let (ip_hl, total) = (ip.header_len(), ip.total_len());
    let l4_hl = if proto == PROTO_TCP {
        TcpSegment::new_checked(&packet[ip_hl..total])?.header_len()
    } else if total < ip_hl + 8 {
        return Err(Error::Truncated {
            layer: Layer::Udp,
            need: ip_hl + 8,
            have: total,
        });
    } else {
        8
    };
    Ok(FlowHeaders {
        family: ip.family(),
        src: ip.src(),
        dst: ip.dst(),
        ip_hl,
        l4_hl,
        total,
    })
}

fn parse_tcp(packet: &[u8]) -> Result<FlowHeaders> {
    parse_flow(packet, PROTO_TCP)
}

fn parse_udp(packet: &[u8]) -> Result<FlowHeaders> {
    parse_flow(packet, PROTO_UDP)
}

/// Whether the transport checksum at `csum_at` (offset in `packet`) was left
/// partial by an offloading sender: it holds the folded pseudo-header sum
/// (what Linux writes for `CHECKSUM_PARTIAL`), for a NIC to finish. A Linux
/// vxlan node whose underlay device finishes nothing (a veth, a virtio NIC
/// to a VM on the same host) sends its pods' packets that way; they are
/// accepted as unverifiable, the way the kernel accepts them from such a
/// device, and their receiver gets them with the checksum to finish.
fn left_partial(packet: &[u8], p: &FlowHeaders, proto: u8, csum_at: usize) -> bool {
    let Some(field) = packet.get(csum_at..csum_at + 2) else {
        return false;
    };
    let field = u16::from_be_bytes([field[0], field[1]]);
    field != 0 && field == pseudo_for(p, proto, p.total - p.ip_hl).fold()
}

/// Where the transport checksum of `packet` (an IP packet) starts and lies
/// (`csum_start`, `csum_offset`), if it is TCP or UDP with a checksum left
/// partial by an offloading sender (see `left_partial`): delivered with a
/// virtio "needs checksum" header, the receiving kernel finishes it.
pub fn partial_checksum(packet: &[u8]) -> Option<(usize, usize)> {
    for (proto, offset) in [(PROTO_TCP, 16), (PROTO_UDP, 6)] {
        if let Ok(p) = parse_flow(packet, proto) {
            return left_partial(packet, &p, proto, p.ip_hl + offset).then_some((p.ip_hl, offset));
        }
    }
    None
}

fn pseudo(p: &FlowHeaders, tcp_len: usize) -> Checksum {
    pseudo_for(p, PROTO_TCP, tcp_len)
}

fn pseudo_for(p: &FlowHeaders, proto: u8, len: usize) -> Checksum {
    match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Checksum::pseudo_v4(s, d, proto, len as u32),
        (IpAddr::V6(s), IpAddr::V6(d)) => Checksum::pseudo_v6(s, d, proto, len as u32),
        _ => Checksum::new(),
    }
}

/// Writes the IP length fields of a packet whose headers are `hdr` and whose
/// TCP payload is `payload_len` bytes; IPv4 also gets `ident` and a fresh
/// header checksum.
fn set_ip_lengths(hdr: &mut [u8], p: &FlowHeaders, payload_len: usize, ident: Option<u16>) {
    match p.family {
        Family::V4 => {
            let mut ip = Ipv4Packet::new_unchecked(&mut hdr[..p.ip_hl]);
            ip.set_total_len((p.hdr_len() + payload_len) as u16);
            if let Some(id) = ident {
                ip.set_ident(id);
            }
            ip.fill_checksum();
        }
        Family::V6 => {
            Ipv6Packet::new_unchecked(&mut hdr[..]).set_payload_len((p.l4_hl + payload_len) as u16);
        }
    }
}

/// Why a segment was not merged into the current super-packet. Apart from
/// `BadChecksum` (drop it), the caller finishes the current super-packet and
/// starts a new one with the refused segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a TCP packet weft can coalesce (or malformed).
    NotTcp,
    /// Another flow, or IP/TCP header fields that must match do not.
    OtherFlow,
    /// Not the next sequence number.
    OutOfOrder,
    /// Flags other than ACK and PSH, or flags that differ.
    Flags,
    /// No payload (pure ACK), or more payload than the first segment's.
    Size,
    /// The super-packet would exceed 64 KiB or the output buffer.
    Full,
    /// The super-packet ended (a short segment or PSH was merged).
    Closed,
    /// The segment's TCP (or UDP) checksum does not verify: drop it.
    BadChecksum,
    /// Not a UDP datagram weft can coalesce: malformed, a fragment, or
    /// without a checksum (IPv4's zero: nothing to verify).
    NotUdp,
}

/// How [`TcpCoalescer::finish`] leaves the TCP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumFill {
    /// The pseudo-header sum, for a virtio-net header with NEEDS_CSUM (the
    /// kernel completes it): what a TUN write with offloads wants.
    Partial,
    /// The complete checksum.
    Full,
}

/// The transport protocol of a coalesced super-packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP (GSO type TCPv4 or TCPv6).
    Tcp,
    /// UDP (GSO type UDP_L4, either family).
    Udp,
}

/// The merged super-packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced {
    /// Length of the packet in the output buffer.
    pub len: usize,
    /// Segments merged.
    pub segments: usize,
    /// Payload bytes per segment (the GSO size for the virtio-net header).
    pub mss: usize,
    /// Family (with `transport`, the GSO type).
    pub family: Family,
    /// TCP or UDP.
    pub transport: Transport,
    /// Offset of the transport header (virtio csum_start).
    pub csum_start: usize,
    /// Offset of the checksum within the transport header (virtio csum_offset).
    pub csum_offset: usize,
    /// Length of the IP and transport headers.
    pub header_len: usize,
}

/// Whether `seg`'s IP header matches the run's (in `out`) in every field
/// but the length, IPv4 id and header checksum.
fn same_ip_header(p: &FlowHeaders, out: &[u8], seg: &[u8]) -> bool {
    let a = &out[..p.ip_hl];
    let b = &seg[..p.ip_hl];
    match p.family {
        // Version/IHL/TOS, flags/fragment/TTL/protocol, addresses and options.
        Family::V4 => a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..] == b[12..],
        // Version/class/flow label, next header, hop limit, addresses.
        Family::V6 => a[..4] == b[..4] && a[6..] == b[6..],
    }
}

/// The largest super-packet of `family`: 64 KiB of IP packet (IPv6's
/// payload length does not count its 40-byte header).
fn super_packet_limit(family: Family) -> usize {
    match family {
        Family::V4 => usize::from(u16::MAX),
        Family::V6 => usize::from(u16::MAX) + crate::ipv6::HEADER_LEN,
    }
}
