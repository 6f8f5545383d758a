//! Where pods' packets come from and decapsulated ones go: a TUN queue
//! (the kernel routes to pods), or the pods' veths read and written by
//! weftd itself (veth attachment; see `veth` for the pod side).

use super::counters::DropReason;
use super::ports;
use encap::ip::IpHeader;
use encap::virtio::{self, VirtioNetHdr};
use fdb::Route;
use std::io::IoSlice;
use std::sync::Arc;

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
    pub(super) fn takes_udp_super_packets(&self) -> bool {
        match self {
            Attachment::Tun(tun) => tun.udp_gso(),
            Attachment::Veth { .. } => true,
        }
    }

    /// Writes the IP packet at `buf[start..end]` towards its destination
    /// pod with virtio-net header `hdr` (whose checksum offsets count from
    /// the IP header). `buf` has [`EMIT_HEADROOM`](super::EMIT_HEADROOM) bytes free before
    /// `start`. With the TUN the kernel routes it; with veths it goes, in
    /// an Ethernet frame, to the port fdb names for the destination.
    pub(super) fn emit(
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
    pub(super) fn emit_gathered<'a>(
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
