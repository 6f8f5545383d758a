//! Veth attachment, pods → out: each worker waits on its ports' packet
//! sockets (epoll), reads the frames that are ready (one `recvmmsg` of up to
//! [`PORT_BATCH`] per port and turn, for fairness), and for each one checks that it came from the pod the port
//! was registered for (source MAC and IP), answers ARP and neighbour
//! solicitations for the gateway, switches pod-to-pod traffic on this node
//! straight to the other pod's port, and sends the rest through the same
//! forwarding path as the TUN attachment. The other direction (underlay →
//! pod) is `Attachment::emit`.

use super::counters::{DropReason, WorkerCounters};
use super::event_loop::{LoopState, Polled, BUDGET};
use super::ports::{Port, Ports, GATEWAY_MAC};
use super::tx::TxScratch;
use super::{Worker, HEADROOM};
use encap::ethernet::EthernetFrame;
use encap::ip::IpHeader;
use encap::virtio::{self, VirtioNetHdr};
use encap::IpPacket;
use fdb::{Reader, Route};
use nix::sys::epoll::EpollTimeout;
use std::net::IpAddr;

/// Where a frame is read into the buffer: its IP header then starts at
/// `HEADROOM`, with room in front for the VXLAN headers.
const FRAME_AT: usize = HEADROOM - 14;
/// Where the frame's virtio-net header is read.
const VNET_AT: usize = FRAME_AT - virtio::HEADER_LEN;
/// Frames read from one port at a time (one `recvmmsg`).
pub(super) const PORT_BATCH: usize = BUDGET;
/// Each frame's slot in the batch buffer: the headroom and the largest
/// frame a pod's veth hands over (a GSO super-frame), like the TUN's
/// buffer. Pages are touched only as frames that long arrive.
pub(super) const PORT_SLOT: usize = (HEADROOM + super::MAX_PACKET).next_multiple_of(64);

const GATEWAY_V4: std::net::Ipv4Addr = crate::podnet::GATEWAY_V4;
const GATEWAY_V6: std::net::Ipv6Addr = crate::podnet::GATEWAY_V6;

/// True for destinations a router forwards (not multicast, broadcast,
/// link-local or unspecified).
fn routable(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => {
            !(a.is_multicast() || a.is_broadcast() || a.is_link_local() || a.is_unspecified())
        }
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unicast_link_local() || a.is_unspecified()),
    }
}

impl Worker {
    /// Pods → underlay in veth attachment: the ports of worker `index`
    /// that are ready, up to [`BUDGET`] frames each.
    pub(super) fn poll_ports(&self, ports: &Ports, index: usize, st: &mut LoopState) -> Polled {
        let n = match ports.epoll(index).wait(&mut st.events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => return Polled::Idle,
            Err(e) => {
                tracing::error!("worker {index}: ports epoll failed, no longer reading pods: {e}");
                return Polled::Gone;
            }
        };
        for k in 0..n {
            let Some(port) = ports.get(st.events[k].data() as u32) else {
                continue;
            };
            // The link going away (ENETDOWN, once) is an error here: the
            // CNI plugin's DEL unregisters the port.
            let Ok(got) = st
                .recv_batch
                .recv(&port.socket, &mut st.ports_buf, PORT_SLOT, VNET_AT)
            else {
                continue;
            };
            for (k, &len) in got.lens[..got.count].iter().enumerate() {
                if len == usize::MAX {
                    // Longer than its slot (cannot happen): never a piece.
                    self.counters.dropped(DropReason::BadOffload);
                    continue;
                }
                self.frame_from_port(
                    &mut st.reader,
                    ports,
                    &port,
                    &mut st.ports_buf[k * PORT_SLOT..(k + 1) * PORT_SLOT],
                    VNET_AT + len,
                    &mut st.scratch,
                );
            }
        }
        self.flush_pending(&mut st.scratch);
        if n > 0 {
            Polled::Busy
        } else {
            Polled::Idle
        }
    }

    /// One frame from `port` at `buf[VNET_AT..end]` (virtio-net header
    /// first).
    fn frame_from_port(
        &self,
        reader: &mut Reader,
        ports: &Ports,
        port: &Port,
        buf: &mut [u8],
        end: usize,
        scratch: &mut TxScratch,
    ) {
        let Ok(mut hdr) = VirtioNetHdr::parse(&buf[VNET_AT..end]) else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        let frame = &buf[FRAME_AT..end];
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        if eth.src() != port.spec.mac {
            return self.counters.dropped(DropReason::SpoofedSource);
        }
        match eth.ethertype() {
            encap::arp::ETHERTYPE => self.answer_arp(port, frame),
            encap::nd::ETHERTYPE_IPV6 if encap::nd::is_solicitation(frame) => {
                self.answer_nd(port, frame)
            }
            0x0800 | encap::nd::ETHERTYPE_IPV6 => {
                if eth.dst() != GATEWAY_MAC {
                    // Multicast is the multicast thread's (its own socket
                    // reads the same frames).
                    if self.multicast.is_some() && eth.dst().0[0] & 1 == 1 {
                        return;
                    }
                    return self.counters.dropped(DropReason::NotForGateway);
                }
                // The header's offsets count from the frame; the forwarding
                // path counts from the IP header.
                if hdr.flags & virtio::FLAG_NEEDS_CSUM != 0 {
                    let Some(start) = hdr.csum_start.checked_sub(14) else {
                        return self.counters.dropped(DropReason::BadOffload);
                    };
                    hdr.csum_start = start;
                }
                hdr.hdr_len = hdr.hdr_len.saturating_sub(14);
                self.route_from_pod(reader, ports, port, hdr, buf, end, scratch);
            }
            _ => self.counters.dropped(DropReason::NotForGateway),
        }
    }

    /// An IP packet from a pod (at `buf[HEADROOM..end]`, its Ethernet
    /// header in front): checked, then switched to a local pod or sent on.
    #[allow(clippy::too_many_arguments)]
    fn route_from_pod(
        &self,
        reader: &mut Reader,
        ports: &Ports,
        port: &Port,
        hdr: VirtioNetHdr,
        buf: &mut [u8],
        end: usize,
        scratch: &mut TxScratch,
    ) {
        let Ok(ip) = IpPacket::new_checked(&buf[HEADROOM..end]) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let (src, dst) = (ip.src(), ip.dst());
        if !port.owns(src) {
            return self.counters.dropped(DropReason::SpoofedSource);
        }
        if !routable(dst) {
            return self.counters.dropped(DropReason::NotForGateway);
        }
        if !IpHeader::new_checked(&mut buf[HEADROOM..end]).is_ok_and(|mut h| h.decrement_ttl()) {
            return self.counters.dropped(DropReason::TtlExpired);
        }
        let snap = reader.load();
        if let Route::Local { .. } = snap.route(dst) {
            let Some(to) = snap
                .endpoint(dst)
                .and_then(|e| e.value.local_port)
                .and_then(|i| ports.get(i))
            else {
                return self.counters.dropped(DropReason::NoEndpoint);
            };
            // Same node: a new Ethernet header, the rest (virtio-net header
            // included, its offsets count from the frame) as it came.
            buf[FRAME_AT..FRAME_AT + 6].copy_from_slice(&to.spec.mac.0);
            buf[FRAME_AT + 6..FRAME_AT + 12].copy_from_slice(&GATEWAY_MAC.0);
            match to.socket.send(&buf[VNET_AT..end]) {
                Ok(_) => WorkerCounters::add(&self.counters.local_packets, 1),
                Err(_) => self.counters.dropped(DropReason::IoError),
            }
            return;
        }
        let host = match &self.attach {
            super::Attachment::Veth { host, .. } => host.as_ref(),
            super::Attachment::Tun(_) => None,
        };
        if let (Route::NoRoute, Some(host)) = (snap.route(dst), host) {
            // Not a pod and not another node: the host or beyond, through
            // the host port (the kernel delivers or forwards it, with the
            // outgoing NAT). The header's offsets already count from the
            // IP header, as the TUN wants them (see `frame_from_port`).
            let at = HEADROOM - virtio::HEADER_LEN;
            let _ = hdr.write(&mut buf[at..HEADROOM]);
            match host.send(&buf[at..end]) {
                Ok(_) => WorkerCounters::add(&self.counters.local_packets, 1),
                Err(_) => self.counters.dropped(DropReason::IoError),
            }
            return;
        }
        self.send_from_pod(reader, hdr, buf, end, scratch);
    }

    /// The host port's packet at `buf[HEADROOM..end]` (virtio-net header
    /// `hdr`): if it is for a pod of this node, written to that pod's port
    /// (true); anything else is for the underlay (false).
    pub(super) fn to_local_pod(
        &self,
        reader: &mut Reader,
        hdr: VirtioNetHdr,
        buf: &mut [u8],
        end: usize,
    ) -> bool {
        let snap = reader.load();
        let Ok(dst) = IpPacket::new_checked(&buf[HEADROOM..end]).map(|p| p.dst()) else {
            return false;
        };
        if !matches!(snap.route(dst), Route::Local { .. }) {
            return false;
        }
        match self.attach.emit(snap, buf, HEADROOM, end, hdr) {
            Ok(()) => WorkerCounters::add(&self.counters.local_packets, 1),
            Err(why) => self.counters.dropped(why),
        }
        true
    }

    /// Answers a pod's ARP request for its gateway, 169.254.1.1.
    fn answer_arp(&self, port: &Port, frame: &[u8]) {
        let Ok(req) = encap::arp::parse_request(frame) else {
            return self.counters.dropped(DropReason::NotForGateway);
        };
        if !port.owns(IpAddr::V4(req.sender_ip)) {
            return self.counters.dropped(DropReason::SpoofedSource);
        }
        if req.target_ip != GATEWAY_V4 {
            return self.counters.dropped(DropReason::NotForGateway);
        }
        let mut out = [0u8; virtio::HEADER_LEN + encap::arp::FRAME_LEN];
        let _ = VirtioNetHdr::NONE.write(&mut out);
        let Ok(n) = encap::arp::write_reply(&mut out[virtio::HEADER_LEN..], &req, GATEWAY_MAC)
        else {
            return;
        };
        self.reply(port, &out[..virtio::HEADER_LEN + n]);
    }

    /// Answers a pod's neighbour solicitation for its IPv6 gateway.
    fn answer_nd(&self, port: &Port, frame: &[u8]) {
        let Ok(sol) = encap::nd::parse_solicitation(frame) else {
            return self.counters.dropped(DropReason::NotForGateway);
        };
        let from_pod = port.owns(IpAddr::V6(sol.asker_ip)) || sol.asker_ip.is_unicast_link_local();
        if !from_pod || sol.target != GATEWAY_V6 {
            // Duplicate address detection and other targets included.
            return self.counters.dropped(DropReason::NotForGateway);
        }
        let mut out = [0u8; virtio::HEADER_LEN + encap::nd::ADVERT_FRAME_LEN];
        let _ = VirtioNetHdr::NONE.write(&mut out);
        let Ok(n) =
            encap::nd::write_advertisement(&mut out[virtio::HEADER_LEN..], &sol, GATEWAY_MAC, true)
        else {
            return self.counters.dropped(DropReason::NotForGateway);
        };
        self.reply(port, &out[..virtio::HEADER_LEN + n]);
    }

    fn reply(&self, port: &Port, frame: &[u8]) {
        match port.socket.send(frame) {
            Ok(_) => WorkerCounters::add(&self.counters.gateway_replies, 1),
            Err(_) => self.counters.dropped(DropReason::IoError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_decrement_keeps_the_ipv4_checksum_right() {
        let mut p = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 244, 1, 2], [10, 244, 2, 3], 64)
            .udp(1, 2)
            .write(&mut p, b"hello")
            .unwrap();
        let decrement_ttl =
            |p: &mut [u8]| IpHeader::new_checked(p).is_ok_and(|mut h| h.decrement_ttl());
        assert!(decrement_ttl(&mut p));
        assert_eq!(p[8], 63);
        assert_eq!(
            encap::checksum::checksum(&p[..20]),
            0,
            "header sums to zero"
        );
        p[8] = 1;
        assert!(!decrement_ttl(&mut p), "TTL 1 expires");
        assert_eq!(p[8], 1, "unchanged");
        let mut v6 = vec![0x60u8; 40];
        v6[7] = 2;
        assert!(decrement_ttl(&mut v6) && v6[7] == 1);
        assert!(!decrement_ttl(&mut v6));
        assert!(!decrement_ttl(&mut [0x45; 10]), "too short");
        // Only the header needs to be there.
        assert_eq!(
            IpHeader::new_checked(&p[..20]).unwrap().dst(),
            "10.244.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn routers_do_not_forward_link_scope() {
        for a in ["10.244.2.3", "fd00::1", "8.8.8.8"] {
            assert!(routable(a.parse().unwrap()), "{a}");
        }
        for a in [
            "169.254.1.1",
            "255.255.255.255",
            "224.0.0.1",
            "0.0.0.0",
            "fe80::1",
            "ff02::2",
            "::",
        ] {
            assert!(!routable(a.parse().unwrap()), "{a}");
        }
    }
}
