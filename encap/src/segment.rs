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

use crate::checksum::Checksum;
use crate::error::{Error, Layer, Result};
use crate::ip::Family;
use crate::ipv4::{Ipv4Packet, PROTO_TCP, PROTO_UDP};
use crate::ipv6::Ipv6Packet;
use crate::tcp::{self, TcpSegment};
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

/// The parts of a TCP-over-IP packet segmentation needs.
#[derive(Debug, Clone, Copy)]
struct TcpParts {
    family: Family,
    src: IpAddr,
    dst: IpAddr,
    ip_hl: usize,
    tcp_hl: usize,
    total: usize,
}

impl TcpParts {
    fn hdr_len(&self) -> usize {
        self.ip_hl + self.tcp_hl
    }
}

fn parse_tcp(packet: &[u8]) -> Result<TcpParts> {
    let (family, src, dst, ip_hl, total) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(packet)?;
            if p.protocol() != PROTO_TCP {
                return Err(Error::Unsupported {
                    layer: Layer::Ipv4,
                    what: "not TCP",
                });
            }
            if p.is_fragment() {
                return Err(Error::Unsupported {
                    layer: Layer::Ipv4,
                    what: "fragment",
                });
            }
            (
                Family::V4,
                p.src().into(),
                p.dst().into(),
                p.header_len(),
                p.total_len(),
            )
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(packet)?;
            if p.next_header() != PROTO_TCP {
                return Err(Error::Unsupported {
                    layer: Layer::Ipv6,
                    what: "not TCP (or extension headers)",
                });
            }
            (
                Family::V6,
                p.src().into(),
                p.dst().into(),
                crate::ipv6::HEADER_LEN,
                p.total_len(),
            )
        }
        Some(_) => {
            return Err(Error::Malformed {
                layer: Layer::Inner,
                what: "IP version is neither 4 nor 6",
            })
        }
        None => {
            return Err(Error::Truncated {
                layer: Layer::Inner,
                need: 1,
                have: 0,
            })
        }
    };
    let seg = TcpSegment::new_checked(&packet[ip_hl..total])?;
    Ok(TcpParts {
        family,
        src,
        dst,
        ip_hl,
        tcp_hl: seg.header_len(),
        total,
    })
}

fn pseudo(p: &TcpParts, tcp_len: usize) -> Checksum {
    pseudo_for(p, PROTO_TCP, tcp_len)
}

fn pseudo_for(p: &TcpParts, proto: u8, len: usize) -> Checksum {
    match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Checksum::pseudo_v4(s, d, proto, len as u32),
        (IpAddr::V6(s), IpAddr::V6(d)) => Checksum::pseudo_v6(s, d, proto, len as u32),
        _ => Checksum::new(),
    }
}

/// Writes the IP length fields of a packet whose headers are `hdr` and whose
/// TCP payload is `payload_len` bytes; IPv4 also gets `ident` and a fresh
/// header checksum.
fn set_ip_lengths(hdr: &mut [u8], p: &TcpParts, payload_len: usize, ident: Option<u16>) {
    match p.family {
        Family::V4 => {
            let total = (p.hdr_len() + payload_len) as u16;
            hdr[2..4].copy_from_slice(&total.to_be_bytes());
            if let Some(id) = ident {
                hdr[4..6].copy_from_slice(&id.to_be_bytes());
            }
            hdr[10..12].fill(0);
            let c = crate::checksum::checksum(&hdr[..p.ip_hl]);
            hdr[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Family::V6 => {
            let plen = (p.tcp_hl + payload_len) as u16;
            hdr[4..6].copy_from_slice(&plen.to_be_bytes());
        }
    }
}

/// Splits a TCP super-packet into segments of at most `mss` payload bytes,
/// written at `layout` positions in `out`, their lengths in `lens`. Each
/// segment gets its IP length, IPv4 id (+1 per segment) and header checksum,
/// TCP sequence number and a full TCP checksum; FIN and PSH stay on the last
/// segment only, CWR on the first only. Returns the number of segments.
pub fn split_tcp(
    packet: &[u8],
    mss: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
) -> Result<usize> {
    split(packet, mss, out, layout, lens, true).map(|s| s.segments)
}

/// Where [`split_tcp_headers`] left things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitHeaders {
    /// Number of segments.
    pub segments: usize,
    /// Length of each segment's IP + TCP headers.
    pub header_len: usize,
    /// Payload bytes per segment (the last may have fewer).
    pub mss: usize,
}

impl SplitHeaders {
    /// The payload of segment `i`, in place in the super-packet.
    pub fn payload<'a>(&self, packet: &'a [u8], i: usize) -> &'a [u8] {
        let total = packet.len().min(match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 4 => usize::from(u16::from_be_bytes([packet[2], packet[3]])),
            Some(6) if packet.len() >= 6 => {
                40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]))
            }
            _ => packet.len(),
        });
        let start = (self.header_len + i * self.mss).min(total);
        &packet[start..(start + self.mss).min(total)]
    }
}

/// As [`split_tcp`], but writes only each segment's headers into its slot
/// (`lens[i]` = header length) and leaves the payloads in place: segment `i`
/// is the slot's headers followed by [`SplitHeaders::payload`]`(packet, i)`,
/// for a scatter-gather send (one iovec pair per segment) with no copy of
/// the payload at all.
pub fn split_tcp_headers(
    packet: &[u8],
    mss: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
) -> Result<SplitHeaders> {
    split(packet, mss, out, layout, lens, false)
}

fn split(
    packet: &[u8],
    mss: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
    copy: bool,
) -> Result<SplitHeaders> {
    if mss == 0 {
        return Err(Error::Malformed {
            layer: Layer::Tcp,
            what: "MSS of zero",
        });
    }
    let p = parse_tcp(packet)?;
    let hdr_len = p.hdr_len();
    let payload = &packet[hdr_len..p.total];
    let n = payload.len().div_ceil(mss).max(1);
    let per_slot = hdr_len + if copy { mss } else { 0 };
    let last_len = if copy {
        payload.len() - (n - 1) * mss
    } else {
        0
    };
    check_room(
        n,
        lens.len(),
        layout,
        per_slot,
        hdr_len + last_len,
        out.len(),
    )?;
    let seq0 = u32::from_be_bytes([
        packet[p.ip_hl + 4],
        packet[p.ip_hl + 5],
        packet[p.ip_hl + 6],
        packet[p.ip_hl + 7],
    ]);
    let flags0 = packet[p.ip_hl + 13];
    let id0 = u16::from_be_bytes([packet[4], packet[5]]);
    let addr_sum = pseudo(&p, 0);
    for i in 0..n {
        let chunk = &payload[i * mss..((i + 1) * mss).min(payload.len())];
        let at = i * layout.stride + layout.headroom;
        let seg_len = hdr_len + if copy { chunk.len() } else { 0 };
        let seg = &mut out[at..at + seg_len];
        seg[..hdr_len].copy_from_slice(&packet[..hdr_len]);
        if copy {
            seg[hdr_len..].copy_from_slice(chunk);
        }
        let ident = (p.family == Family::V4).then(|| id0.wrapping_add(i as u16));
        set_ip_lengths(seg, &p, chunk.len(), ident);
        let t = &mut seg[p.ip_hl..hdr_len];
        let seq = seq0.wrapping_add((i * mss) as u32);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 != n {
            flags &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
        }
        if i != 0 {
            flags &= !tcp::FLAG_CWR;
        }
        t[13] = flags;
        t[16..18].fill(0);
        // The TCP header has an even length, so header and payload sums add.
        let mut c = addr_sum;
        c.add_u32((p.tcp_hl + chunk.len()) as u32).add(t).add(chunk);
        t[16..18].copy_from_slice(&c.finish().to_be_bytes());
        lens[i] = seg_len;
    }
    Ok(SplitHeaders {
        segments: n,
        header_len: hdr_len,
        mss,
    })
}

/// Checks that `n` pieces fit: as many length slots, a stride that holds
/// `per_slot` bytes after the headroom (when there is more than one), and
/// an output buffer that reaches the end of the last piece (`last` bytes).
fn check_room(
    n: usize,
    slots: usize,
    layout: Layout,
    per_slot: usize,
    last: usize,
    out: usize,
) -> Result<()> {
    if n > slots {
        return Err(Error::NoRoom {
            need: n,
            have: slots,
        });
    }
    if n > 1 && layout.stride < layout.headroom + per_slot {
        return Err(Error::NoRoom {
            need: layout.headroom + per_slot,
            have: layout.stride,
        });
    }
    let need = (n - 1) * layout.stride + layout.headroom + last;
    if out < need {
        return Err(Error::NoRoom { need, have: out });
    }
    Ok(())
}

/// Splits a UDP super-packet (virtio `GSO_UDP_L4`) into datagrams of at
/// most `size` payload bytes each, written at `layout` positions in `out`,
/// their lengths in `lens`. Each datagram gets the IP header (its length,
/// IPv4 id +1 per datagram and header checksum) and the UDP header (its
/// length and a full checksum) of the original. Returns the number of
/// datagrams.
pub fn split_udp(
    packet: &[u8],
    size: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
) -> Result<usize> {
    if size == 0 {
        return Err(Error::Malformed {
            layer: Layer::Udp,
            what: "segment size of zero",
        });
    }
    let p = parse_udp(packet)?;
    let hdr_len = p.hdr_len();
    let payload = &packet[hdr_len..p.total];
    let n = payload.len().div_ceil(size).max(1);
    let last_len = payload.len() - (n - 1) * size;
    check_room(
        n,
        lens.len(),
        layout,
        hdr_len + size,
        hdr_len + last_len,
        out.len(),
    )?;
    let id0 = u16::from_be_bytes([packet[4], packet[5]]);
    for i in 0..n {
        let chunk = &payload[i * size..((i + 1) * size).min(payload.len())];
        let at = i * layout.stride + layout.headroom;
        let seg = &mut out[at..at + hdr_len + chunk.len()];
        seg[..hdr_len].copy_from_slice(&packet[..hdr_len]);
        seg[hdr_len..].copy_from_slice(chunk);
        let ident = (p.family == Family::V4).then(|| id0.wrapping_add(i as u16));
        set_ip_lengths(seg, &p, chunk.len(), ident);
        let udp_len = 8 + chunk.len();
        let u = &mut seg[p.ip_hl..];
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[6..8].fill(0);
        let mut c = match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Checksum::pseudo_v4(s, d, PROTO_UDP, udp_len as u32),
            (IpAddr::V6(s), IpAddr::V6(d)) => Checksum::pseudo_v6(s, d, PROTO_UDP, udp_len as u32),
            _ => Checksum::new(),
        };
        // A computed zero is sent as all ones (zero means "no checksum").
        let sum = match c.add(&u[..udp_len]).finish() {
            0 => 0xffff,
            x => x,
        };
        u[6..8].copy_from_slice(&sum.to_be_bytes());
        lens[i] = hdr_len + chunk.len();
    }
    Ok(n)
}

/// The parts of a UDP-over-IP packet (`tcp_hl` is the UDP header's 8).
fn parse_udp(packet: &[u8]) -> Result<TcpParts> {
    let not_udp = |layer| Error::Unsupported {
        layer,
        what: "not UDP (or a fragment, or extension headers)",
    };
    let (family, src, dst, ip_hl, total) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(packet)?;
            if p.protocol() != PROTO_UDP || p.is_fragment() {
                return Err(not_udp(Layer::Ipv4));
            }
            let (s, d) = (p.src().into(), p.dst().into());
            (Family::V4, s, d, p.header_len(), p.total_len())
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(packet)?;
            if p.next_header() != PROTO_UDP {
                return Err(not_udp(Layer::Ipv6));
            }
            let (s, d) = (p.src().into(), p.dst().into());
            (Family::V6, s, d, crate::ipv6::HEADER_LEN, p.total_len())
        }
        _ => {
            return Err(Error::Malformed {
                layer: Layer::Inner,
                what: "IP version is neither 4 nor 6",
            })
        }
    };
    if total < ip_hl + 8 {
        return Err(Error::Truncated {
            layer: Layer::Udp,
            need: ip_hl + 8,
            have: total,
        });
    }
    Ok(TcpParts {
        family,
        src,
        dst,
        ip_hl,
        tcp_hl: 8,
        total,
    })
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

/// Merges in-order TCP segments of one flow into one super-packet in a
/// caller-owned buffer. Merges only what Linux GRO would: same addresses,
/// ports, IP header fields, ACK number, TCP options; flags ACK (and PSH on
/// the last); payloads of equal size but the last.
///
/// Two ways to build it: [`start`](Self::start) / [`push`](Self::push)
/// copy every segment's payload into the buffer;
/// [`start_in_place`](Self::start_in_place) / [`push_in_place`](Self::push_in_place) write
/// only the headers there and return where each payload lies, for a
/// scatter-gather write of headers + payloads with no copy.
#[derive(Debug)]
pub struct TcpCoalescer<'a> {
    out: &'a mut [u8],
    parts: TcpParts,
    len: usize,
    mss: usize,
    next_seq: u32,
    segments: usize,
    closed: bool,
    verify: bool,
    in_place: bool,
}

/// Whether `seg`'s IP header matches the run's (in `out`) in every field
/// but the length, IPv4 id and header checksum.
fn same_ip_header(p: &TcpParts, out: &[u8], seg: &[u8]) -> bool {
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

fn verify_tcp_checksum(packet: &[u8], p: &TcpParts) -> bool {
    let mut c = pseudo(p, p.total - p.ip_hl);
    c.add(&packet[p.ip_hl..p.total]);
    c.fold() == 0xffff
}

const MERGEABLE_FLAGS: u8 = tcp::FLAG_ACK | tcp::FLAG_PSH;

/// What [`TcpCoalescer::admit`] learnt about a segment it accepts.
struct Admitted {
    payload: core::ops::Range<usize>,
    seq: u32,
    flags: u8,
}

impl<'a> TcpCoalescer<'a> {
    /// Starts a super-packet with `first` copied into `out`. With `verify`,
    /// every segment's TCP checksum is checked before it is merged (the
    /// merged packet's checksum is recomputed, so an unchecked corrupt
    /// segment would otherwise be laundered).
    pub fn start(
        out: &'a mut [u8],
        first: &[u8],
        verify: bool,
    ) -> core::result::Result<Self, Refusal> {
        Self::begin(out, first, verify, false).map(|(c, _)| c)
    }

    /// As [`start`](Self::start), but only `first`'s headers are copied into
    /// `out`; returns where `first`'s payload lies in `first`. The result is
    /// written with [`finish`](Self::finish) (its checksum always
    /// [`ChecksumFill::Partial`]) followed by each payload, in order.
    pub fn start_in_place(
        out: &'a mut [u8],
        first: &[u8],
        verify: bool,
    ) -> core::result::Result<(Self, core::ops::Range<usize>), Refusal> {
        Self::begin(out, first, verify, true)
    }

    fn begin(
        out: &'a mut [u8],
        first: &[u8],
        verify: bool,
        in_place: bool,
    ) -> core::result::Result<(Self, core::ops::Range<usize>), Refusal> {
        let parts = parse_tcp(first).map_err(|_| Refusal::NotTcp)?;
        let hdr_len = parts.hdr_len();
        let payload = parts.total - hdr_len;
        if payload == 0 {
            return Err(Refusal::Size);
        }
        let flags = first[parts.ip_hl + 13];
        if flags & !MERGEABLE_FLAGS != 0 || flags & tcp::FLAG_ACK == 0 {
            return Err(Refusal::Flags);
        }
        let copied = if in_place { hdr_len } else { parts.total };
        if out.len() < copied {
            return Err(Refusal::Full);
        }
        if verify && !verify_tcp_checksum(first, &parts) {
            return Err(Refusal::BadChecksum);
        }
        out[..copied].copy_from_slice(&first[..copied]);
        let seq = u32::from_be_bytes([
            first[parts.ip_hl + 4],
            first[parts.ip_hl + 5],
            first[parts.ip_hl + 6],
            first[parts.ip_hl + 7],
        ]);
        let run = TcpCoalescer {
            out,
            parts,
            len: parts.total,
            mss: payload,
            next_seq: seq.wrapping_add(payload as u32),
            segments: 1,
            closed: flags & tcp::FLAG_PSH != 0,
            verify,
            in_place,
        };
        Ok((run, hdr_len..parts.total))
    }

    /// Segments merged so far.
    pub fn segments(&self) -> usize {
        self.segments
    }

    fn same_ip_header(&self, seg: &[u8]) -> bool {
        same_ip_header(&self.parts, self.out, seg)
    }

    /// Merges `seg` (its payload copied), or says why not (nothing changes
    /// then). Only for a run begun with [`start`](Self::start).
    pub fn push(&mut self, seg: &[u8]) -> core::result::Result<(), Refusal> {
        if self.in_place {
            return Err(Refusal::Full);
        }
        let a = self.admit(seg)?;
        let new_len = self.len + a.payload.len();
        self.out[self.len..new_len].copy_from_slice(&seg[a.payload.clone()]);
        self.accept(seg, a);
        Ok(())
    }

    /// Merges `seg` without copying its payload and returns where that
    /// payload lies in `seg`, or says why not (nothing changes then). Only
    /// for a run begun with [`start_in_place`](Self::start_in_place).
    pub fn push_in_place(
        &mut self,
        seg: &[u8],
    ) -> core::result::Result<core::ops::Range<usize>, Refusal> {
        if !self.in_place {
            return Err(Refusal::Full);
        }
        let a = self.admit(seg)?;
        let payload = a.payload.clone();
        self.accept(seg, a);
        Ok(payload)
    }

    /// Every check a segment must pass to be merged.
    fn admit(&self, seg: &[u8]) -> core::result::Result<Admitted, Refusal> {
        if self.closed {
            return Err(Refusal::Closed);
        }
        let p = parse_tcp(seg).map_err(|_| Refusal::NotTcp)?;
        if p.family != self.parts.family
            || p.ip_hl != self.parts.ip_hl
            || p.tcp_hl != self.parts.tcp_hl
        {
            return Err(Refusal::OtherFlow);
        }
        let ip_hl = p.ip_hl;
        let hdr_len = p.hdr_len();
        let (mine, theirs) = (&self.out[ip_hl..hdr_len], &seg[ip_hl..hdr_len]);
        // Ports, ACK number and options must match exactly.
        if !self.same_ip_header(seg)
            || mine[..4] != theirs[..4]
            || mine[8..12] != theirs[8..12]
            || mine[20..] != theirs[20..]
        {
            return Err(Refusal::OtherFlow);
        }
        let seq = u32::from_be_bytes([theirs[4], theirs[5], theirs[6], theirs[7]]);
        if seq != self.next_seq {
            return Err(Refusal::OutOfOrder);
        }
        let flags = theirs[13];
        if flags & !tcp::FLAG_PSH != mine[13] & !tcp::FLAG_PSH {
            return Err(Refusal::Flags);
        }
        let payload = p.total - hdr_len;
        if payload == 0 || payload > self.mss {
            return Err(Refusal::Size);
        }
        let new_len = self.len + payload;
        if new_len > super_packet_limit(p.family) || (!self.in_place && new_len > self.out.len()) {
            return Err(Refusal::Full);
        }
        if self.verify && !verify_tcp_checksum(seg, &p) {
            return Err(Refusal::BadChecksum);
        }
        Ok(Admitted {
            payload: hdr_len..p.total,
            seq,
            flags,
        })
    }

    /// Counts an admitted segment in: length, sequence, window, PSH.
    fn accept(&mut self, seg: &[u8], a: Admitted) {
        let ip_hl = self.parts.ip_hl;
        let payload = a.payload.len();
        self.len += payload;
        self.segments += 1;
        self.next_seq = a.seq.wrapping_add(payload as u32);
        // The newest window is the one that counts.
        self.out[ip_hl + 14..ip_hl + 16].copy_from_slice(&seg[ip_hl + 14..ip_hl + 16]);
        if a.flags & tcp::FLAG_PSH != 0 {
            self.out[ip_hl + 13] |= tcp::FLAG_PSH;
            self.closed = true;
        }
        if payload < self.mss {
            self.closed = true;
        }
    }

    /// Writes the final lengths and checksums and returns the result. A run
    /// built in place gets [`ChecksumFill::Partial`] whatever `fill` asks:
    /// its payloads are not here to be summed.
    pub fn finish(self, fill: ChecksumFill) -> Coalesced {
        let p = self.parts;
        let hdr_len = p.hdr_len();
        let here = if self.in_place { hdr_len } else { self.len };
        let pkt = &mut self.out[..here];
        set_ip_lengths(pkt, &p, self.len - hdr_len, None);
        let tcp_len = self.len - p.ip_hl;
        let t = &mut pkt[p.ip_hl..];
        t[16..18].fill(0);
        let mut c = pseudo(&p, tcp_len);
        let field = match fill {
            ChecksumFill::Full if !self.in_place => c.add(t).finish(),
            _ => c.fold(),
        };
        t[16..18].copy_from_slice(&field.to_be_bytes());
        Coalesced {
            len: self.len,
            segments: self.segments,
            mss: self.mss,
            family: p.family,
            transport: Transport::Tcp,
            csum_start: p.ip_hl,
            csum_offset: 16,
            header_len: hdr_len,
        }
    }
}

/// Takes an IP packet longer than `mtu` as a TCP super-packet of segments
/// that fit it: what the kernel's GRO made of a tunnel flow's segments
/// before weft read them. An underlay NIC with GRO
/// (the default) merges IP-in-IP TCP flows, and the raw socket then hands
/// over one packet of up to 64 KiB, its TCP checksum field holding the
/// pseudo-header sum GRO leaves there (GRO verified every segment's). A
/// packet whose field holds anything else was not merged (an outer
/// reassembly, say) and must carry a valid full checksum. Leaves the
/// pseudo-header sum in the field, for a NEEDS_CSUM write with the
/// returned description (segments of `mtu` minus the headers). The segment
/// size the merged segments had is not in the packet; `mtu` should be one
/// every destination can take, since a kernel forwarding the super-packet
/// checks its segments against the route's MTU.
pub fn merged_by_kernel(packet: &mut [u8], mtu: usize) -> core::result::Result<Coalesced, Refusal> {
    let p = parse_tcp(packet).map_err(|_| Refusal::NotTcp)?;
    let hdr_len = p.hdr_len();
    if p.total <= mtu || hdr_len >= mtu {
        return Err(Refusal::Size);
    }
    let partial = pseudo(&p, p.total - p.ip_hl).fold().to_be_bytes();
    let field = p.ip_hl + 16..p.ip_hl + 18;
    if packet[field.clone()] != partial {
        if !verify_tcp_checksum(packet, &p) {
            return Err(Refusal::BadChecksum);
        }
        packet[field].copy_from_slice(&partial);
    }
    let mss = mtu - hdr_len;
    Ok(Coalesced {
        len: p.total,
        segments: (p.total - hdr_len).div_ceil(mss),
        mss,
        family: p.family,
        transport: Transport::Tcp,
        csum_start: p.ip_hl,
        csum_offset: 16,
        header_len: hdr_len,
    })
}

/// Most datagrams one UDP super-packet carries (Linux's UDP GRO stops at
/// 64 as well).
pub const MAX_UDP_SEGMENTS: usize = 64;

/// Merges consecutive datagrams of one UDP flow into one super-packet for a
/// USO write (virtio `GSO_UDP_L4`), in place: only the headers are written
/// into `out`; each datagram's payload stays where it was received, for a
/// scatter-gather write. The kernel cuts the super-packet back into the same
/// datagrams at the receiving socket (or hands it whole to a socket with
/// `UDP_GRO`), as after its own UDP GRO forwarding.
///
/// Merges what Linux GRO would: same addresses, ports and IP header fields
/// but length, IPv4 id and checksum; payloads of the first datagram's size
/// but a shorter last one; at most [`MAX_UDP_SEGMENTS`] datagrams and
/// 64 KiB. Every datagram's checksum is verified before it is merged (the
/// super-packet's is recomputed, which would launder a corrupt one), so a
/// datagram without one (IPv4's zero) is not merged.
#[derive(Debug)]
pub struct UdpCoalescer<'a> {
    out: &'a mut [u8],
    parts: TcpParts,
    len: usize,
    size: usize,
    segments: usize,
    closed: bool,
}

/// The parts of `seg` if it is a UDP datagram the coalescer takes: well
/// formed (UDP length agrees with the IP length), not a fragment, with a
/// payload and a checksum.
fn parse_mergeable_udp(seg: &[u8]) -> core::result::Result<TcpParts, Refusal> {
    let p = parse_udp(seg).map_err(|_| Refusal::NotUdp)?;
    let u = &seg[p.ip_hl..p.total];
    if usize::from(u16::from_be_bytes([u[4], u[5]])) != u.len() || u[6..8] == [0, 0] {
        return Err(Refusal::NotUdp);
    }
    if u.len() == 8 {
        return Err(Refusal::Size);
    }
    Ok(p)
}

fn verify_udp_checksum(seg: &[u8], p: &TcpParts) -> bool {
    let mut c = pseudo_for(p, PROTO_UDP, p.total - p.ip_hl);
    c.add(&seg[p.ip_hl..p.total]);
    c.fold() == 0xffff
}

impl<'a> UdpCoalescer<'a> {
    /// Starts a super-packet with `first`: its headers are copied into `out`
    /// (which must hold them); returns where its payload lies in `first`.
    pub fn start_in_place(
        out: &'a mut [u8],
        first: &[u8],
    ) -> core::result::Result<(Self, core::ops::Range<usize>), Refusal> {
        let parts = parse_mergeable_udp(first)?;
        let hdr_len = parts.hdr_len();
        if out.len() < hdr_len {
            return Err(Refusal::Full);
        }
        if !verify_udp_checksum(first, &parts) {
            return Err(Refusal::BadChecksum);
        }
        out[..hdr_len].copy_from_slice(&first[..hdr_len]);
        let run = UdpCoalescer {
            out,
            parts,
            len: parts.total,
            size: parts.total - hdr_len,
            segments: 1,
            closed: false,
        };
        Ok((run, hdr_len..parts.total))
    }

    /// Datagrams merged so far.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Merges `seg` without copying its payload and returns where that
    /// payload lies in `seg`, or says why not (nothing changes then).
    pub fn push_in_place(
        &mut self,
        seg: &[u8],
    ) -> core::result::Result<core::ops::Range<usize>, Refusal> {
        if self.closed {
            return Err(Refusal::Closed);
        }
        let p = parse_mergeable_udp(seg)?;
        if p.family != self.parts.family || p.ip_hl != self.parts.ip_hl {
            return Err(Refusal::OtherFlow);
        }
        let hdr_len = p.hdr_len();
        // Ports must match; length and checksum are the datagram's own.
        if !same_ip_header(&self.parts, self.out, seg)
            || self.out[p.ip_hl..p.ip_hl + 4] != seg[p.ip_hl..p.ip_hl + 4]
        {
            return Err(Refusal::OtherFlow);
        }
        let payload = p.total - hdr_len;
        if payload > self.size {
            return Err(Refusal::Size);
        }
        if self.segments == MAX_UDP_SEGMENTS || self.len + payload > super_packet_limit(p.family) {
            return Err(Refusal::Full);
        }
        if !verify_udp_checksum(seg, &p) {
            return Err(Refusal::BadChecksum);
        }
        self.len += payload;
        self.segments += 1;
        self.closed = payload < self.size;
        Ok(hdr_len..p.total)
    }

    /// Writes the super-packet's lengths (IP, and UDP's: the whole payload,
    /// as Linux GRO leaves it) and the pseudo-header sum for NEEDS_CSUM
    /// ([`ChecksumFill::Partial`]), and returns the result.
    pub fn finish(self) -> Coalesced {
        let p = self.parts;
        let hdr_len = p.hdr_len();
        let hdr = &mut self.out[..hdr_len];
        set_ip_lengths(hdr, &p, self.len - hdr_len, None);
        let udp_len = self.len - p.ip_hl;
        let u = &mut hdr[p.ip_hl..];
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let sum = pseudo_for(&p, PROTO_UDP, udp_len).fold();
        u[6..8].copy_from_slice(&sum.to_be_bytes());
        Coalesced {
            len: self.len,
            segments: self.segments,
            mss: self.size,
            family: p.family,
            transport: Transport::Udp,
            csum_start: p.ip_hl,
            csum_offset: 6,
            header_len: hdr_len,
        }
    }
}

/// A super-packet being built in place, of either transport: what a receive
/// path that merges whatever arrives holds.
#[derive(Debug)]
pub enum InPlaceRun<'a> {
    /// TCP segments ([`TcpCoalescer::start_in_place`], checksums verified).
    Tcp(TcpCoalescer<'a>),
    /// UDP datagrams ([`UdpCoalescer`]).
    Udp(UdpCoalescer<'a>),
}

impl<'a> InPlaceRun<'a> {
    /// Starts a run with `first`, by its transport protocol: TCP always,
    /// UDP only with `udp` (a destination that takes USO super-packets).
    /// Returns where `first`'s payload lies in it.
    pub fn start(
        out: &'a mut [u8],
        first: &[u8],
        udp: bool,
    ) -> core::result::Result<(Self, core::ops::Range<usize>), Refusal> {
        let proto = match first.first().map(|b| b >> 4) {
            Some(4) => first.get(9),
            Some(6) => first.get(6),
            _ => None,
        };
        match proto {
            Some(&PROTO_UDP) if udp => {
                UdpCoalescer::start_in_place(out, first).map(|(r, p)| (InPlaceRun::Udp(r), p))
            }
            Some(&PROTO_UDP) => Err(Refusal::NotUdp),
            _ => {
                TcpCoalescer::start_in_place(out, first, true).map(|(r, p)| (InPlaceRun::Tcp(r), p))
            }
        }
    }

    /// Segments (datagrams) merged so far.
    pub fn segments(&self) -> usize {
        match self {
            InPlaceRun::Tcp(r) => r.segments(),
            InPlaceRun::Udp(r) => r.segments(),
        }
    }

    /// Merges `seg`; see [`TcpCoalescer::push_in_place`] and
    /// [`UdpCoalescer::push_in_place`].
    pub fn push(&mut self, seg: &[u8]) -> core::result::Result<core::ops::Range<usize>, Refusal> {
        match self {
            InPlaceRun::Tcp(r) => r.push_in_place(seg),
            InPlaceRun::Udp(r) => r.push_in_place(seg),
        }
    }

    /// Finishes the super-packet with a partial checksum (for NEEDS_CSUM).
    pub fn finish(self) -> Coalesced {
        match self {
            InPlaceRun::Tcp(r) => r.finish(ChecksumFill::Partial),
            InPlaceRun::Udp(r) => r.finish(),
        }
    }
}
