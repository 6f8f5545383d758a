//! weftd's data plane: pods' packets (from a TUN queue with offloads, or
//! from their veths) ↔ VXLAN over UDP sockets or IP-in-IP over raw sockets.
//!
//! One worker per TUN queue, each with its own underlay sockets (for VXLAN
//! a UDP socket with SO_REUSEPORT on the VXLAN port) and one thread for
//! both directions (`event_loop`). Pods → underlay: TCP super-packets are
//! segmented straight into back-to-back datagrams and sent with UDP GSO
//! (or `sendmmsg` on raw sockets), after an fdb lookup. Underlay → pods:
//! UDP GRO receive; the sender must be a known peer, the VNI right and the
//! inner source in that peer's blocks; in-order TCP segments are coalesced
//! into one super-packet per write. See docs/ARCHITECTURE.md.

pub mod counters;
mod event_loop;
pub mod next_hop;
pub mod pending;
pub mod ports;
pub mod sys;
use sys::{raw_batch, udp_gso};
mod veth;

use counters::{DropReason, WorkerCounters};
use encap::ecn::Ecn;
use encap::ip::IpHeader;
use encap::segment::{split_tcp, split_tcp_headers, InPlaceRun, Layout};
use encap::virtio::{self, GsoType, VirtioNetHdr};
use encap::vxlan::{Vni, VxlanDecap, VxlanEncap};
use encap::{Family, IpPacket, MacAddr};
use fdb::{Fdb, NodeId, Reader, Route};
use next_hop::NextHop;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

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

/// What delivering to pods keeps from one batch to the next.
pub(crate) struct Delivery {
    /// Headers of coalesced super-packets are built here (their payloads
    /// stay where they were received).
    pub merged: Vec<u8>,
    /// Whether datagrams of a UDP flow are merged into USO super-packets
    /// (off when the attachment cannot take them).
    pub udp_runs: bool,
}

/// The sockets a worker sends and receives encapsulated packets on.
pub enum UnderlayIo {
    /// VXLAN: a UDP socket on the VXLAN port (SO_REUSEPORT, one per worker).
    Vxlan(Arc<UdpSocket>),
    /// IP-in-IP over IPv4: raw sockets for protocol 4 (inner IPv4) and 41
    /// (inner IPv6); the kernel writes the outer header on send and hands the
    /// whole packet over on receive. No ipip kernel module is involved.
    /// One pair serves all workers: the kernel gives every raw socket of a
    /// protocol its own copy of every packet, so a pair per worker would
    /// only multiply that work.
    IpIp {
        /// Protocol 4.
        v4: Arc<socket2::Socket>,
        /// Protocol 41.
        v6: Arc<socket2::Socket>,
        /// Whether this worker receives: every raw socket sees every packet,
        /// so exactly one worker reads them.
        receive: bool,
    },
}

/// Where pods' packets come from and decapsulated ones go.
pub enum Attachment {
    /// A TUN queue (with virtio-net headers); the kernel routes to it.
    Tun(Arc<tun_rs::SyncDevice>),
    /// The pods' veths (veth attachment): weftd reads and writes their
    /// frames itself.
    Veth {
        /// The pod ports.
        ports: Arc<ports::Ports>,
        /// The host port: a TUN queue the kernel routes pod blocks to (the
        /// host's traffic to pods arrives there) and where what is for the
        /// host and beyond goes, from pods and from the underlay. None
        /// (`dataplane.veth_host_paths = false`): pods reach only pods.
        host: Option<Arc<tun_rs::SyncDevice>>,
    },
}

impl Attachment {
    /// Whether UDP super-packets (virtio `GSO_UDP_L4`) may be written: the
    /// TUN says whether the kernel took its USO offload; a packet socket
    /// takes them from the same kernel version on, and a refusal turns
    /// them off (see `Worker::deliver_batch`).
    fn takes_udp_super_packets(&self) -> bool {
        match self {
            Attachment::Tun(tun) => tun.udp_gso(),
            Attachment::Veth { .. } => true,
        }
    }

    /// Writes the IP packet at `buf[start..end]` towards its destination
    /// pod with virtio-net header `hdr` (whose checksum offsets count from
    /// the IP header). `buf` has [`EMIT_HEADROOM`] bytes free before
    /// `start`. With the TUN the kernel routes it; with veths it goes, in
    /// an Ethernet frame, to the port fdb names for the destination.
    fn emit(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        start: usize,
        end: usize,
        hdr: VirtioNetHdr,
    ) -> Result<(), DropReason> {
        let (at, to) = self.frame(snap, buf, start, hdr)?;
        let sent = match to {
            Target::Tun(tun) => tun.send(&buf[at..end]),
            Target::Port(port) => port.socket.send(&buf[at..end]),
        };
        sent.map(|_| ()).map_err(|_| DropReason::IoError)
    }

    /// As [`emit`](Self::emit), for a packet whose IP and TCP headers are
    /// at `head[start..head_end]` and whose payload follows in
    /// `pieces[1..]`, left where it was received: one vectored write, no
    /// copy. `pieces[0]` is set here (to the headers).
    fn emit_gathered<'a>(
        &self,
        snap: &fdb::Snapshot,
        head: &'a mut [u8],
        (start, head_end): (usize, usize),
        pieces: &mut [IoSlice<'a>],
        hdr: VirtioNetHdr,
    ) -> Result<(), DropReason> {
        let (at, to) = self.frame(snap, head, start, hdr)?;
        let head: &'a [u8] = head;
        pieces[0] = IoSlice::new(&head[at..head_end]);
        let sent = match to {
            Target::Tun(tun) => tun.send_vectored(pieces),
            Target::Port(port) => port.socket.send_vectored(pieces),
        };
        sent.map(|_| ()).map_err(|_| DropReason::IoError)
    }

    /// Writes the link-level headers in front of the IP packet starting at
    /// `buf[start]` (a virtio-net header for the TUN; Ethernet + virtio-net
    /// for a pod's veth) and returns where the frame starts and where it
    /// goes.
    fn frame(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        start: usize,
        mut hdr: VirtioNetHdr,
    ) -> Result<(usize, Target<'_>), DropReason> {
        match self {
            Attachment::Tun(tun) => {
                let at = start - virtio::HEADER_LEN;
                let _ = hdr.write(&mut buf[at..start]);
                Ok((at, Target::Tun(tun)))
            }
            Attachment::Veth { ports, host } => {
                let dst = IpHeader::new_checked(&buf[start..])
                    .map_err(|_| DropReason::BadInner)?
                    .dst();
                let port = snap
                    .endpoint(dst)
                    .and_then(|e| e.value.local_port)
                    .and_then(|i| ports.get(i));
                let port = match (port, host) {
                    (Some(port), _) => port,
                    // Not a pod of this node: the host (or beyond).
                    (None, Some(host)) if !matches!(snap.route(dst), Route::Local { .. }) => {
                        let at = start - virtio::HEADER_LEN;
                        let _ = hdr.write(&mut buf[at..start]);
                        return Ok((at, Target::Tun(host)));
                    }
                    (None, _) => return Err(DropReason::NoEndpoint),
                };
                let ethertype = if dst.is_ipv4() { 0x0800 } else { 0x86dd };
                let eth = start - 14;
                let _ = encap::ethernet::write_header(
                    &mut buf[eth..start],
                    port.spec.mac,
                    ports::GATEWAY_MAC,
                    ethertype,
                );
                if hdr.flags & virtio::FLAG_NEEDS_CSUM != 0 {
                    hdr.csum_start += 14;
                }
                if hdr.hdr_len != 0 {
                    hdr.hdr_len += 14;
                }
                let at = eth - virtio::HEADER_LEN;
                let _ = hdr.write(&mut buf[at..eth]);
                Ok((at, Target::Port(port)))
            }
        }
    }
}

/// Where [`Attachment::frame`] sends a frame.
enum Target<'a> {
    /// The TUN queue.
    Tun(&'a tun_rs::SyncDevice),
    /// The destination pod's veth port.
    Port(Arc<ports::Port>),
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
}

impl Worker {
    /// Starts the worker's thread (both directions; see `event_loop`).
    pub fn spawn(self, index: usize) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(format!("weft-w{index}"))
            .spawn(move || self.run(index))
            .map(|_| ())
    }

    /// Sends the pod packet at `buf[HEADROOM..end]`, as its virtio-net
    /// header `hdr` describes it (checksum offsets from the IP header):
    /// checksum completed, super-packets segmented, to the owner of its
    /// destination.
    fn send_from_pod(
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
            GsoType::TcpV4 | GsoType::TcpV6 if matches!(self.underlay, UnderlayIo::Vxlan(_)) => {
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
    fn flush_pending(&self, scratch: &mut TxScratch) {
        if let (UnderlayIo::Vxlan(sock), false) = (&self.underlay, scratch.pending.is_empty()) {
            scratch.pending.flush(sock, &self.counters);
        }
    }

    /// Sends the inner packet at `buf[start..end]` (with HEADROOM free in
    /// front of it) to the node that owns its destination: over IP-in-IP at
    /// once, over VXLAN into `pending` (sent at the end of the turn).
    fn forward(
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
        let Some((record, underlay)) = self.next_hop(snap, dst) else {
            return;
        };
        let sent = match &self.underlay {
            UnderlayIo::Vxlan(sock) => {
                let enc = self.encapsulator(record);
                let Ok(at) = enc.encap_payload(buf, start..end) else {
                    return self.counters.dropped(DropReason::BadInner);
                };
                let to = SocketAddr::new(underlay, self.settings.port);
                return pending.push(sock, &self.counters, &buf[at..end], len, to, tos);
            }
            UnderlayIo::IpIp { v4, v6, .. } => {
                let sock = if ip.family() == Family::V4 { v4 } else { v6 };
                raw_batch::send_one(
                    sock.as_ref(),
                    &buf[start..end],
                    SocketAddr::new(underlay, 0),
                    tos,
                )
            }
        };
        match sent {
            Ok(_) => {
                WorkerCounters::add(&self.counters.tx_packets, 1);
                WorkerCounters::add(&self.counters.tx_bytes, len as u64);
            }
            Err(_) => self.counters.dropped(DropReason::IoError),
        }
    }

    /// The VXLAN encapsulator towards the node of `record`.
    fn encapsulator(&self, record: &fdb::NodeRecord) -> VxlanEncap {
        VxlanEncap {
            dst_port: self.settings.port,
            ..VxlanEncap::new(
                self.settings.vni,
                self.settings.local_mac,
                MacAddr(record.vtep_mac.0),
            )
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
        let UnderlayIo::IpIp { v4, v6, .. } = &self.underlay else {
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
        let Some((_, underlay)) = self.next_hop(snap, ip.dst()) else {
            return;
        };
        let sock = if ip.family() == Family::V4 { v4 } else { v6 };
        let tos = encap::ecn::encap_tos(ip.tos());
        let mut packets: [&[u8]; raw_batch::MAX_BATCH] = [&[]; raw_batch::MAX_BATCH];
        for (c, group) in lens.chunks(raw_batch::MAX_BATCH).enumerate() {
            for (k, len) in group.iter().enumerate() {
                let at = (c * raw_batch::MAX_BATCH + k) * layout.stride + layout.headroom;
                packets[k] = &segs[at..at + len];
            }
            let n = group.len();
            let sent = batch.send(
                sock.as_ref(),
                &packets[..n],
                SocketAddr::new(underlay, 0),
                tos,
            );
            WorkerCounters::add(&self.counters.tx_packets, sent as u64);
            WorkerCounters::add(
                &self.counters.tx_bytes,
                group[..sent].iter().sum::<usize>() as u64,
            );
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
        let UnderlayIo::Vxlan(sock) = &self.underlay else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        let Ok(ip) = IpPacket::new_checked(pkt) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let snap = reader.load();
        let Some((record, underlay)) = self.next_hop(snap, ip.dst()) else {
            return;
        };
        let layout = Layout {
            headroom: encap::vxlan::PAYLOAD_OVERHEAD,
            stride: HEADER_SLOT,
        };
        let Ok(split) = split_tcp_headers(pkt, mss, hdrs, layout, lens) else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        let enc = self.encapsulator(record);
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
                    WorkerCounters::add(&self.counters.tx_packets, (j - i) as u64);
                    WorkerCounters::add(&self.counters.tx_bytes, bytes as u64);
                }
                Err(_) => self.counters.dropped(DropReason::IoError),
            }
            i = j;
        }
    }

    /// The node that owns `dst` and its underlay address ([`next_hop`]),
    /// or None with the drop counted (local block, no route, peer without
    /// an address).
    fn next_hop<'s>(
        &self,
        snap: &'s fdb::Snapshot,
        dst: IpAddr,
    ) -> Option<(&'s fdb::NodeRecord, IpAddr)> {
        match next_hop::next_hop(snap, dst) {
            NextHop::Peer {
                record, underlay, ..
            } => Some((record, underlay)),
            NextHop::Local { .. } => {
                self.counters.dropped(DropReason::LocalBlock);
                None
            }
            NextHop::NoRoute => {
                self.counters.dropped(DropReason::NoRoute);
                None
            }
            NextHop::NoUnderlay { .. } => {
                self.counters.dropped(DropReason::NoUnderlay);
                None
            }
        }
    }

    fn answer_too_big(&self, snap: &fdb::Snapshot, offending: &[u8], mtu: usize) {
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

    /// Delivers an accepted inner packet at `buf[start..end]` (with
    /// [`EMIT_HEADROOM`] free in front of it) to its pod.
    fn deliver_checked(&self, snap: &fdb::Snapshot, buf: &mut [u8], start: usize, end: usize) {
        match self.attach.emit(snap, buf, start, end, VirtioNetHdr::NONE) {
            Ok(()) => {
                WorkerCounters::add(&self.counters.rx_packets, 1);
                WorkerCounters::add(&self.counters.rx_bytes, (end - start) as u64);
            }
            Err(why) => self.counters.dropped(why),
        }
    }

    /// Checks one IP-in-IP packet at `buf[at..at + n]` (outer header
    /// included) and records its inner packet's range if it is acceptable.
    fn accept_ipip(
        &self,
        buf: &mut [u8],
        at: usize,
        n: usize,
        reader: &mut Reader,
        accepted: &mut Vec<std::ops::Range<usize>>,
    ) {
        let packet = &mut buf[at..at + n];
        let d = match encap::ipip::decap(packet) {
            Ok(d) => d,
            Err(encap::Error::EcnCeOverNotEct) => {
                return self.counters.dropped(DropReason::EcnDrop)
            }
            Err(_) => return self.counters.dropped(DropReason::BadIpip),
        };
        let (from, _) = d.outer_addrs(packet);
        let snap = reader.load();
        let Some(peer) = snap.node_at(from) else {
            return self.counters.dropped(DropReason::UnknownSource);
        };
        let range = at + d.inner.start..at + d.inner.end;
        let Ok(src) = IpPacket::new_checked(&buf[range.clone()]).map(|p| p.src()) else {
            return self.counters.dropped(DropReason::BadIpip);
        };
        if !snap.may_send_from(peer, src) {
            return self.counters.dropped(DropReason::SpoofedInner);
        }
        accepted.push(range);
    }

    /// Writes accepted inner packets to the TUN (or pods' veths): in-order
    /// TCP segments of one flow, and equal-sized datagrams of one UDP flow
    /// (when `udp_runs` is on), become one super-packet and one write (GRO)
    /// — its headers built in `merged`, its payloads gathered from where
    /// they were received, with no copy; anything else goes alone. A UDP
    /// super-packet the attachment refuses (a kernel without USO there)
    /// turns `udp_runs` off for good and its datagrams go alone.
    fn deliver_batch(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        inners: &[std::ops::Range<usize>],
        delivery: &mut Delivery,
    ) {
        let Delivery { merged, udp_runs } = delivery;
        let mut k = 0;
        while k < inners.len() {
            if inners[k].len() > self.settings.overlay_mtu {
                self.deliver_oversized(snap, buf, inners[k].clone());
                k += 1;
                continue;
            }
            let first_at = k;
            // A lone datagram (the last of the batch) has nothing to merge
            // with: it goes as it came, its checksum left to the pod.
            let merge_udp = *udp_runs && k + 1 < inners.len();
            let Ok((mut run, first)) = InPlaceRun::start(
                &mut merged[EMIT_HEADROOM..],
                &buf[inners[k].clone()],
                merge_udp,
            ) else {
                self.deliver_checked(snap, buf, inners[k].start, inners[k].end);
                k += 1;
                continue;
            };
            let udp = matches!(run, InPlaceRun::Udp(_));
            let buf_ro: &[u8] = buf;
            let mut pieces = [IoSlice::new(&[]); 1 + MAX_RUN];
            let base = inners[k].start;
            pieces[1] = IoSlice::new(&buf_ro[base + first.start..base + first.end]);
            let mut n = 2;
            k += 1;
            while k < inners.len() && n < pieces.len() {
                let base = inners[k].start;
                match run.push(&buf_ro[inners[k].clone()]) {
                    Ok(r) => {
                        pieces[n] = IoSlice::new(&buf_ro[base + r.start..base + r.end]);
                        n += 1;
                        k += 1;
                    }
                    Err(encap::segment::Refusal::BadChecksum) => {
                        self.counters.dropped(DropReason::BadInnerChecksum);
                        k += 1;
                    }
                    Err(_) => break,
                }
            }
            let done = run.finish();
            let hdr = VirtioNetHdr::for_coalesced(&done);
            let span = (EMIT_HEADROOM, EMIT_HEADROOM + done.header_len);
            match self
                .attach
                .emit_gathered(snap, merged, span, &mut pieces[..n], hdr)
            {
                Ok(()) => self.count_delivered(&done),
                Err(DropReason::IoError) if udp && done.segments > 1 => {
                    tracing::warn!(
                        "writing a UDP super-packet to pods failed (no USO on this kernel?): \
                         UDP datagrams are delivered one by one from now on"
                    );
                    *udp_runs = false;
                    // All of the run's datagrams go alone (one refused for
                    // a bad checksum, already counted, now meets the kernel's
                    // check and is dropped there).
                    for r in &inners[first_at..k] {
                        self.deliver_checked(snap, buf, r.start, r.end);
                    }
                }
                Err(why) => self.counters.dropped(why),
            }
        }
    }

    /// Counts a super-packet written to pods as the packets it carries.
    fn count_delivered(&self, done: &encap::segment::Coalesced) {
        if done.segments > 1 {
            WorkerCounters::add(&self.counters.rx_super_packets, 1);
        }
        WorkerCounters::add(&self.counters.rx_packets, done.segments as u64);
        WorkerCounters::add(
            &self.counters.rx_bytes,
            (done.len + (done.segments - 1) * done.header_len) as u64,
        );
    }

    /// An inner packet at `buf[range]` longer than the overlay MTU. A TCP
    /// super-packet the kernel's GRO built on the underlay
    /// (`encap::segment::merged_by_kernel`) goes to its pod as one. Its
    /// segment size is not known (a raw socket does not say what GRO
    /// merged); it is set for segments of 1,280 bytes (or the overlay MTU
    /// if smaller), which any pod link IPv6 can run on takes: the node's
    /// kernel checks a forwarded super-packet's segments against the pod
    /// route's MTU (the CNI plugin's, 1,450 by default, below IP-in-IP's
    /// overlay MTU). The receiving pod gets the packet whole either way.
    /// Anything else goes alone, as it came (a peer with a larger MTU):
    /// the node's kernel forwards it if the pod's route allows or answers
    /// "too big". UDP merged by GRO forwarding on the underlay NIC (off by
    /// default) cannot be cut back, its datagram boundaries lost; the
    /// pod's kernel drops it for its partial checksum.
    fn deliver_oversized(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        range: std::ops::Range<usize>,
    ) {
        let mtu = self.settings.overlay_mtu.min(1280);
        let done = match encap::segment::merged_by_kernel(&mut buf[range.clone()], mtu) {
            Ok(done) => done,
            Err(encap::segment::Refusal::BadChecksum) => {
                return self.counters.dropped(DropReason::BadInnerChecksum)
            }
            Err(_) => return self.deliver_checked(snap, buf, range.start, range.end),
        };
        let hdr = VirtioNetHdr::for_coalesced(&done);
        match self.attach.emit(snap, buf, range.start, range.end, hdr) {
            Ok(()) => {
                WorkerCounters::add(&self.counters.rx_underlay_gro, 1);
                self.count_delivered(&done);
            }
            Err(why) => self.counters.dropped(why),
        }
    }

    /// Answers an ARP request that arrived inside VXLAN (from a Linux vxlan
    /// peer resolving a weft gateway or pod address) from fdb, instead of
    /// flooding it: the address's block owner's VTEP MAC, or this node's.
    /// The reply (VXLAN header + frame) is written into `out`.
    fn arp(&self, snap: &fdb::Snapshot, peer: &NodeId, datagram: &[u8], out: &mut [u8]) -> Arp {
        let h = encap::vxlan::HEADER_LEN;
        let Ok(vxlan) = encap::vxlan::VxlanHeader::new_checked(datagram) else {
            return Arp::Pass;
        };
        if vxlan.vni() != self.settings.vni || !encap::arp::is_arp(vxlan.payload()) {
            return Arp::Pass;
        }
        let Ok(req) = encap::arp::parse_request(vxlan.payload()) else {
            self.counters.dropped(DropReason::BadVxlan);
            return Arp::Handled;
        };
        let answer = match snap.owner_of(IpAddr::V4(req.target_ip)) {
            Some(owner) if owner == peer => return Arp::Handled, // its own
            Some(owner) if owner == snap.local_node() => self.settings.local_mac,
            Some(owner) => match snap.node(owner) {
                Some(e) => MacAddr(e.value.vtep_mac.0),
                None => return Arp::Handled,
            },
            None => {
                self.counters.dropped(DropReason::NoRoute);
                return Arp::Handled;
            }
        };
        if encap::vxlan::write_header(&mut out[..h], self.settings.vni).is_err() {
            return Arp::Handled;
        }
        match encap::arp::write_reply(&mut out[h..], &req, answer) {
            Ok(n) => Arp::Reply(h + n),
            Err(_) => Arp::Handled,
        }
    }

    /// Decapsulates the datagram at `buf[from..to]` (whose outer header
    /// carried `outer_ecn`) and checks it came from `peer` with an inner
    /// source in `peer`'s blocks; returns the inner packet's range in `buf`,
    /// or counts the drop.
    fn accept_datagram(
        &self,
        dec: &VxlanDecap,
        snap: &fdb::Snapshot,
        peer: &NodeId,
        buf: &mut [u8],
        (from, to): (usize, usize),
        outer_ecn: Ecn,
    ) -> Option<std::ops::Range<usize>> {
        let inner = match dec.decap_payload(&mut buf[from..to], outer_ecn) {
            Ok(i) => i,
            Err(encap::Error::WrongVni { .. }) => {
                self.counters.dropped(DropReason::WrongVni);
                return None;
            }
            Err(encap::Error::EcnCeOverNotEct) => {
                self.counters.dropped(DropReason::EcnDrop);
                return None;
            }
            Err(_) => {
                self.counters.dropped(DropReason::BadVxlan);
                return None;
            }
        };
        let range = from + inner.inner.start..from + inner.inner.end;
        let src = IpPacket::new_checked(&buf[range.clone()]).ok()?.src();
        if !snap.may_send_from(peer, src) {
            self.counters.dropped(DropReason::SpoofedInner);
            return None;
        }
        Some(range)
    }
}

/// Per-thread buffers for sending pods' packets: segments of a split
/// super-packet and a raw-socket batch.
struct TxScratch {
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
const MAX_HEADERS: usize = 256;

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
    fn new(overlay_mtu: usize) -> TxScratch {
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

/// What to do with a datagram that may carry ARP.
enum Arp {
    /// Not ARP: decapsulate as usual.
    Pass,
    /// ARP, dropped (counted) or not ours to answer.
    Handled,
    /// ARP, answered: this many bytes of reply to send back.
    Reply(usize),
}
