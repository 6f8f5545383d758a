//! Segments → super-packet for UDP: equal-sized datagrams of one flow
//! merged for a USO write.

use super::{left_partial, parse_udp, pseudo_for, set_ip_lengths, FlowHeaders};
use super::{same_ip_header, super_packet_limit, Coalesced, Refusal, Transport};
use crate::ipv4::PROTO_UDP;

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
/// super-packet's is recomputed, which would launder a corrupt one) unless
/// the caller says a checksum over the same bytes was verified already; a
/// datagram without one (IPv4's zero) is never merged.
#[derive(Debug)]
pub struct UdpCoalescer<'a> {
    out: &'a mut [u8],
    parts: FlowHeaders,
    len: usize,
    size: usize,
    segments: usize,
    closed: bool,
    verify: bool,
}

/// The parts of `seg` if it is a UDP datagram the coalescer takes: well
/// formed (UDP length agrees with the IP length), not a fragment, with a
/// payload and a checksum.
fn parse_mergeable_udp(seg: &[u8]) -> core::result::Result<FlowHeaders, Refusal> {
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

/// The datagram's checksum adds up, or was left for a NIC to finish (see
/// `left_partial`).
fn verify_udp_checksum(seg: &[u8], p: &FlowHeaders) -> bool {
    let mut c = pseudo_for(p, PROTO_UDP, p.total - p.ip_hl);
    c.add(&seg[p.ip_hl..p.total]);
    c.fold() == 0xffff || left_partial(seg, p, PROTO_UDP, p.ip_hl + 6)
}

impl<'a> UdpCoalescer<'a> {
    /// Starts a super-packet with `first`: its headers are copied into `out`
    /// (which must hold them); returns where its payload lies in `first`.
    /// With `verify`, every datagram's checksum is checked before it is
    /// merged; without, only where a checksum over the same bytes was
    /// verified already (the outer UDP checksum of a tunnel).
    pub fn start_in_place(
        out: &'a mut [u8],
        first: &[u8],
        verify: bool,
    ) -> core::result::Result<(Self, core::ops::Range<usize>), Refusal> {
        let parts = parse_mergeable_udp(first)?;
        let hdr_len = parts.hdr_len();
        if out.len() < hdr_len {
            return Err(Refusal::Full);
        }
        if verify && !verify_udp_checksum(first, &parts) {
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
            verify,
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
        if self.verify && !verify_udp_checksum(seg, &p) {
            return Err(Refusal::BadChecksum);
        }
        self.len += payload;
        self.segments += 1;
        self.closed = payload < self.size;
        Ok(hdr_len..p.total)
    }

    /// Writes the super-packet's lengths (IP, and UDP's: the whole payload,
    /// as Linux GRO leaves it) and the pseudo-header sum for NEEDS_CSUM
    /// ([`ChecksumFill::Partial`](super::ChecksumFill::Partial)), and returns the result.
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
