//! Multicast between pods, in both attachment modes: the kernel routes no
//! multicast between a node's veths and weftd's TUN, so weftd reads pods'
//! multicast frames itself, from a packet socket on each pod's veth
//! ([`GroupSocket::on`]: a kernel filter passes frames to group MACs only;
//! no other interface, the data path's least of all, is tapped), and
//! writes their copies with one socket that receives nothing
//! ([`GroupSocket::sender`]).
//!
//! - Membership: the pods' IGMP and MLD reports ([`encap::group`]) keep a
//!   table per pod port ([`members`]); a group's count of member pods on
//!   this node goes to the control plane ([`GroupCount`]), which
//!   publishes a record per group with members. weftd queries its pods
//!   (IGMPv3 and MLDv2 general queries) at start and every
//!   `query_interval_s`, so memberships survive a restart of weftd and lapse
//!   when a pod stops answering.
//! - Sending (the `weft-mcast` thread): a pod's datagram to a group the cluster
//!   carries ([`encap::group::carried`]) is checked (source is the pod's, rate
//!   limits per pod and node, TTL), its TTL decremented once (the cluster
//!   is one router hop), and replicated head-end: one unicast VXLAN or
//!   IP-in-IP copy to each node with members (from gossip,
//!   [`Multicast::set_remote`]) and one to each other member pod here.
//! - Receiving ([`Multicast::deliver`], called by the workers): a copy from
//!   another node goes to this node's member pods, never onwards, so
//!   nothing loops between nodes.

pub mod members;

use super::counters::{DropReason, WorkerCounters};
use super::source_ports::SourcePorts;
use super::sys::packet_socket::GroupSocket;
use super::sys::raw_batch;
use super::{Settings, HEADROOM};
use arc_swap::ArcSwap;
use encap::group::{self, Change};
use encap::ip::IpHeader;
use encap::virtio::{self, GsoType, VirtioNetHdr};
use encap::vxlan::VxlanEncap;
use encap::{IpPacket, MacAddr};
use fdb::{Fdb, NodeId, Reader};
use members::{Members, Refused};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the IP packet of a frame read from the socket starts: the
/// headroom VXLAN needs in front of it.
const IP_AT: usize = HEADROOM;
const FRAME_AT: usize = IP_AT - 14;
const VNET_AT: usize = FRAME_AT - virtio::HEADER_LEN;

/// A group and how many of this node's pods are in it now (0: none), for
/// the control plane to publish.
pub type GroupCount = (IpAddr, u32);

/// Frames read per `recvmmsg`.
const READ_BATCH: usize = 32;
/// One frame's slot: the headroom and the largest frame a pod's link
/// carries (jumbo frames included); a longer one is dropped (`too_big`).
const SLOT: usize = HEADROOM + 9216 + 14 + virtio::HEADER_LEN;

/// How often the thread looks for pod ports that appeared or went (a
/// listing of the node's interfaces).
const PORT_SCAN: Duration = Duration::from_secs(1);
/// How often lapsed memberships and the taps' overflows are looked at.
const PORT_CHECK: Duration = Duration::from_secs(5);

/// What limits the multicast thread enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups per pod.
    pub max_groups_per_pod: u32,
    /// Groups per node.
    pub max_groups: u32,
    /// Datagrams per second per pod.
    pub pod_rate_pps: u32,
    /// Datagrams per second for the node.
    pub node_rate_pps: u32,
    /// Seconds between general queries.
    pub query_interval_s: u8,
}

/// The underlay sockets copies to other nodes leave from (the workers').
pub enum Underlay {
    /// VXLAN: the workers' send sockets.
    Vxlan(SourcePorts),
    /// IP-in-IP: the workers' raw sockets, a pair per underlay family.
    IpIp(Vec<super::RawPair>),
}

/// The groups as the data path reads them: lock-free snapshots, each
/// written by one thread.
#[derive(Debug, Default)]
pub struct Groups {
    /// Group → other nodes with members (written by the gossip thread).
    remote: ArcSwap<HashMap<IpAddr, Vec<NodeId>>>,
    /// Group → this node's member ports (written by the multicast thread).
    local: ArcSwap<HashMap<IpAddr, Vec<u32>>>,
}

/// The node's multicast plane: the socket, the group tables and the
/// counters of the thread that reads pods' multicast.
pub struct Multicast {
    /// Writes frames to pods; receives nothing.
    sender: GroupSocket,
    groups: Groups,
    /// The multicast thread's counters.
    pub counters: Arc<WorkerCounters>,
}

impl std::fmt::Debug for Multicast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multicast").finish_non_exhaustive()
    }
}

impl Multicast {
    /// Opens the node's sending socket (the thread opens one per pod port).
    pub fn open() -> std::io::Result<Arc<Multicast>> {
        Ok(Arc::new(Multicast {
            sender: GroupSocket::sender()?,
            groups: Groups::default(),
            counters: Arc::new(WorkerCounters::default()),
        }))
    }

    /// The control plane's view of the groups (group → node → member
    /// pods): every node but `local` with members gets copies.
    pub fn set_remote(&self, groups: &BTreeMap<IpAddr, BTreeMap<String, u32>>, local: &str) {
        let remote: HashMap<IpAddr, Vec<NodeId>> = groups
            .iter()
            .filter_map(|(g, nodes)| {
                let others: Vec<NodeId> = nodes
                    .keys()
                    .filter(|n| n.as_str() != local)
                    .map(|n| NodeId::new(n))
                    .collect();
                (!others.is_empty()).then_some((*g, others))
            })
            .collect();
        if **self.groups.remote.load() != remote {
            self.groups.remote.store(Arc::new(remote));
        }
    }

    /// The other nodes with members, per group (for `weftctl groups`).
    pub fn remote_members(&self) -> Arc<HashMap<IpAddr, Vec<NodeId>>> {
        self.groups.remote.load_full()
    }

    /// This node's member ports per group (for `weftctl groups`).
    pub fn local_members(&self) -> Arc<HashMap<IpAddr, Vec<u32>>> {
        self.groups.local.load_full()
    }

    /// Delivers the multicast packet at `buf[start..end]` (with
    /// the workers' emit headroom free in front), a copy from another node,
    /// to this node's member pods of its group. Returns how many got it.
    pub fn deliver(&self, buf: &mut [u8], start: usize, end: usize) -> Result<usize, DropReason> {
        let Some(dst) = group::destination(&buf[start..end]) else {
            return Err(DropReason::NotForThisNode);
        };
        let local = self.groups.local.load();
        let Some(ports) = local.get(&dst) else {
            return Err(DropReason::NoGroupMembers);
        };
        let at = start - 14 - virtio::HEADER_LEN;
        write_frame_header(&mut buf[at..start], dst).map_err(|_| DropReason::BadInner)?;
        // Every member gets its copy even if one port fails (a pod being
        // deleted): failures are counted, the rest still sent.
        let got = ports
            .iter()
            .filter(|&&port| self.sender.send_to(&buf[at..end], port).is_ok())
            .count();
        match got {
            0 => Err(DropReason::IoError),
            n => {
                let failed = (ports.len() - n) as u64;
                self.counters.dropped_n(DropReason::IoError, failed);
                Ok(n)
            }
        }
    }

    /// Starts the thread that reads pods' multicast frames.
    pub fn spawn(
        self: &Arc<Self>,
        thread: Thread,
        limits: Limits,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("weft-mcast".into())
            .spawn(move || me.run(thread, limits))
    }
}

/// What the multicast thread needs besides the shared plane.
pub struct Thread {
    /// The forwarding tables (node records, local endpoints).
    pub fdb: Fdb,
    /// The data path's settings (VNI, port, VTEP MAC, overlay MTU).
    pub settings: Settings,
    /// Where copies to other nodes leave from.
    pub underlay: Underlay,
    /// Where group counts go (the control plane), if gossip runs.
    pub publish: Option<Sender<GroupCount>>,
    /// The kernel path's vxlan device: copies from other nodes arrive
    /// there, decapsulated by the kernel, which routes no multicast on.
    pub kernel_device: Option<u32>,
}

/// The virtio-net header (nothing to finish) and Ethernet header of a
/// copy to a pod: to the group's MAC, from the pods' gateway.
fn write_frame_header(out: &mut [u8], group: IpAddr) -> encap::Result<()> {
    VirtioNetHdr::NONE.write(&mut out[..virtio::HEADER_LEN])?;
    let eth = &mut out[virtio::HEADER_LEN..];
    eth[..6].copy_from_slice(&group::mac_for(group).0);
    eth[6..12].copy_from_slice(&crate::podnet::HOST_MAC);
    let ethertype: u16 = if group.is_ipv4() { 0x0800 } else { 0x86dd };
    eth[12..14].copy_from_slice(&ethertype.to_be_bytes());
    Ok(())
}

/// A token bucket: `rate` per second, bursts of as many.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant, rate: u32) -> Self {
        Bucket {
            tokens: f64::from(rate),
            at: now,
        }
    }

    fn take(&mut self, now: Instant, rate: u32) -> bool {
        let rate = f64::from(rate);
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A pod port as the multicast thread knows it.
#[derive(Debug)]
struct PodPort {
    /// The pod end's MAC (derived from the host end's name).
    mac: MacAddr,
    bucket: Bucket,
    /// Its frames to group MACs.
    tap: GroupSocket,
}

/// The multicast thread's own state.
struct Run {
    members: Members,
    /// ifindex → the pod port there.
    ports: HashMap<u32, PodPort>,
    /// The kernel path's vxlan device, tapped while this node has member
    /// pods (its copies from other nodes arrive there).
    kernel_tap: Option<GroupSocket>,
    /// The kernel path's device ([`Thread::kernel_device`]).
    kernel_device: Option<u32>,
    /// Wakes the thread when a tap has frames (data: the ifindex).
    poller: Epoll,
    node_bucket: Bucket,
    reader: Reader,
    limits: Limits,
    publish: Option<Sender<GroupCount>>,
    clock: Instant,
    /// The underlay addresses of one datagram's copies.
    dests: Vec<SocketAddr>,
    /// Sends a datagram's copies in one `sendmmsg`.
    sends: raw_batch::Batch,
}

/// The pod ports on this node: interfaces named as the CNI plugin names
/// host ends ([`crate::podnet::host_ifname`]), with their ifindexes.
fn pod_interfaces() -> Vec<(u32, String)> {
    let Ok(all) = nix::net::if_::if_nameindex() else {
        return Vec::new();
    };
    all.iter()
        .filter_map(|i| {
            let name = i.name().to_str().ok()?;
            crate::podnet::is_host_ifname(name).then(|| (i.index(), name.to_string()))
        })
        .collect()
}

impl Multicast {
    fn run(self: Arc<Self>, mut t: Thread, limits: Limits) {
        let now = Instant::now();
        let poller = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("multicast: cannot make an epoll, no multicast: {e}");
                return;
            }
        };
        let mut run = Run {
            members: Members::new(limits.max_groups_per_pod, limits.max_groups),
            ports: HashMap::new(),
            kernel_tap: None,
            kernel_device: t.kernel_device,
            poller,
            node_bucket: Bucket::new(now, limits.node_rate_pps),
            reader: t.fdb.reader(),
            limits,
            publish: t.publish.take(),
            clock: now,
            dests: Vec::with_capacity(raw_batch::MAX_BATCH),
            sends: raw_batch::Batch::default(),
        };
        // Frames are read a batch at a time, each into its slot with the
        // headroom VXLAN needs in front of its IP packet.
        let mut bufs = vec![0u8; READ_BATCH * SLOT];
        let mut reads = raw_batch::RecvBatch::default();
        let mut events = [EpollEvent::empty(); 64];
        let interval = Duration::from_secs(limits.query_interval_s.into());
        let mut next_query = now + interval;
        let (mut next_ports, mut next_lapse) = (now, now + PORT_CHECK);
        loop {
            let now = Instant::now();
            if now >= next_ports {
                // New pods are tapped (and queried) within PORT_SCAN.
                next_ports = now + PORT_SCAN;
                self.sync_ports(&mut run, now);
            }
            if now >= next_query {
                next_query = now + interval;
                let ports: Vec<u32> = run.ports.keys().copied().collect();
                for p in ports {
                    self.query(p);
                }
            }
            if now >= next_lapse {
                next_lapse = now + PORT_CHECK;
                self.lapse(&mut run, now);
            }
            let n = match run.poller.wait(&mut events, EpollTimeout::from(1000u16)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("multicast: epoll failed, no more multicast: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                let ifindex = ev.data() as u32;
                let got = match (run.ports.get(&ifindex), &run.kernel_tap) {
                    (Some(p), _) => reads.recv(&p.tap, &mut bufs, SLOT, VNET_AT),
                    (None, Some(k)) if Some(ifindex) == t.kernel_device => {
                        reads.recv(k, &mut bufs, SLOT, VNET_AT)
                    }
                    _ => continue,
                };
                // A port going away (its pod deleted) fails its reads until
                // the next scan closes it.
                let Ok(got) = got else { continue };
                for k in 0..got.count {
                    let slot = &mut bufs[k * SLOT..(k + 1) * SLOT];
                    match got.lens[k] {
                        usize::MAX => self.counters.dropped(DropReason::TooBig),
                        len => self.pod_frame(&mut run, &t, slot, VNET_AT + len, ifindex),
                    }
                }
            }
        }
    }

    /// Taps pod ports that appeared (querying each at once, so a pod that
    /// joined before it was tapped reports again) and closes those gone
    /// (their memberships end); taps the kernel path's device while this
    /// node has members.
    fn sync_ports(&self, run: &mut Run, now: Instant) {
        let live: HashMap<u32, String> = pod_interfaces().into_iter().collect();
        let gone: Vec<u32> = run
            .ports
            .keys()
            .filter(|i| !live.contains_key(i))
            .copied()
            .collect();
        let mut changed = Vec::new();
        for i in gone {
            if let Some(p) = run.ports.remove(&i) {
                let _ = run.poller.delete(&p.tap);
            }
            changed.extend(run.members.remove_port(i));
        }
        for (&ifindex, name) in &live {
            if run.ports.contains_key(&ifindex) {
                continue;
            }
            let tap = match GroupSocket::on(ifindex) {
                Ok(tap) => tap,
                Err(e) => {
                    tracing::debug!(port = %name, "multicast: cannot tap the port (yet): {e}");
                    continue;
                }
            };
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, u64::from(ifindex));
            if run.poller.add(&tap, ev).is_err() {
                continue;
            }
            run.ports.insert(
                ifindex,
                PodPort {
                    mac: MacAddr(crate::podnet::pod_mac(name)),
                    bucket: Bucket::new(now, run.limits.pod_rate_pps),
                    tap,
                },
            );
            self.query(ifindex);
        }
        self.publish(run, changed);
    }

    /// The kernel path's device is tapped while this node has member pods
    /// and not otherwise (a tap puts every packet it receives through the
    /// filter).
    fn sync_kernel_tap(run: &mut Run) {
        let Some(dev) = run.kernel_device else { return };
        let want = !run.members.counts().is_empty();
        match (&run.kernel_tap, want) {
            (None, true) => {
                if let Ok(tap) = GroupSocket::on(dev) {
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, u64::from(dev));
                    if run.poller.add(&tap, ev).is_ok() {
                        run.kernel_tap = Some(tap);
                    }
                }
            }
            (Some(tap), false) => {
                let _ = run.poller.delete(tap);
                run.kernel_tap = None;
            }
            _ => {}
        }
    }

    /// Sends an IGMPv3 and an MLDv2 general query to pod port `ifindex`:
    /// the pod answers with its groups within two seconds.
    fn query(&self, ifindex: u32) {
        let mut out = [0u8; group::MLD_QUERY_FRAME_LEN + virtio::HEADER_LEN];
        let mac = MacAddr(crate::podnet::HOST_MAC);
        let v = virtio::HEADER_LEN;
        let _ = VirtioNetHdr::NONE.write(&mut out[..v]);
        for v6 in [false, true] {
            let n = if v6 {
                group::write_mld_query(&mut out[v..], mac, crate::podnet::GATEWAY_V6, 2000, 60)
            } else {
                group::write_igmp_query(&mut out[v..], mac, crate::podnet::GATEWAY_V4, 20, 60)
            };
            if let Ok(n) = n {
                if self.sender.send_to(&out[..v + n], ifindex).is_ok() {
                    WorkerCounters::add(&self.counters.multicast_queries, 1);
                }
            }
        }
    }
}

impl Multicast {
    /// Memberships no report renewed for two query intervals and 10 s
    /// lapse; the taps' overflows are counted.
    fn lapse(&self, run: &mut Run, now: Instant) {
        let taps = run.ports.values().map(|p| &p.tap).chain(&run.kernel_tap);
        let dropped: u64 = taps.filter_map(|t| t.drops().ok()).map(u64::from).sum();
        self.counters.dropped_n(DropReason::SocketOverflow, dropped);
        let ms = |t: Instant| t.saturating_duration_since(run.clock).as_millis() as u64;
        let keep = 2 * u64::from(run.limits.query_interval_s) * 1000 + 10_000;
        let changed = run.members.expire(ms(now).saturating_sub(keep));
        self.publish(run, changed);
    }

    /// Publishes changed group counts: to the workers at once, to the
    /// control plane as events.
    fn publish(&self, run: &mut Run, changed: Vec<members::Changed>) {
        if changed.is_empty() {
            return;
        }
        Self::sync_kernel_tap(run);
        self.groups.local.store(Arc::new(run.members.by_group()));
        if let Some(tx) = &run.publish {
            for c in changed {
                let _ = tx.send(c);
            }
        }
    }

    /// One frame from the socket at `buf[VNET_AT..end]`, from `ifindex`.
    fn pod_frame(&self, run: &mut Run, t: &Thread, buf: &mut [u8], end: usize, ifindex: u32) {
        let now = Instant::now();
        if Some(ifindex) == t.kernel_device {
            return self.kernel_device_frame(run, buf, end);
        }
        let Some(mac) = run.ports.get(&ifindex).map(|p| p.mac) else {
            return; // A port closed since.
        };
        let Ok(hdr) = VirtioNetHdr::parse(&buf[VNET_AT..end]) else {
            return self.counters.dropped(DropReason::BadOffload);
        };
        if buf[FRAME_AT + 6..FRAME_AT + 12] != mac.0 {
            return self.counters.dropped(DropReason::SpoofedSource);
        }
        let Ok(ip) = IpPacket::new_checked(&buf[IP_AT..end]) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let (src, dst, len) = (ip.src(), ip.dst(), ip.total_len());
        let end = IP_AT + len;
        match group::membership(&buf[IP_AT..end]) {
            Ok(Some(report)) => return self.report(run, ifindex, &report, now),
            Ok(None) => {}
            Err(_) => return self.counters.dropped(DropReason::BadMembershipReport),
        }
        if !group::carried(dst) {
            // The pod's own link (mDNS, neighbour discovery, broadcast):
            // datagrams are counted, control messages ignored.
            if is_udp(&buf[IP_AT..end]) {
                self.counters.dropped(DropReason::LinkScope);
            }
            return;
        }
        let snap = Arc::clone(run.reader.load());
        if !snap
            .endpoint(src)
            .is_some_and(|e| e.value.node == *snap.local_node() && e.value.mac == fdb::Mac(mac.0))
        {
            return self.counters.dropped(DropReason::SpoofedSource);
        }
        let rate = run.limits.pod_rate_pps;
        let pod_ok = run
            .ports
            .get_mut(&ifindex)
            .is_some_and(|p| p.bucket.take(now, rate));
        if !pod_ok || !run.node_bucket.take(now, run.limits.node_rate_pps) {
            return self.counters.dropped(DropReason::MulticastRateLimited);
        }
        if hdr.gso_type != GsoType::None {
            return self.counters.dropped(DropReason::BadOffload);
        }
        if hdr.flags & virtio::FLAG_NEEDS_CSUM != 0 {
            let (Some(start), offset) = (hdr.csum_start.checked_sub(14), hdr.csum_offset) else {
                return self.counters.dropped(DropReason::BadOffload);
            };
            if virtio::complete_checksum(&mut buf[IP_AT..end], start.into(), offset.into()).is_err()
            {
                return self.counters.dropped(DropReason::BadOffload);
            }
        }
        if !IpHeader::new_checked(&mut buf[IP_AT..end]).is_ok_and(|mut h| h.decrement_ttl()) {
            return self.counters.dropped(DropReason::TtlExpired);
        }
        if len > t.settings.overlay_mtu {
            return self.counters.dropped(DropReason::TooBig);
        }
        let nodes = self.groups.remote.load();
        let local = self.groups.local.load();
        let to_nodes = nodes.get(&dst).map_or(&[][..], |v| v.as_slice());
        let to_pods = local.get(&dst).map_or(&[][..], |v| v.as_slice());
        if to_nodes.is_empty() && to_pods.iter().all(|p| *p == ifindex) {
            return self.counters.dropped(DropReason::NoGroupMembers);
        }
        self.copy_to_nodes(run, &snap, t, to_nodes, buf, end);
        if to_pods.iter().any(|p| *p != ifindex) {
            // Copies to the other member pods here: the frame rebuilt in
            // front of the packet (its virtio-net header now says nothing
            // is left to finish).
            let at = VNET_AT;
            if write_frame_header(&mut buf[at..IP_AT], dst).is_err() {
                return self.counters.dropped(DropReason::BadInner);
            }
            for &p in to_pods.iter().filter(|p| **p != ifindex) {
                match self.sender.send_to(&buf[at..end], p) {
                    Ok(()) => WorkerCounters::add(&self.counters.multicast_local, 1),
                    Err(_) => self.counters.dropped(DropReason::IoError),
                }
            }
        }
    }

    /// A copy from another node that the kernel path's vxlan device
    /// decapsulated (its sender a member: the device's receive checks): to
    /// this node's member pods, if its source is another node's pod. Seen
    /// here before the kernel's inner-source check, so that check is made
    /// here against the cluster's blocks.
    fn kernel_device_frame(&self, run: &mut Run, buf: &mut [u8], end: usize) {
        let Ok(ip) = IpPacket::new_checked(&buf[IP_AT..end]) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let (src, dst, len) = (ip.src(), ip.dst(), ip.total_len());
        if !group::carried(dst) {
            return;
        }
        let snap = run.reader.load();
        if snap.owner_of(src).is_none_or(|o| o == snap.local_node()) {
            return self.counters.dropped(DropReason::SpoofedInner);
        }
        match self.deliver(buf, IP_AT, IP_AT + len) {
            Ok(n) => {
                self.counters.delivered(1, len as u64);
                WorkerCounters::add(&self.counters.multicast_local, n as u64);
            }
            Err(why) => self.counters.dropped(why),
        }
    }

    /// One copy of the packet at `buf[IP_AT..end]` to each of `nodes`,
    /// encapsulated as the workers encapsulate unicast, all in one
    /// `sendmmsg` (the copies are the same bytes to different addresses).
    fn copy_to_nodes(
        &self,
        run: &mut Run,
        snap: &fdb::Snapshot,
        t: &Thread,
        nodes: &[NodeId],
        buf: &mut [u8],
        end: usize,
    ) {
        let port = match t.underlay {
            Underlay::Vxlan(_) => t.settings.port,
            Underlay::IpIp(_) => 0,
        };
        run.dests.clear();
        for node in nodes.iter().take(raw_batch::MAX_BATCH) {
            match snap
                .node(node)
                .map(|e| e.value.tunnel_address_from(t.settings.tunnels))
            {
                Some(Some(a)) => run.dests.push(SocketAddr::new(a, port)),
                Some(None) => self.counters.dropped(DropReason::NoUnderlay),
                None => self.counters.dropped(DropReason::NoRoute),
            }
        }
        if run.dests.is_empty() {
            return;
        }
        let Ok(ip) = IpPacket::new_checked(&buf[IP_AT..end]) else {
            return self.counters.dropped(DropReason::BadInner);
        };
        let (tos, family, dst) = (encap::ecn::encap_tos(ip.tos()), ip.family(), ip.dst());
        // On a dual-stack underlay the nodes are reached over either family:
        // one sendmmsg per family, from that family's socket.
        run.dests.sort_unstable_by_key(SocketAddr::is_ipv6);
        let v6_from = run.dests.partition_point(|d| d.is_ipv4());
        let (over_v4, over_v6) = run.dests.split_at(v6_from);
        let mut sent = 0;
        match &t.underlay {
            Underlay::Vxlan(sources) => {
                let enc = VxlanEncap {
                    dst_port: t.settings.port,
                    // To the group's MAC, as a Linux vxlan device sends
                    // multicast (a kernel-path peer's group socket picks
                    // the copy up by it): the same bytes for every node.
                    ..VxlanEncap::new(t.settings.vni, t.settings.local_mac, group::mac_for(dst))
                };
                let Ok(at) = enc.encap_payload(buf, IP_AT..end) else {
                    return self.counters.dropped(DropReason::BadInner);
                };
                let via = sources.for_hash(encap::flow::flow_hash(&buf[IP_AT..end]));
                for dests in [over_v4, over_v6].into_iter().filter(|d| !d.is_empty()) {
                    let sock: &std::net::UdpSocket = sources.socket(via, dests[0].ip());
                    sent += run.sends.send_copies(sock, &buf[at..end], dests, tos);
                }
            }
            Underlay::IpIp(over) => {
                for dests in [over_v4, over_v6].into_iter().filter(|d| !d.is_empty()) {
                    let Some(pair) = super::raw_pair_to(over, dests[0].ip()) else {
                        continue;
                    };
                    let sock = pair.for_inner(family);
                    sent += run.sends.send_copies(sock, &buf[IP_AT..end], dests, tos);
                }
            }
        }
        let len = (end - IP_AT) as u64;
        WorkerCounters::add(&self.counters.multicast_copies, sent as u64);
        WorkerCounters::add(&self.counters.multicast_copy_bytes, sent as u64 * len);
        self.counters
            .dropped_n(DropReason::IoError, (run.dests.len() - sent) as u64);
    }

    /// A membership report from the pod at `ifindex`.
    fn report(&self, run: &mut Run, ifindex: u32, report: &group::Report<'_>, now: Instant) {
        WorkerCounters::add(&self.counters.multicast_reports, 1);
        let ms = now.saturating_duration_since(run.clock).as_millis() as u64;
        let mut changed = Vec::new();
        for (g, change) in report.changes() {
            if !group::carried(g) {
                continue;
            }
            match change {
                Change::Join => match run.members.join(ifindex, g, ms) {
                    Ok(c) => changed.extend(c),
                    Err(Refused::PodLimit | Refused::NodeLimit) => {
                        self.counters.dropped(DropReason::GroupLimit)
                    }
                },
                Change::Leave => changed.extend(run.members.leave(ifindex, g)),
            }
        }
        self.publish(run, changed);
    }
}

/// True if the IP packet (checked) carries UDP as its first header.
fn is_udp(packet: &[u8]) -> bool {
    IpPacket::new_checked(packet).is_ok_and(|p| p.protocol() == 17)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0, 100);
        // A burst of as many as the rate, then nothing until time passes.
        assert_eq!((0..150).filter(|_| b.take(t0, 100)).count(), 100);
        assert!(!b.take(t0, 100));
        // 50 ms later: 5 more.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!((0..20).filter(|_| b.take(t1, 100)).count(), 5);
        // Never more than a second's worth, however long it was idle.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..500).filter(|_| b.take(t2, 100)).count(), 100);
    }

    #[test]
    fn copies_to_pods_carry_the_group_mac_and_no_checksum_work() {
        let mut out = [0u8; virtio::HEADER_LEN + 14];
        write_frame_header(&mut out, "239.1.2.3".parse().unwrap()).unwrap();
        let v = virtio::HEADER_LEN;
        assert_eq!(VirtioNetHdr::parse(&out).unwrap(), VirtioNetHdr::NONE);
        assert_eq!(&out[v..v + 6], &[1, 0, 0x5e, 1, 2, 3]);
        assert_eq!(&out[v + 6..v + 12], &crate::podnet::HOST_MAC);
        assert_eq!(&out[v + 12..], &[8, 0]);
        write_frame_header(&mut out, "ff05::1:3".parse().unwrap()).unwrap();
        assert_eq!(&out[v..v + 6], &[0x33, 0x33, 0, 1, 0, 3]);
        assert_eq!(&out[v + 12..], &[0x86, 0xdd]);
    }
}
