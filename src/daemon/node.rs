//! Bringing a node up from its configuration: tables, TUN, kernel routes
//! and sysctls, sockets, workers, stats; and taking it down (uninstall).

use crate::config::{Attach, Autodetect, Config, Encap};
use crate::dataplane::counters::{self, WorkerCounters};
use crate::dataplane::multicast::{
    Limits as MulticastLimits, Multicast, Thread as MulticastThread, Underlay as MulticastUnderlay,
};
use crate::dataplane::ports::Ports;
use crate::dataplane::source_ports::SourcePorts;
use crate::dataplane::sys::{self, udp_gso::UnderlaySocket};
use crate::dataplane::{vtep_mac, Attachment, RawPair, Settings, UnderlayIo, Worker};
use crate::kernel::routes::Routes;
use crate::kernel::Stale;
use encap::vxlan::Vni;
use fdb::{EncapSet, Fdb, Mac, Meta, NodeId, NodeRecord, Source};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

/// A running node: its tables and counters (the threads run until exit).
pub struct Node {
    /// This node's name.
    pub name: String,
    /// The forwarding tables.
    pub fdb: Fdb,
    /// One counter block per worker.
    pub counters: Vec<Arc<WorkerCounters>>,
    /// The control plane, when gossip is enabled.
    pub gossip: Option<super::gossip::Handle>,
    /// What the node runs with (for the admin API).
    pub settings: Settings,
    /// Underlay address.
    pub underlay: IpAddr,
    /// The addresses its tunnels go over: the underlay address, and on a
    /// dual-stack underlay the other family's.
    pub tunnel_addrs: Vec<IpAddr>,
    /// Encapsulation.
    pub encap: Encap,
    /// How remote blocks are routed.
    pub policy: RoutePolicy,
    /// When the node started.
    pub started: std::time::Instant,
    /// The pod ports, in veth attachment.
    pub ports: Option<Arc<Ports>>,
    /// How the last reconciliation of the kernel's state went.
    pub kernel: super::kernel_sync::SharedReport,
    /// The VXLAN source ports (None over IP-in-IP and on the kernel path).
    pub source_ports: Option<SourcePorts>,
    /// The kernel path's device (None: the userspace path).
    pub kernel_path: Option<super::kernel_path::KernelDevice>,
    /// The multicast plane (None: `multicast.enabled` is false).
    pub multicast: Option<Arc<Multicast>>,
}

impl Node {
    /// The counters of threads that are not workers (multicast): counted
    /// in the sums, not per worker.
    pub fn other_counters(&self) -> Vec<Arc<WorkerCounters>> {
        self.multicast
            .iter()
            .map(|m| Arc::clone(&m.counters))
            .collect()
    }
}

fn fail(what: impl std::fmt::Display) -> String {
    what.to_string()
}

/// This node's underlay address, given or autodetected.
pub fn underlay_address(cfg: &Config) -> Result<IpAddr, String> {
    if let Some(a) = cfg.underlay.address {
        return Ok(a);
    }
    match &cfg.underlay.autodetect {
        Autodetect::CanReach(target) => {
            // A connected UDP socket learns the source address the kernel
            // would use; nothing is sent.
            let any: SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let s = UdpSocket::bind(any).map_err(fail)?;
            s.connect(SocketAddr::new(*target, 9))
                .map_err(|e| format!("underlay.autodetect: cannot reach {target}: {e}"))?;
            Ok(s.local_addr().map_err(fail)?.ip())
        }
        method => {
            let re = match method {
                Autodetect::Interface(r) => Some(crate::config::interface_regex(r).map_err(fail)?),
                _ => None,
            };
            let addrs = nix::ifaddrs::getifaddrs().map_err(fail)?;
            for a in addrs {
                let flags = a.flags;
                if !flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                    || flags.contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
                {
                    continue;
                }
                if re
                    .as_ref()
                    .is_some_and(|re| !re.is_match(&a.interface_name))
                    || a.interface_name.starts_with("weft")
                {
                    continue;
                }
                let Some(sa) = a.address else { continue };
                if let Some(v4) = sa.as_sockaddr_in() {
                    return Ok(IpAddr::V4(v4.ip()));
                }
            }
            Err(format!(
                "underlay.autodetect: no address found by {method}; set underlay.address"
            ))
        }
    }
}

/// This node's own addresses: the underlay address, and the first global
/// address of the other family on the same interface, if it has one (a
/// dual-stack node). Both are published: other nodes accept both as this
/// node's host traffic and route pods' traffic to both through the overlay.
pub fn own_addresses(underlay: IpAddr) -> Vec<IpAddr> {
    let mut out = vec![underlay];
    let (Ok((_, ifindex)), Ok(addrs)) = (underlay_link(underlay), nix::ifaddrs::getifaddrs())
    else {
        return out;
    };
    let other = addrs
        .filter(|a| nix::net::if_::if_nametoindex(a.interface_name.as_str()).ok() == Some(ifindex))
        .find_map(|a| {
            let sa = a.address?;
            match underlay {
                IpAddr::V4(_) => sa
                    .as_sockaddr_in6()
                    .map(|v6| v6.ip())
                    .filter(|v6| !v6.is_loopback() && !v6.is_unicast_link_local())
                    .map(IpAddr::V6),
                IpAddr::V6(_) => sa.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())),
            }
        });
    out.extend(other);
    out
}

/// The tables a node starts with: itself (at `own` addresses, the underlay
/// address first), its blocks, its static peers.
pub fn initial_fdb(cfg: &Config, name: &str, own: &[IpAddr]) -> Result<Fdb, String> {
    let record_at = |addrs: &[IpAddr], mac: encap::MacAddr| NodeRecord {
        underlay_v4: addrs.iter().find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        }),
        underlay_v6: addrs.iter().find_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        }),
        vtep_mac: Mac(mac.0),
        encaps: EncapSet {
            vxlan: true,
            ipip: false,
        },
        same_subnet: false,
        tunnel_v6: matches!(addrs.first(), Some(IpAddr::V6(_))),
    };
    let record = |addr: IpAddr, mac: encap::MacAddr| record_at(&[addr], mac);
    let local = NodeId::new(name);
    let fdb = Fdb::new(local.clone(), record_at(own, vtep_mac(name)));
    let stat = Meta::new(Source::Static, 1);
    fdb.update(|t| {
        for b in &cfg.overlay.blocks {
            t.upsert_block(*b, local.clone(), stat)?;
        }
        for p in &cfg.peers {
            let mac = match &p.vtep_mac {
                Some(m) => m.parse().expect("validated with the configuration"),
                None => vtep_mac(&p.node),
            };
            let id = NodeId::new(&p.node);
            t.upsert_node(id.clone(), record(p.underlay, mac), stat)?;
            for b in &p.blocks {
                t.upsert_block(*b, id.clone(), stat)?;
            }
        }
        Ok(())
    })
    .map_err(|e| format!("configuration: {e}"))?;
    Ok(fdb)
}

/// How remote blocks are reached without encapsulation: nodes whose
/// underlay address lies in this node's underlay subnet get a direct route
/// over the underlay interface (CrossSubnet for them; every node with
/// `encap = "none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direct {
    /// This node's underlay subnet.
    pub subnet: ipnet::IpNet,
    /// The underlay interface.
    pub ifindex: u32,
    /// No encapsulation at all (`encap = "none"`): nodes outside the
    /// subnet get no route.
    pub only: bool,
}

/// The device that carries this node's encapsulated traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayDevice {
    /// weftd's TUN (the userspace path); 0 when there is none (veth
    /// attachment without host paths).
    Tun(u32),
    /// The kernel path's vxlan device.
    KernelVxlan {
        /// Its interface index.
        ifindex: u32,
        /// It speaks IPv6 on the underlay.
        v6: bool,
    },
    /// The kernel path's ipip device (IPv4 in IPv4).
    KernelIpip {
        /// Its interface index.
        ifindex: u32,
    },
}

impl OverlayDevice {
    /// The device's interface index.
    pub fn index(self) -> u32 {
        match self {
            OverlayDevice::Tun(i)
            | OverlayDevice::KernelVxlan { ifindex: i, .. }
            | OverlayDevice::KernelIpip { ifindex: i } => i,
        }
    }
}

/// How this node routes remote blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The device encapsulated paths go through.
    pub device: OverlayDevice,
    /// Direct paths, if any.
    pub direct: Option<Direct>,
}

impl RoutePolicy {
    /// The address to route `block` straight to, if `record`'s node is
    /// reachable directly (same subnet, same family as the block).
    pub fn direct_gateway(&self, block: ipnet::IpNet, record: &NodeRecord) -> Option<IpAddr> {
        let d = self.direct?;
        let peer = match block {
            ipnet::IpNet::V4(_) => record.underlay_v4.map(IpAddr::V4),
            ipnet::IpNet::V6(_) => record.underlay_v6.map(IpAddr::V6),
        }?;
        d.subnet.contains(&peer).then_some(peer)
    }
}

/// The subnet and interface index of the interface holding `addr`.
pub fn underlay_link(addr: IpAddr) -> Result<(ipnet::IpNet, u32), String> {
    for a in nix::ifaddrs::getifaddrs().map_err(fail)? {
        let (Some(sa), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        let found = match (sa.as_sockaddr_in(), mask.as_sockaddr_in(), addr) {
            (Some(s), Some(m), IpAddr::V4(want)) if s.ip() == want => {
                ipnet::Ipv4Net::with_netmask(want, m.ip())
                    .ok()
                    .map(|n| ipnet::IpNet::V4(n.trunc()))
            }
            _ => match (sa.as_sockaddr_in6(), mask.as_sockaddr_in6(), addr) {
                (Some(s), Some(m), IpAddr::V6(want)) if s.ip() == want => {
                    ipnet::Ipv6Net::with_netmask(want, m.ip())
                        .ok()
                        .map(|n| ipnet::IpNet::V6(n.trunc()))
                }
                _ => None,
            },
        };
        if let Some(net) = found {
            let index = nix::net::if_::if_nametoindex(a.interface_name.as_str()).map_err(fail)?;
            return Ok((net, index));
        }
    }
    Err(format!("no interface holds the underlay address {addr}"))
}

fn encapsulation(e: Encap) -> encap::Encapsulation {
    match e {
        Encap::Vxlan => encap::Encapsulation::Vxlan,
        Encap::Ipip => encap::Encapsulation::IpIp,
        Encap::None => encap::Encapsulation::None,
    }
}

/// Every worker's underlay sockets, in each family of `tunnel_addrs`
/// (this node's addresses its tunnels go over): for VXLAN a UDP socket each
/// to receive on (SO_REUSEPORT spreads flows over them) and the send
/// sockets of the source ports, shared; for IP-in-IP one shared pair of raw
/// sockets that worker 0 receives on.
fn underlay_ios(
    cfg: &Config,
    name: &str,
    tunnel_addrs: &[IpAddr],
    workers: usize,
) -> Result<Vec<UnderlayIo>, String> {
    if cfg.overlay.encap != Encap::Ipip {
        let receive = (0..workers)
            .map(|_| {
                tunnel_addrs
                    .iter()
                    .map(|a| {
                        sys::underlay::vxlan_socket(*a, cfg.overlay.port)
                            .map(|s| Arc::new(UnderlaySocket::new(s)))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<Vec<_>, String>>()?;
        let range = cfg.overlay.source_ports;
        // "4789-4789" (the VXLAN port alone): every datagram leaves from the
        // VXLAN port, each worker's from its own receive sockets.
        if range.min == range.max && range.min == cfg.overlay.port {
            return Ok(receive
                .into_iter()
                .map(|receive| UnderlayIo::Vxlan {
                    sources: SourcePorts::single(receive.clone(), cfg.overlay.port),
                    receive,
                })
                .collect());
        }
        let sources = SourcePorts::dual(
            sys::underlay::source_sockets(
                tunnel_addrs,
                range.ports(),
                usize::from(cfg.overlay.source_port_count),
                cfg.overlay.port,
                fdb::fnv1a(name.as_bytes()) as u32,
            )?
            .into_iter()
            .map(|(s, port)| {
                let s = s
                    .into_iter()
                    .map(|s| Arc::new(UnderlaySocket::new(s)))
                    .collect();
                (s, port)
            })
            .collect(),
        );
        tracing::info!(
            count = sources.ports().len(),
            first = sources.ports()[0],
            "VXLAN source ports bound"
        );
        return Ok(receive
            .into_iter()
            .map(|receive| UnderlayIo::Vxlan {
                receive,
                sources: sources.clone(),
            })
            .collect());
    }
    let over = tunnel_addrs
        .iter()
        .map(|a| {
            Ok(RawPair {
                v4: Arc::new(sys::underlay::raw_socket(*a, 4)?),
                v6: Arc::new(sys::underlay::raw_socket(*a, 41)?),
                outer_v6: match a {
                    IpAddr::V6(own) => Some(*own),
                    IpAddr::V4(_) => None,
                },
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((0..workers)
        .map(|i| UnderlayIo::IpIp {
            over: over.clone(),
            receive: i == 0,
        })
        .collect())
}

/// The addresses this node's tunnels go over: the underlay address, and
/// with `underlay.dual_stack` the other family's address of `own` too.
pub fn tunnel_addresses(cfg: &Config, own: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = own.iter().take(1).copied().collect();
    if cfg.underlay.dual_stack {
        match own.get(1) {
            Some(other) => out.push(*other),
            None => tracing::warn!(
                "underlay.dual_stack: the underlay interface has no address of the other family; tunnels over {} only",
                own.first().map(|a| if a.is_ipv4() { "IPv4" } else { "IPv6" }).unwrap_or("one family")
            ),
        }
    }
    out
}

/// The families of `addrs`.
pub fn families(addrs: &[IpAddr]) -> fdb::Families {
    fdb::Families {
        v4: addrs.iter().any(IpAddr::is_ipv4),
        v6: addrs.iter().any(IpAddr::is_ipv6),
    }
}

fn sysctl(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("set {path} = {value}: {e}"))
}

/// Brings the node up and starts its workers.
pub fn start(cfg: &Config) -> Result<Node, String> {
    let name = match &cfg.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .map_err(fail)?
            .to_string_lossy()
            .into_owned(),
    };
    let underlay = underlay_address(cfg)?;
    let own = own_addresses(underlay);
    let mut tunnel_addrs = tunnel_addresses(cfg, &own);
    let underlay_mtu = match cfg.underlay.mtu.value() {
        Some(m) => usize::from(*m),
        None => {
            let (_, ifindex) = underlay_link(underlay)?;
            crate::kernel::link_mtu(ifindex).map_err(|e| format!("underlay.mtu = \"auto\": {e}"))?
                as usize
        }
    };
    // The overlay MTU leaves room for the outer header of every family the
    // tunnels may take (IPv6's, on a dual-stack underlay).
    let overlay_mtu_over = |addrs: &[IpAddr]| match cfg.overlay.mtu.value() {
        Some(m) => *m as usize,
        None => {
            let family = if addrs.iter().any(IpAddr::is_ipv6) {
                encap::Family::V6
            } else {
                encap::Family::V4
            };
            encap::mtu::overlay_mtu(underlay_mtu, encapsulation(cfg.overlay.encap), family)
        }
    };
    let workers = match cfg.dataplane.workers.value() {
        Some(w) => usize::from(*w),
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8),
    };
    let kernel_path =
        super::kernel_path::choose(cfg, &name, underlay, overlay_mtu_over(&[underlay]))?;
    if kernel_path.is_some() && tunnel_addrs.len() > 1 {
        // The kernel's vxlan device has one local address.
        tracing::warn!("underlay.dual_stack: the kernel data path tunnels over {underlay} only");
        tunnel_addrs.truncate(1);
    }
    let overlay_mtu = overlay_mtu_over(&tunnel_addrs);
    let fdb = initial_fdb(cfg, &name, &own)?;
    let settings = Settings {
        vni: Vni::new(cfg.overlay.vni).ok_or("overlay.vni out of range")?,
        port: cfg.overlay.port,
        local_mac: vtep_mac(&name),
        overlay_mtu,
        tunnels: families(&tunnel_addrs),
        icmp_source_v4: crate::podnet::GATEWAY_V4,
        icmp_source_v6: crate::podnet::GATEWAY_V6,
        busy_poll: std::time::Duration::from_micros(cfg.dataplane.busy_poll_us.into()),
    };
    tracing::info!(node = %name, %underlay, underlay_mtu, overlay_mtu, workers, encap = %cfg.overlay.encap, attach = %cfg.dataplane.attach, dual_stack = tunnel_addrs.len() > 1, "starting");
    let kernel_report = super::kernel_sync::SharedReport::default();
    let host_net = host_net(cfg, kernel_path.as_ref());
    let (queues, policy, applied) = if let Some(k) = &kernel_path {
        // The kernel path: its device carries everything; weftd programs
        // it and runs no workers.
        let policy = RoutePolicy {
            device: if k.ipip {
                OverlayDevice::KernelIpip { ifindex: k.ifindex }
            } else {
                OverlayDevice::KernelVxlan {
                    ifindex: k.ifindex,
                    v6: k.v6,
                }
            },
            direct: direct_paths(cfg, underlay)?,
        };
        // An adopted device is carrying traffic on what the previous run
        // programmed: keep it all until the control plane has caught up.
        let stale = if !k.created && cfg.gossip.enabled {
            Stale::Keep
        } else {
            Stale::Remove
        };
        let applied = program_kernel(&fdb, &policy, &host_net, stale, &kernel_report)?;
        (Vec::new(), policy, Some(applied))
    } else if host_net.local_via_tun || cfg.dataplane.attach == Attach::Tun {
        // The TUN and the kernel state: always in TUN attachment; in veth
        // attachment as the host port, unless the host must stay untouched.
        let (queues, policy, applied) = attach_tun(
            cfg,
            &fdb,
            underlay,
            overlay_mtu,
            workers,
            &host_net,
            &kernel_report,
        )?;
        (queues, policy, Some(applied))
    } else {
        let policy = RoutePolicy {
            device: OverlayDevice::Tun(0),
            direct: None,
        };
        (Vec::new(), policy, None)
    };
    let queues: Vec<Arc<tun_rs::SyncDevice>> = queues.into_iter().map(Arc::new).collect();
    let (attachments, ports) = match cfg.dataplane.attach {
        _ if kernel_path.is_some() => (Vec::new(), None),
        Attach::Tun => {
            let all = queues.into_iter().map(Attachment::Tun).collect::<Vec<_>>();
            (all, None)
        }
        Attach::Veth => {
            let ports = Arc::new(
                Ports::new(workers, cfg.dataplane.ports_file.clone())
                    .map_err(|e| format!("dataplane: epoll: {e}"))?,
            );
            let mut queues = queues.into_iter();
            let all = (0..workers)
                .map(|_| Attachment::Veth {
                    ports: Arc::clone(&ports),
                    host: queues.next(),
                })
                .collect();
            (all, Some(ports))
        }
    };
    let mut counters = Vec::new();
    let ios = if attachments.is_empty() {
        Vec::new()
    } else {
        underlay_ios(cfg, &name, &tunnel_addrs, attachments.len())?
    };
    let source_ports = ios.first().and_then(|io| match io {
        UnderlayIo::Vxlan { sources, .. } => Some(sources.clone()),
        UnderlayIo::IpIp { .. } => None,
    });
    let (multicast, multicast_underlay) = match multicast_plane(cfg, underlay, ios.first())? {
        Some((m, u)) => (Some(m), Some(u)),
        None => (None, None),
    };
    for (i, (attach, io)) in attachments.into_iter().zip(ios).enumerate() {
        let c = Arc::new(WorkerCounters::default());
        counters.push(Arc::clone(&c));
        Worker {
            attach,
            underlay: io,
            fdb: fdb.clone(),
            settings: settings.clone(),
            counters: c,
            multicast: multicast.clone(),
        }
        .spawn(i)
        .map_err(fail)?;
    }
    let (groups_tx, groups_rx) = std::sync::mpsc::channel();
    if let (Some(m), Some(underlay)) = (&multicast, multicast_underlay) {
        let thread = MulticastThread {
            fdb: fdb.clone(),
            settings: settings.clone(),
            underlay,
            publish: cfg.gossip.enabled.then_some(groups_tx),
            kernel_device: kernel_path.as_ref().map(|k| k.ifindex),
        };
        let mc = &cfg.multicast;
        let limits = MulticastLimits {
            max_groups_per_pod: mc.max_groups_per_pod,
            max_groups: mc.max_groups,
            pod_rate_pps: mc.pod_rate_pps,
            node_rate_pps: mc.node_rate_pps,
            query_interval_s: mc.query_interval_s,
        };
        m.spawn(thread, limits).map_err(fail)?;
    }
    let gossip = if cfg.gossip.enabled {
        let (tx, rx) = std::sync::mpsc::channel();
        let underlay = *own.first().ok_or("no underlay address")?;
        let gossip_addr = std::net::SocketAddr::new(underlay, cfg.gossip.port);
        let (requests, requests_rx) = super::gossip::block_requests(gossip_addr);
        super::endpoints::serve(
            &cfg.cni_socket,
            fdb.clone(),
            Some((tx, requests)),
            ports.clone(),
            &cfg.cni_state_dir,
        )?;
        Some(super::gossip::start(
            cfg,
            &name,
            &own,
            vtep_mac(&name).0,
            overlay_mtu,
            fdb.clone(),
            super::gossip::Inputs {
                endpoints: rx,
                block_requests: requests_rx,
                group_counts: groups_rx,
                multicast: multicast.clone(),
                data_path: if kernel_path.is_some() {
                    "kernel"
                } else {
                    "userspace"
                },
                tunnel_addrs: tunnel_addrs.clone(),
            },
        )?)
    } else {
        super::endpoints::serve(
            &cfg.cni_socket,
            fdb.clone(),
            None,
            ports.clone(),
            &cfg.cni_state_dir,
        )?;
        None
    };
    if let Some(applied) = applied {
        let settled = settled(gossip.as_ref(), cfg.gossip.sync_interval_ms);
        super::kernel_sync::spawn(
            fdb.clone(),
            policy,
            host_net,
            applied,
            settled,
            kernel_report.clone(),
        )?;
    }
    if let Some(path) = cfg.dataplane.stats_file.clone() {
        let counters = counters.clone();
        let others: Vec<Arc<WorkerCounters>> =
            multicast.iter().map(|m| Arc::clone(&m.counters)).collect();
        let gossip = gossip.clone();
        let kernel = kernel_path.clone();
        std::thread::Builder::new()
            .name("weft-stats".into())
            .spawn(move || {
                // The kernel path's counters take a netlink dump and an nft
                // run: read every 5 s, not every write.
                let mut kernel_stats = None;
                for i in 0u64.. {
                    if i % 10 == 0 {
                        kernel_stats = kernel.as_ref().map(super::kernel_path::stats);
                    }
                    write_stats(
                        &path,
                        (&counters, &others),
                        gossip.as_ref(),
                        kernel_stats.clone(),
                    );
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            })
            .map_err(fail)?;
    }
    Ok(Node {
        name,
        fdb,
        counters,
        gossip,
        settings,
        underlay,
        tunnel_addrs,
        encap: cfg.overlay.encap,
        policy,
        started: std::time::Instant::now(),
        ports,
        kernel: kernel_report,
        source_ports,
        kernel_path,
        multicast,
    })
}

/// The multicast plane, if `multicast.enabled`, and the sockets its copies
/// to other nodes leave from: the workers' (`first` of their underlay
/// sockets), or on the kernel path (no workers) a UDP socket of its own,
/// to the peers' VXLAN port.
fn multicast_plane(
    cfg: &Config,
    underlay: IpAddr,
    first: Option<&UnderlayIo>,
) -> Result<Option<(Arc<Multicast>, MulticastUnderlay)>, String> {
    if !cfg.multicast.enabled {
        return Ok(None);
    }
    let sockets = match first {
        Some(UnderlayIo::Vxlan { sources, .. }) => MulticastUnderlay::Vxlan(sources.clone()),
        Some(UnderlayIo::IpIp { over, .. }) => MulticastUnderlay::IpIp(over.clone()),
        None => {
            let sock = std::net::UdpSocket::bind(std::net::SocketAddr::new(underlay, 0))
                .map_err(|e| format!("multicast.enabled: cannot open a send socket: {e}"))?;
            let port = sock.local_addr().map_err(fail)?.port();
            MulticastUnderlay::Vxlan(SourcePorts::single(
                vec![Arc::new(UnderlaySocket::new(sock))],
                port,
            ))
        }
    };
    let plane = Multicast::open()
        .map_err(|e| format!("multicast.enabled: cannot open a packet socket: {e}"))?;
    Ok(Some((plane, sockets)))
}

/// The longest a restarted node keeps kernel entries fdb lacks, waiting
/// for its control plane (a node that finds no cluster stops waiting then).
const HOLD_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// When the control plane has caught up: three anti-entropy rounds after
/// joining (every record of the cluster has had time to arrive), or
/// [`HOLD_MAX`] after start.
fn settled(
    gossip: Option<&super::gossip::Handle>,
    sync_interval_ms: u64,
) -> super::kernel_sync::Settled {
    let Some(g) = gossip else {
        return Box::new(|| true);
    };
    let status = Arc::clone(&g.status);
    let started = std::time::Instant::now();
    let after = std::time::Duration::from_millis(3 * sync_interval_ms);
    Box::new(move || {
        let joined = status.lock().expect("not poisoned").join_seconds;
        let elapsed = started.elapsed();
        joined
            .is_some_and(|s| elapsed.saturating_sub(std::time::Duration::from_secs_f64(s)) >= after)
            || elapsed >= HOLD_MAX
    })
}

/// What the kernel side of the pod network needs from the configuration.
fn host_net(
    cfg: &Config,
    kernel_path: Option<&super::kernel_path::KernelDevice>,
) -> super::kernel_sync::HostNet {
    super::kernel_sync::HostNet {
        pools: cfg.overlay.pools.clone(),
        nat_pools: cfg.overlay.nat_pools(),
        local_via_tun: cfg.dataplane.attach == Attach::Veth && cfg.dataplane.veth_host_paths,
        kernel_device: kernel_path.map(|k| super::kernel_sync::KernelNames {
            device: k.name.clone(),
            port: cfg.overlay.port,
            underlay_device: k.underlay_device.clone(),
            checks: cfg.dataplane.kernel_checks,
        }),
        nodes_via_overlay: cfg.overlay.pod_to_node_via_overlay,
    }
}

/// Routes straight over the underlay (CrossSubnet, encap none), if any.
fn direct_paths(cfg: &Config, underlay: IpAddr) -> Result<Option<Direct>, String> {
    if cfg.overlay.encap == Encap::None || cfg.overlay.cross_subnet {
        let (subnet, ifindex) = underlay_link(underlay)?;
        Ok(Some(Direct {
            subnet,
            ifindex,
            only: cfg.overlay.encap == Encap::None,
        }))
    } else {
        Ok(None)
    }
}

/// Forwarding on, then the kernel state reconciled once (returned as
/// applied). Without its routes the node carries nothing: that is fatal. A
/// NAT table or receive checks nft refused are not: pod to pod still works,
/// and the failure is reported (logs, `weftctl status`) and retried.
fn program_kernel(
    fdb: &Fdb,
    policy: &RoutePolicy,
    host_net: &super::kernel_sync::HostNet,
    stale: Stale,
    report: &super::kernel_sync::SharedReport,
) -> Result<Option<super::kernel_sync::Desired>, String> {
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    let _ = sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");
    let want = super::kernel_sync::desired(&fdb.snapshot(), policy, host_net);
    super::kernel_sync::apply(&want, policy.device.index(), None, stale, report);
    let errors = report.lock().expect("not poisoned").errors.clone();
    for concern in ["routes", "netlink", "vxlan_device"] {
        if let Some(e) = errors.get(concern) {
            return Err(format!("kernel {concern}: {e}"));
        }
    }
    Ok((stale == Stale::Remove).then_some(want))
}

/// The kernel side: the TUN queues, the kernel state reconciled
/// (`kernel_sync`; returned as applied), forwarding on.
fn attach_tun(
    cfg: &Config,
    fdb: &Fdb,
    underlay: IpAddr,
    overlay_mtu: usize,
    workers: usize,
    host_net: &super::kernel_sync::HostNet,
    report: &super::kernel_sync::SharedReport,
) -> Result<
    (
        Vec<tun_rs::SyncDevice>,
        RoutePolicy,
        Option<super::kernel_sync::Desired>,
    ),
    String,
> {
    let queues =
        crate::dataplane::sys::tun::open(&cfg.overlay.tun_name, overlay_mtu as u16, workers)
            .map_err(|e| format!("TUN device {}: {e}", cfg.overlay.tun_name))?;
    let tun_index = queues[0].if_index().map_err(fail)?;
    let policy = RoutePolicy {
        device: OverlayDevice::Tun(tun_index),
        direct: direct_paths(cfg, underlay)?,
    };
    let want = program_kernel(fdb, &policy, host_net, Stale::Remove, report)?;
    Ok((queues, policy, want))
}

/// Writes the summed counters (of the workers and of `others`, threads
/// that are not workers) as JSON, atomically (temp file + rename).
pub fn write_stats(
    path: &std::path::Path,
    (workers, others): (&[Arc<WorkerCounters>], &[Arc<WorkerCounters>]),
    gossip: Option<&super::gossip::Handle>,
    kernel: Option<serde_json::Value>,
) {
    fn refs(c: &[Arc<WorkerCounters>]) -> Vec<&WorkerCounters> {
        c.iter().map(|c| c.as_ref()).collect()
    }
    let mut v = counters::snapshot_refs(&refs(workers), &refs(others));
    if let Some(g) = gossip {
        v["gossip"] = g.status.lock().expect("not poisoned").to_json();
    }
    if let Some(k) = kernel {
        v["kernel_path"] = k;
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, v.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Removes everything weft added to the kernel: its routes, rules, TUN,
/// NAT table, and the kernel path's device and receive checks.
pub fn uninstall(cfg: &Config) -> Result<String, String> {
    let tun = cfg.overlay.tun_name.clone();
    let removed = crate::kernel::with_netlink(async move |h| {
        let n = Routes::new(h.clone()).remove_all().await?;
        crate::kernel::rules::Rules::new(h.clone())
            .remove_all()
            .await?;
        crate::kernel::remove_link(&h, &tun).await?;
        Ok::<usize, crate::kernel::KernelError>(n)
    })
    .map_err(|e| e.to_string())?;
    let nat = crate::kernel::nat::remove().map_err(|e| e.to_string())?;
    let kernel_path = super::kernel_path::remove(cfg)?;
    let mut also: String = kernel_path.iter().map(|k| format!("{k}, ")).collect();
    if nat {
        also.push_str("the NAT table, ");
    }
    Ok(format!(
        "removed {removed} routes, weft's rules, {also}and the TUN device {}",
        cfg.overlay.tun_name
    ))
}
