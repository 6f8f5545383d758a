//! Segments → super-packet for TCP: in-order segments of one flow merged
//! as Linux GRO would, and super-packets the underlay's GRO built.

use super::{left_partial, parse_tcp, pseudo, set_ip_lengths, FlowHeaders};
use super::{same_ip_header, super_packet_limit, ChecksumFill, Coalesced, Refusal, Transport};
use crate::ipv4::PROTO_TCP;
use crate::tcp::{self};

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
    parts: FlowHeaders,
    len: usize,
    mss: usize,
    next_seq: u32,
    segments: usize,
    closed: bool,
    verify: bool,
    in_place: bool,
}

/// The segment's checksum adds up, or was left for a NIC to finish (see
/// `left_partial`: the merged packet's checksum is recomputed either way).
fn verify_tcp_checksum(packet: &[u8], p: &FlowHeaders) -> bool {
    let mut c = pseudo(p, p.total - p.ip_hl);
    c.add(&packet[p.ip_hl..p.total]);
    c.fold() == 0xffff || left_partial(packet, p, PROTO_TCP, p.ip_hl + 16)
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
            || p.l4_hl != self.parts.l4_hl
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
