//! Pods → underlay: a pod's packet (or super-packet) is checked,
//! segmented if it is a super-packet, given its next hop
//! ([`super::next_hop`]) and encapsulated: VXLAN datagrams go out with UDP
//! GSO (single packets gathered into [`super::pending`] until the end of
//! the turn), IP-in-IP packets through raw sockets, in batches.
//!
//! The walk: `send_from_pod` → `forward` (one packet) | `forward_super`
//! (TCP super-packet over VXLAN, payload not copied) |
//! `forward_ipip_segments` (segments over IP-in-IP) | `forward_udp_super`
//! (UDP super-packet, cut into datagrams).

use super::counters::DropReason;
use super::next_hop::next_hop;
use super::sys::{raw_batch, udp_gso};
use super::{
    pending, Settings, UnderlayIo, Worker, EMIT_HEADROOM, HEADER_SLOT, HEADROOM, MAX_PACKET,
};
use encap::ip::IpHeader;
use encap::segment::{split_tcp, split_tcp_headers, Layout};
use encap::virtio::{self, GsoType, VirtioNetHdr};
use encap::vxlan::VxlanEncap;
use encap::{Family, IpPacket, MacAddr};
use fdb::Reader;
use std::io::IoSlice;
use std::net::SocketAddr;

/// A VXLAN datagram [`encap_vxlan`] built in place: where it starts in
/// the buffer (it ends where the inner packet ended), where it goes, its
/// outer TOS and the inner flow's hash (which picks its source port,
/// [`super::source_ports::SourcePorts::for_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Offset of the VXLAN header.
    pub at: usize,
    /// The peer's underlay address and VXLAN port.
    pub to: SocketAddr,
    /// Outer TOS / traffic class (RFC 6040: the inner ECN field copied).
    pub tos: u8,
    /// The inner flow's hash ([`encap::flow::flow_hash`]).
    pub flow: u32,
}

/// Pod → wire over VXLAN for the one packet at `buf[range]`, with no I/O:
/// the packet checked, its next hop looked up ([`next_hop`]) and the
/// VXLAN and inner Ethernet headers written into the headroom in front of
/// it. What weftd does for every packet it does not send as part of a
/// super-packet, and what the pipeline bench measures.
pub fn encap_vxlan(
    settings: &Settings,
    snap: &fdb::Snapshot,
    buf: &mut [u8],
    range: std::ops::Range<usize>,
) -> Result<Datagram, DropReason> {
    let ip = IpPacket::new_checked(&buf[range.clone()]).map_err(|_| DropReason::BadInner)?;
    let tos = encap::ecn::encap_tos(ip.tos());
    let flow = encap::flow::flow_hash(&buf[range.clone()]);
    let (record, underlay) = next_hop(snap, ip.dst(), settings.tunnels).peer()?;
    let at = vxlan_encapsulator(settings, record)
        .encap_payload(buf, range)
        .map_err(|_| DropReason::BadInner)?;
    Ok(Datagram {
        at,
        to: SocketAddr::new(underlay, settings.port),
        tos,
        flow,
    })
}

/// The VXLAN encapsulator towards the node of `record`.
fn vxlan_encapsulator(settings: &Settings, record: &fdb::NodeRecord) -> VxlanEncap {
    VxlanEncap {
        dst_port: settings.port,
        ..VxlanEncap::new(settings.vni, settings.local_mac, MacAddr(record.vtep_mac.0))
    }
}

impl Worker {
    /// Sends the pod packet at `buf[HEADROOM..end]`, as its virtio-net
    /// header `hdr` describes it (checksum offsets from the IP header):
    /// checksum completed, super-packets segmented, to the owner of its
    /// destination.
    pub(super) fn send_from_pod(
        &self,
        reader: &mut Reader,
        hdr: VirtioNetHdr,
        buf: &mut [u8],
        end: usize,
        scratch: &mut TxScratch,
    ) {
        match hdr.gso_type {
            GsoType::None => {
                if hdr.flags & virtio::FLAG_NEEDS_CSUM != 0
                    && virtio::complete_checksum(
                        &mut buf[HEADROOM..end],
                        hdr.csum_start.into(),
                        hdr.csum_offset.into(),
                    )
                    .is_err()
                {
                    self.counters.dropped(DropReason::BadOffload);
                    return;
                }
                self.forward(reader, buf, HEADROOM, end, &mut scratch.pending);
            }
            GsoType::TcpV4 | GsoType::TcpV6
                if matches!(self.underlay, UnderlayIo::Vxlan { .. }) =>
            {
                self.flush_pending(scratch);
                self.forward_super(
                    reader,
                    &buf[HEADROOM..end],
                    hdr.gso_size.into(),
                    &mut scratch.segs,
                    &mut scratch.lens,
                );
            }
            GsoType::TcpV4 | GsoType::TcpV6 => {
                let layout = copy_layout(hdr.gso_size.into());
                match split_tcp(
                    &buf[HEADROOM..end],
                    hdr.gso_size.into(),
                    &mut scratch.segs,
                    layout,
                    &mut scratch.lens,
                ) {
                    Ok(count) => self.forward_ipip_segments(
                        reader,
                        &scratch.segs,
                        layout,
                        &scratch.lens[..count],
                        &mut scratch.batch,
                    ),
                    Err(_) => self.counters.dropped(DropReason::BadOffload),
                }
            }
            GsoType::UdpL4 => self.forward_udp_super(reader, hdr, &buf[HEADROOM..end], scratch),
        }
    }

    /// A UDP super-packet (an application sending with `UDP_SEGMENT`, as
    /// QUIC stacks do): cut into datagrams of the size it asked for, each
    /// sent like any single packet (over VXLAN they leave together, in one
    /// GSO send, at the end of the turn).
    fn forward_udp_super(
        &self,
        reader: &mut Reader,
        hdr: VirtioNetHdr,
        pkt: &[u8],
        scratch: &mut TxScratch,
    ) {
        let TxScratch {
            segs,
            lens,
            batch,
            pending,
        } = scratch;
        let layout = copy_layout(hdr.gso_size.into());
        let Ok(count) = encap::segment::split_udp(pkt, hdr.gso_size.into(), segs, layout, lens)
        else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        if matches!(self.underlay, UnderlayIo::IpIp { .. }) {
            return self.forward_ipip_segments(reader, segs, layout, &lens[..count], batch);
        }
        for (i, len) in lens.iter().enumerate().take(count) {
            let at = i * layout.stride + layout.headroom;
            self.forward(reader, segs, at, at + len, pending);
        }
    }

    /// Sends what waits in `scratch.pending` (VXLAN single datagrams).
    pub(super) fn flush_pending(&self, scratch: &mut TxScratch) {
        if let (UnderlayIo::Vxlan { sources, .. }, false) =
            (&self.underlay, scratch.pending.is_empty())
        {
            scratch.pending.flush(sources, &self.counters);
        }
    }

    /// Sends the inner packet at `buf[start..end]` (with HEADROOM free in
    /// front of it) to the node that owns its destination: over IP-in-IP at
    /// once, over VXLAN into `pending` (sent at the end of the turn).
    pub(super) fn forward(
        &self,
        reader: &mut Reader,
        buf: &mut [u8],
        start: usize,
        end: usize,
        pending: &mut pending::PendingSends,
    ) {
        let Ok(ip) = IpPacket::new_checked(&buf[start..end]) else {
            self.counters.dropped(DropReason::BadInner);
            return;
        };
        let dst = ip.dst();
        let tos = encap::ecn::encap_tos(ip.tos());
        let len = end - start;
        let snap = reader.load();
        if len > self.settings.overlay_mtu {
            if let encap::mtu::MtuVerdict::TooBig { mtu } =
                encap::mtu::check(&ip, self.settings.overlay_mtu)
            {
                self.counters.dropped(DropReason::TooBig);
                self.answer_too_big(snap, &buf[start..end], mtu);
                return;
            }
        }
        let sent = match &self.underlay {
            UnderlayIo::Vxlan { sources, .. } => {
                return match encap_vxlan(&self.settings, snap, buf, start..end) {
                    Ok(d) => {
                        let outer = pending::Outer {
                            to: d.to,
                            via: sources.for_hash(d.flow),
                            tos: d.tos,
                        };
                        pending.push(sources, &self.counters, &buf[d.at..end], len, outer)
                    }
                    Err(why) => self.counters.dropped(why),
                };
            }
            UnderlayIo::IpIp { over, .. } => {
                let underlay = match next_hop(snap, dst, self.settings.tunnels).peer() {
                    Ok((_, underlay)) => underlay,
                    Err(why) => return self.counters.dropped(why),
                };
                let Some(pair) = super::raw_pair_to(over, underlay) else {
                    return self.counters.dropped(DropReason::NoUnderlay);
                };
                raw_batch::send_one(
                    pair.for_inner(ip.family()),
                    &buf[start..end],
                    SocketAddr::new(underlay, 0),
                    tos,
                )
            }
        };
        match sent {
            Ok(_) => {
                self.counters.sent(1, len as u64);
            }
            Err(_) => self.counters.dropped(DropReason::IoError),
        }
    }

    /// The segments of one TCP super-packet over IP-in-IP: one route lookup
    /// (they share a destination), one `sendmmsg` for all of them.
    fn forward_ipip_segments(
        &self,
        reader: &mut Reader,
        segs: &[u8],
        layout: Layout,
        lens: &[usize],
        batch: &mut raw_batch::Batch,
    ) {
        let UnderlayIo::IpIp { over, .. } = &self.underlay else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        let Some(&first_len) = lens.first() else {
            return;
        };
        let first = &segs[layout.headroom..layout.headroom + first_len];
        let Ok(ip) = IpPacket::new_checked(first) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let snap = reader.load();
        let underlay = match next_hop(snap, ip.dst(), self.settings.tunnels).peer() {
            Ok((_, underlay)) => underlay,
            Err(why) => return self.counters.dropped(why),
        };
        let Some(pair) = super::raw_pair_to(over, underlay) else {
            return self.counters.dropped(DropReason::NoUnderlay);
        };
        let sock = pair.for_inner(ip.family());
        let tos = encap::ecn::encap_tos(ip.tos());
        let mut packets: [&[u8]; raw_batch::MAX_BATCH] = [&[]; raw_batch::MAX_BATCH];
        for (c, group) in lens.chunks(raw_batch::MAX_BATCH).enumerate() {
            for (k, len) in group.iter().enumerate() {
                let at = (c * raw_batch::MAX_BATCH + k) * layout.stride + layout.headroom;
                packets[k] = &segs[at..at + len];
            }
            let n = group.len();
            let sent = batch.send(sock, &packets[..n], SocketAddr::new(underlay, 0), tos);
            self.counters
                .sent(sent as u64, group[..sent].iter().sum::<usize>() as u64);
            for _ in sent..n {
                self.counters.dropped(DropReason::IoError);
            }
        }
    }

    /// A TCP super-packet over VXLAN, without copying its payload: one
    /// route lookup; each segment's headers (VXLAN, Ethernet, IP, TCP with
    /// its own checksum) are written into a slot of `hdrs`, and the
    /// datagrams are gathered from those slots and the payload where it lies
    /// in `pkt` by UDP GSO sends (at most 64 datagrams / 65,507 bytes each).
    fn forward_super(
        &self,
        reader: &mut Reader,
        pkt: &[u8],
        mss: usize,
        hdrs: &mut [u8],
        lens: &mut [usize],
    ) {
        let UnderlayIo::Vxlan { sources, .. } = &self.underlay else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        let Ok(ip) = IpPacket::new_checked(pkt) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let snap = reader.load();
        let (record, underlay) = match next_hop(snap, ip.dst(), self.settings.tunnels).peer() {
            Ok(hop) => hop,
            Err(why) => return self.counters.dropped(why),
        };
        // Every segment of a super-packet is of one flow: one source port.
        let sock = sources.socket(sources.for_packet(pkt), underlay);
        let layout = Layout {
            headroom: encap::vxlan::PAYLOAD_OVERHEAD,
            stride: HEADER_SLOT,
        };
        let Ok(split) = split_tcp_headers(pkt, mss, hdrs, layout, lens) else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        let enc = vxlan_encapsulator(&self.settings, record);
        let head = encap::vxlan::PAYLOAD_OVERHEAD + split.header_len;
        for i in 0..split.segments {
            let at = i * HEADER_SLOT + layout.headroom;
            if enc.encap_payload(hdrs, at..at + split.header_len).is_err() {
                return self.counters.dropped(DropReason::BadInner);
            }
        }
        let datagram = head + split.mss;
        let to = SocketAddr::new(underlay, self.settings.port);
        let tos = encap::ecn::encap_tos(ip.tos());
        let per_send = encap::vxlan::gso_max_segments(split.header_len + split.mss);
        let mut pieces = [IoSlice::new(&[]); 2 * encap::vxlan::GSO_MAX_DATAGRAMS];
        let mut i = 0;
        while i < split.segments {
            let j = (i + per_send).min(split.segments);
            let mut bytes = 0;
            for (k, seg) in (i..j).enumerate() {
                let payload = split.payload(pkt, seg);
                pieces[2 * k] = IoSlice::new(&hdrs[seg * HEADER_SLOT..seg * HEADER_SLOT + head]);
                pieces[2 * k + 1] = IoSlice::new(payload);
                bytes += split.header_len + payload.len();
            }
            match udp_gso::send_vectored(sock, &pieces[..2 * (j - i)], 2, datagram, to, tos) {
                Ok(()) => {
                    self.counters.sent((j - i) as u64, bytes as u64);
                }
                Err(_) => self.counters.dropped(DropReason::IoError),
            }
            i = j;
        }
    }

    pub(super) fn answer_too_big(&self, snap: &fdb::Snapshot, offending: &[u8], mtu: usize) {
        let mut out = [0u8; EMIT_HEADROOM + 1280];
        let body = &mut out[EMIT_HEADROOM..];
        let family = IpHeader::new_checked(offending).map(|h| h.family());
        let n = match family {
            Ok(Family::V4) => encap::icmp::frag_needed_v4(
                offending,
                self.settings.icmp_source_v4,
                mtu.min(65535) as u16,
                body,
            ),
            _ => encap::icmp::packet_too_big_v6(
                offending,
                self.settings.icmp_source_v6,
                mtu as u32,
                body,
            ),
        };
        if let Ok(n) = n {
            let _ = self.attach.emit(
                snap,
                &mut out,
                EMIT_HEADROOM,
                EMIT_HEADROOM + n,
                VirtioNetHdr::NONE,
            );
        }
    }
}

/// Per-thread buffers for sending pods' packets: segments of a split
/// super-packet and a raw-socket batch.
pub(super) struct TxScratch {
    segs: Vec<u8>,
    lens: Vec<usize>,
    batch: raw_batch::Batch,
    pending: pending::PendingSends,
}

/// The most segments a super-packet can hold: 64 KiB at TCP's smallest MSS
/// (48 bytes; a peer may advertise that little), rounded up.
const MAX_SEGMENTS: usize = 1408;
/// Room allowed for a segment's IP and TCP/UDP headers when segments are
/// copied into slots.
pub(super) const MAX_HEADERS: usize = 256;

/// Where [`split_tcp`] / `split_udp` copy the segments of a super-packet
/// cut at `gso_size`: slots just big enough, so the worst case (the most
/// segments) still fits in [`TxScratch::segs`].
fn copy_layout(gso_size: usize) -> Layout {
    Layout {
        headroom: HEADROOM,
        stride: (HEADROOM + MAX_HEADERS + gso_size).next_multiple_of(64),
    }
}

impl TxScratch {
    pub(super) fn new(overlay_mtu: usize) -> TxScratch {
        // Slots of copy_layout: n * stride <= 64 KiB of payload + n * the
        // slot overhead, rounded, for n <= MAX_SEGMENTS.
        let copy = 2 * MAX_PACKET + MAX_SEGMENTS * (HEADROOM + MAX_HEADERS + 64);
        TxScratch {
            segs: vec![0u8; copy.max(MAX_SEGMENTS * HEADER_SLOT)],
            lens: vec![0; MAX_SEGMENTS],
            batch: raw_batch::Batch::default(),
            pending: pending::PendingSends::new(
                overlay_mtu.max(1280) + encap::vxlan::PAYLOAD_OVERHEAD,
            ),
        }
    }
}
