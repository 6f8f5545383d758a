//! One thread per worker, both directions: the worker's attachment (its TUN
//! queue or its ports' epoll) and its underlay sockets are all
//! non-blocking and polled in turn, a budget of reads each, until none has
//! anything; then the thread keeps polling for a short busy-poll window
//! (at most `dataplane.busy_poll_us`, adapted to the traffic and within a
//! budget: `spin`) before it sleeps in `epoll_wait`.
//!
//! Why one thread and not one per direction: a packet written to the TUN
//! (or a pod's veth) is handled by the pod's stack inline, inside that
//! write, and its answer — a TCP ACK, an echo reply — is then already
//! queued on the same worker's TUN queue (tun's automatic flow steering
//! sends a flow's replies to the queue that wrote it). The same thread
//! picks it up on its next turn, with no wake-up and no hand-off to a
//! second thread; wake-ups are what a userspace router's latency is made
//! of. The busy-poll window covers the other half: the answer from the far
//! node usually arrives within a round trip, before the thread would have
//! gone to sleep.

use super::counters::DropReason;
use super::rx::{accept_vxlan, inner_checksums_need_verifying, resolve_in_vxlan};
use super::rx::{Delivery, PassedChecks, Resolution};
use super::tx::{TxScratch, MAX_HEADERS};
use super::{Attachment, UnderlayIo, Worker};
use super::{EMIT_HEADROOM, HEADROOM, MAX_PACKET};
use encap::virtio::{self, VirtioNetHdr};
use encap::vxlan::VxlanDecap;
use fdb::Reader;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Instant;

/// Reads from one source before the others get their turn.
pub(super) const BUDGET: usize = 16;
/// IP-in-IP receive: packets read per batch.
const IPIP_BATCH: usize = super::sys::raw_batch::MAX_BATCH;

/// What one turn at a source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Polled {
    /// Nothing was waiting.
    Idle,
    /// Packets were handled (more may be waiting).
    Busy,
    /// The source failed for good (logged); stop watching it.
    Gone,
}

/// A worker thread's buffers and caches: allocated once, reused for every
/// packet.
pub(super) struct LoopState {
    /// The fdb reader (snapshot cache).
    pub reader: Reader,
    /// Pod packets are read into here (HEADROOM free in front).
    pub tx_buf: Vec<u8>,
    /// Segments of split super-packets and the raw-socket batch.
    pub scratch: TxScratch,
    /// Underlay datagrams are read into here.
    pub rx_buf: Vec<u8>,
    /// Where coalesced headers are built, and whether UDP runs are on.
    pub delivery: Delivery,
    /// Ranges of `rx_buf` accepted for delivery.
    pub accepted: Vec<Range<usize>>,
    /// ARP replies to Linux vxlan peers.
    pub resolution_out: [u8; super::rx::RESOLUTION_REPLY_MAX],
    /// Ready ports (veth attachment).
    pub events: [EpollEvent; 64],
    /// Each underlay socket's overflow count last seen (SO_RXQ_OVFL), by
    /// source number.
    overflows_seen: [u32; 5],
    /// Veth attachment: frames from a pod's port are read into here, a
    /// batch at a time (empty otherwise).
    pub ports_buf: Vec<u8>,
    /// IP-in-IP and veth receive headers.
    pub recv_batch: super::sys::raw_batch::RecvBatch,
    /// VXLAN receive control messages.
    recv_control: super::sys::udp_gso::RecvControl,
    dec: VxlanDecap,
}

impl Worker {
    /// Worker `index`'s thread: polls its sources until the process ends.
    pub(super) fn run(&self, index: usize) {
        let mut st = LoopState {
            reader: self.fdb.reader(),
            tx_buf: vec![0u8; HEADROOM + MAX_PACKET],
            scratch: TxScratch::new(self.settings.overlay_mtu),
            // Zeroed on demand: a slot's pages are touched only once a
            // packet that long arrives.
            rx_buf: vec![
                0u8;
                match self.underlay {
                    UnderlayIo::IpIp { receive: true, .. } => IPIP_BATCH * IPIP_SLOT,
                    _ => HEADROOM + MAX_PACKET,
                }
            ],
            delivery: Delivery {
                merged: vec![0u8; EMIT_HEADROOM + MAX_HEADERS],
                udp_runs: self.attach.takes_udp_super_packets(),
            },
            accepted: Vec::with_capacity(IPIP_BATCH),
            ports_buf: match self.attach {
                Attachment::Veth { .. } => {
                    vec![0u8; super::veth::PORT_BATCH * super::veth::PORT_SLOT]
                }
                Attachment::Tun(_) => Vec::new(),
            },
            resolution_out: [0u8; super::rx::RESOLUTION_REPLY_MAX],
            events: [EpollEvent::empty(); 64],
            overflows_seen: [0; 5],
            recv_batch: Default::default(),
            recv_control: Default::default(),
            dec: VxlanDecap {
                vni: self.settings.vni,
                port: self.settings.port,
            },
        };
        let sources = match self.sources(index) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("worker {index}: cannot watch its sockets: {e}");
                return;
            }
        };
        let Sources {
            poller,
            mut live,
            host_at,
        } = sources;
        let mut wake = [EpollEvent::empty(); 4];
        let mut spin = super::spin::SpinWindow::new(self.settings.busy_poll, Instant::now());
        let mut idle_at: Option<Instant> = None;
        loop {
            let mut busy = false;
            for (k, slot) in live.iter_mut().enumerate() {
                let Some(fd) = *slot else { continue };
                let polled = match (&self.attach, host_at == Some(k)) {
                    (
                        Attachment::Veth {
                            host: Some(host), ..
                        },
                        true,
                    ) => self.poll_tun(host, &mut st),
                    _ => self.poll(k, index, &mut st),
                };
                match polled {
                    Polled::Idle => {}
                    Polled::Busy => busy = true,
                    Polled::Gone => {
                        let _ = poller.delete(borrow(fd));
                        *slot = None;
                    }
                }
            }
            if busy {
                if let Some(t) = idle_at.take() {
                    spin.record(t.elapsed());
                }
                continue;
            }
            // Idle: a short busy-poll window (`spin`: adapted to how soon
            // work came back lately, within a budget), then sleep. The
            // window asks the epoll (one system call for every source,
            // instead of a read of each) and yields the core between asks,
            // so a thread with work on this core (the peer's worker, a pod)
            // runs.
            let since = *idle_at.get_or_insert_with(Instant::now);
            let window = spin.window(since);
            let mut ready = false;
            while since.elapsed() < window {
                if matches!(poller.wait(&mut wake, EpollTimeout::ZERO), Ok(n) if n > 0) {
                    ready = true;
                    break;
                }
                std::thread::yield_now();
            }
            if ready {
                spin.found_after(since.elapsed());
                continue;
            }
            if !window.is_zero() {
                spin.wasted(window);
            }
            match poller.wait(&mut wake, EpollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!("worker {index}: epoll: {e}");
                    return;
                }
            }
        }
    }

    /// The epoll that wakes the thread, and the raw fds of its sources in
    /// the order [`Worker::poll`] numbers them.
    fn sources(&self, index: usize) -> std::io::Result<Sources> {
        let poller = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let mut live = Vec::new();
        let mut watch = |fd: BorrowedFd<'_>| -> std::io::Result<()> {
            poller.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, live.len() as u64))?;
            live.push(Some(fd.as_raw_fd()));
            Ok(())
        };
        match &self.attach {
            Attachment::Tun(tun) => {
                tun.set_nonblocking(true)?;
                watch(tun.as_fd())?;
            }
            Attachment::Veth { ports, .. } => watch(ports.epoll(index).0.as_fd())?,
        }
        match &self.underlay {
            UnderlayIo::Vxlan { receive, .. } => {
                for sock in receive {
                    if !super::sys::udp_gso::enable_gro(sock) {
                        tracing::warn!(
                            "worker {index}: no UDP GRO on this kernel; datagrams come one by one"
                        );
                    }
                    if !super::sys::udp_gso::enable_recv_tos(sock) {
                        tracing::warn!(
                            "worker {index}: cannot read the outer TOS; congestion marks (ECN CE) from the underlay are lost"
                        );
                    }
                    watch(sock.as_fd())?
                }
            }
            UnderlayIo::IpIp {
                over,
                receive: true,
            } => {
                for pair in over {
                    watch(pair.v4.as_fd())?;
                    watch(pair.v6.as_fd())?;
                }
            }
            UnderlayIo::IpIp { .. } => {}
        }
        // Last, so the numbering of the others does not move.
        let host_at = match &self.attach {
            Attachment::Veth {
                host: Some(host), ..
            } => {
                host.set_nonblocking(true)?;
                watch(host.as_fd())?;
                Some(live.len() - 1)
            }
            _ => None,
        };
        Ok(Sources {
            poller,
            live,
            host_at,
        })
    }

    /// One turn at source `k` (0: the attachment; then the underlay
    /// sockets: VXLAN's one per family, IP-in-IP's pair per family).
    fn poll(&self, k: usize, index: usize, st: &mut LoopState) -> Polled {
        match (k, &self.attach, &self.underlay) {
            (0, Attachment::Tun(tun), _) => self.poll_tun(tun, st),
            (0, Attachment::Veth { ports, .. }, _) => self.poll_ports(ports, index, st),
            (_, _, UnderlayIo::Vxlan { receive, .. }) => match receive.get(k - 1) {
                Some(socket) => self.poll_vxlan(socket, k, st),
                None => Polled::Gone,
            },
            (_, _, UnderlayIo::IpIp { over, .. }) => match over.get((k - 1) / 2) {
                Some(pair) if k % 2 == 1 => self.poll_ipip(&pair.v4, k, 4, pair.outer_v6, st),
                Some(pair) => self.poll_ipip(&pair.v6, k, 41, pair.outer_v6, st),
                None => Polled::Gone,
            },
        }
    }

    /// Pods -> underlay through the TUN queue: up to [`BUDGET`] packets.
    /// The host port of veth attachment is read the same way, its packets
    /// for local pods written to their ports.
    fn poll_tun(&self, tun: &tun_rs::SyncDevice, st: &mut LoopState) -> Polled {
        let hdr_at = HEADROOM - virtio::HEADER_LEN;
        let mut got = 0;
        while got < BUDGET {
            let n = match tun.recv(&mut st.tx_buf[hdr_at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::error!("TUN queue read failed, no longer reading it: {e}");
                    return Polled::Gone;
                }
            };
            got += 1;
            let end = hdr_at + n;
            let Ok(hdr) = VirtioNetHdr::parse(&st.tx_buf[hdr_at..end]) else {
                self.counters.dropped(DropReason::BadOffload);
                continue;
            };
            if matches!(self.attach, Attachment::Veth { .. })
                && self.to_local_pod(&mut st.reader, hdr, &mut st.tx_buf, end)
            {
                continue;
            }
            self.send_from_pod(&mut st.reader, hdr, &mut st.tx_buf, end, &mut st.scratch);
        }
        self.flush_pending(&mut st.scratch);
        if got > 0 {
            Polled::Busy
        } else {
            Polled::Idle
        }
    }

    /// Underlay -> pods over VXLAN: up to [`BUDGET`] receives (each one
    /// datagram, or a GRO train of them).
    fn poll_vxlan(&self, sock: &std::net::UdpSocket, source: usize, st: &mut LoopState) -> Polled {
        let mut got = 0;
        while got < BUDGET {
            match super::sys::udp_gso::recv(sock, &mut st.rx_buf[HEADROOM..], &mut st.recv_control)
            {
                Ok(r) => {
                    got += 1;
                    self.count_overflows(st, source, r.dropped_so_far);
                    self.vxlan_received(sock, st, r);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.counters.dropped(DropReason::IoError);
                    break;
                }
            }
        }
        if got > 0 {
            Polled::Busy
        } else {
            Polled::Idle
        }
    }

    /// What `r` put at `rx_buf[HEADROOM..]`: datagrams of `r.segment`
    /// bytes from `r.from`, all with outer TOS `r.tos`. ARP answered, the
    /// rest checked, decapsulated (the outer ECN applied to the inner
    /// packet) and delivered (coalesced).
    fn vxlan_received(
        &self,
        sock: &std::net::UdpSocket,
        st: &mut LoopState,
        r: super::sys::udp_gso::ReceivedDatagrams,
    ) {
        let (n, from, segment) = (r.len, r.from, r.segment);
        let outer_ecn = encap::ecn::Ecn::from_tos(r.tos);
        let snap = st.reader.load();
        let Some(peer) = snap.node_at(from.ip()).cloned() else {
            // One source for the whole GRO batch: one lookup, every
            // datagram in it counted.
            let datagrams = n.div_ceil(segment.max(1)) as u64;
            return self
                .counters
                .dropped_n(DropReason::UnknownSource, datagrams);
        };
        st.accepted.clear();
        let mut passed = PassedChecks::default();
        for k in 0..n.div_ceil(segment) {
            let bounds = (
                HEADROOM + k * segment,
                HEADROOM + ((k + 1) * segment).min(n),
            );
            let datagram = &st.rx_buf[bounds.0..bounds.1];
            match resolve_in_vxlan(
                &self.settings,
                snap,
                &peer,
                datagram,
                &mut st.resolution_out,
            ) {
                Ok(Resolution::Pass) => {}
                Ok(Resolution::Ignored) => continue,
                Ok(Resolution::Reply { len, nd }) => {
                    let to = std::net::SocketAddr::new(from.ip(), self.settings.port);
                    let counter = if nd {
                        &self.counters.nd_replies
                    } else {
                        &self.counters.arp_replies
                    };
                    match sock.send_to(&st.resolution_out[..len], to) {
                        Ok(_) => super::WorkerCounters::add(counter, 1),
                        Err(_) => self.counters.dropped(DropReason::IoError),
                    }
                    continue;
                }
                Err(why) => {
                    self.counters.dropped(why);
                    continue;
                }
            }
            match accept_vxlan(
                &st.dec,
                snap,
                &peer,
                &mut st.rx_buf,
                bounds.0..bounds.1,
                outer_ecn,
                &mut passed,
            ) {
                Ok(r) => st.accepted.push(r),
                Err(why) => self.counters.dropped(why),
            }
        }
        let verify = inner_checksums_need_verifying(from.ip(), n.div_ceil(segment));
        self.deliver_batch(snap, &mut st.rx_buf, &st.accepted, &mut st.delivery, verify);
    }

    /// Counts what source `k`'s socket dropped since we last heard, from
    /// the total the kernel reported with a receive.
    fn count_overflows(&self, st: &mut LoopState, k: usize, total: Option<u32>) {
        if let (Some(total), Some(seen)) = (total, st.overflows_seen.get_mut(k)) {
            let new = total.wrapping_sub(*seen);
            *seen = total;
            self.counters
                .dropped_n(DropReason::SocketOverflow, u64::from(new));
        }
    }

    /// Underlay -> pods over IP-in-IP: whatever is queued on one raw
    /// socket, up to a batch of packets in one `recvmmsg`, delivered
    /// together so consecutive segments of a flow become one write.
    fn poll_ipip(
        &self,
        sock: &socket2::Socket,
        source: usize,
        protocol: u8,
        outer_v6: Option<std::net::Ipv6Addr>,
        st: &mut LoopState,
    ) -> Polled {
        let slot = IPIP_SLOT;
        let got = match st.recv_batch.recv(sock, &mut st.rx_buf, slot, HEADROOM) {
            Ok(got) => got,
            Err(_) => {
                self.counters.dropped(DropReason::IoError);
                return Polled::Idle;
            }
        };
        // The socket can only have overflowed if it was full, and then this
        // read takes a full batch: ask the kernel for its drop count then
        // (one getsockopt per 64 packets under pressure, none otherwise).
        if got.count == IPIP_BATCH {
            self.count_overflows(st, source, super::sys::raw_batch::socket_drops(sock));
        }
        if got.count == 0 {
            return Polled::Idle;
        }
        st.accepted.clear();
        let mut passed = PassedChecks::default();
        for (k, &n) in got.lens[..got.count].iter().enumerate() {
            if n == usize::MAX {
                // Cut short: longer than any IPv4 packet (cannot happen).
                self.counters.dropped(DropReason::BadIpip);
                continue;
            }
            let (at, n) = match (outer_v6, got.from[k]) {
                (None, _) => (k * slot + HEADROOM, n),
                (Some(own), Some(std::net::IpAddr::V6(from))) => {
                    let header = k * slot + HEADROOM - encap::ipv6::HEADER_LEN;
                    let outer = encap::ipv6::Ipv6Header {
                        src: from,
                        dst: own,
                        next_header: protocol,
                        traffic_class: got.tclass[k],
                        flow_label: 0,
                        hop_limit: 64,
                        payload_len: n,
                    };
                    if outer.write(&mut st.rx_buf[header..]).is_err() {
                        self.counters.dropped(DropReason::BadIpip);
                        continue;
                    }
                    (header, n + encap::ipv6::HEADER_LEN)
                }
                (Some(_), _) => {
                    self.counters.dropped(DropReason::BadIpip);
                    continue;
                }
            };
            self.accept_ipip(
                &mut st.rx_buf,
                at,
                n,
                &mut st.reader,
                &mut st.accepted,
                &mut passed,
            );
        }
        let snap = st.reader.load();
        // Nothing covers an IP-in-IP packet's payload but its own checksums.
        self.deliver_batch(snap, &mut st.rx_buf, &st.accepted, &mut st.delivery, true);
        Polled::Busy
    }
}

/// The receive slot of one IP-in-IP packet: headroom and the largest IPv4
/// packet. Not the overlay MTU: on an underlay NIC with GRO (the default)
/// the kernel merges a tunnelled TCP flow's segments, and the raw socket
/// gets packets of up to 64 KiB (`Worker::deliver_oversized`).
const IPIP_SLOT: usize = (HEADROOM + u16::MAX as usize + 1).next_multiple_of(64);

/// The epoll a worker sleeps in and its sources' fds (None once gone).
struct Sources {
    poller: Epoll,
    live: Vec<Option<std::os::fd::RawFd>>,
    /// Which of `live` is the host port (veth attachment), if any.
    host_at: Option<usize>,
}

/// A borrowed fd for epoll's delete.
#[allow(unsafe_code)]
fn borrow<'a>(fd: std::os::fd::RawFd) -> BorrowedFd<'a> {
    // SAFETY: the fd is one of the worker's own sockets or its TUN queue,
    // held open by the worker for the whole life of its thread.
    unsafe { BorrowedFd::borrow_raw(fd) }
}
