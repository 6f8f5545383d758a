//! What the node's kernel should hold for the pod network, derived from
//! fdb, and the thread that keeps it so: routes (blocks, nodes' own
//! addresses), policy rules, the TUN's addresses and the outgoing-NAT
//! table. One pure function ([`desired`]) decides; [`apply`] reconciles each
//! concern through its `kernel::` module (desired against actual: a restart
//! neither duplicates nor loses anything).
//!
//! Host paths (the Kubernetes network model: nodes and pods reach each
//! other without NAT):
//! - host → remote pod: the block's route through the TUN carries the
//!   node's own address of that family as preferred source (its underlay
//!   address; for the other family, the network address of its first
//!   block of that family, put on the TUN), which the receiving node
//!   accepts as this node's (`fdb::Snapshot::may_send_from`);
//! - pod → remote node: a rule sends pods' traffic to weft's table, where
//!   every remote node's own address routes through the TUN, so it travels
//!   the overlay both ways.
//!
//! The kernel path (`dataplane.mode`) puts the same routes through weft's
//! vxlan device instead, each via its node's VTEP address (onlink), and adds
//! what the device needs to reach a VTEP: a permanent neighbour (VTEP
//! address → VTEP MAC) and FDB entry (VTEP MAC → underlay address) per
//! remote node, and the receive checks (`kernel::vxlan_guard`). A remote
//! block's VTEP address is its network address, which IPAM never hands out.
//! With IP-in-IP the kernel path's device is an ipip device: each route
//! goes via its node's underlay address (onlink), which the kernel takes as
//! the tunnel's far end; nothing else is programmed (no receive checks:
//! see the README's kernel path section).

use super::node::{Direct, OverlayDevice, RoutePolicy};
use crate::kernel::nat::NatPlan;
use crate::kernel::routes::{Routes, WeftRoute};
use crate::kernel::rules::{Rule, Rules};
use crate::kernel::vxlan::{self, MacBytes};
use crate::kernel::vxlan_guard::GuardPlan;
use crate::kernel::Stale;
use fdb::{Fdb, NodeRecord, Snapshot};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What the pod network needs from this node, besides fdb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNet {
    /// The pod pools.
    pub pools: Vec<IpNet>,
    /// The pools whose pods' traffic leaving the cluster is masqueraded.
    pub nat_pools: Vec<IpNet>,
    /// Veth attachment with host paths: this node's own blocks route to
    /// the TUN (the host port; weftd writes to the pods' veths) instead of
    /// a blackhole (TUN attachment: the CNI plugin's host routes carry
    /// pods' addresses).
    pub local_via_tun: bool,
    /// The kernel path (None: userspace).
    pub kernel_device: Option<KernelNames>,
    /// Pods reach other nodes through the overlay (routes in weft's table
    /// and the rules that send pods' traffic there); false: over the
    /// underlay, no rule.
    pub nodes_via_overlay: bool,
}

/// What the kernel path's receive checks name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNames {
    /// The vxlan device.
    pub device: String,
    /// The VXLAN port.
    pub port: u16,
    /// The underlay interface.
    pub underlay_device: String,
    /// Write the receive checks (`dataplane.kernel_checks`).
    pub checks: bool,
}

/// What the kernel path's vxlan device needs besides routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VtepState {
    /// Permanent neighbours: remote VTEP address → VTEP MAC.
    pub neighbours: BTreeMap<IpAddr, MacBytes>,
    /// FDB entries: remote VTEP MAC → the node's underlay address.
    pub fdb: BTreeMap<MacBytes, IpAddr>,
    /// The receive checks.
    pub guard: GuardPlan,
    /// Whether they are written (`dataplane.kernel_checks`); off, the
    /// table is removed.
    pub checks: bool,
}

/// The kernel state the pod network needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// weft's routes (main table and weft's table).
    pub routes: BTreeSet<WeftRoute>,
    /// Traffic that looks up weft's table first.
    pub rules: BTreeSet<Rule>,
    /// The overlay device's own addresses (the TUN's, or the kernel
    /// path's vxlan device's).
    pub tun_addrs: BTreeSet<IpAddr>,
    /// The outgoing-NAT table.
    pub nat: NatPlan,
    /// The kernel path's neighbours, FDB and receive checks.
    pub vtep: Option<VtepState>,
}

/// How the last reconciliation went, for `weftctl status` and the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The last failure per concern ("nat", "routes", ...), if the last
    /// attempt failed.
    pub errors: std::collections::BTreeMap<&'static str, String>,
}

/// Shared report.
pub type SharedReport = Arc<Mutex<Report>>;

fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

/// The prefix a rule names for a node address: its /16 (IPv4) or /48
/// (IPv6), so that a few rules cover the nodes of a cluster (they sit in a
/// few subnets) and weft's table sorts out the exact addresses.
fn covering(a: IpAddr) -> IpNet {
    let len = if a.is_ipv4() { 16 } else { 48 };
    IpNet::new(a, len).expect("a valid length").trunc()
}

/// The node's address of each family for the host's traffic to pods:
/// its own (underlay-interface) address of that family, else the network
/// address of its first block of that family (which IPAM never hands out).
fn host_sources(snap: &Snapshot) -> (Option<IpAddr>, Option<IpAddr>) {
    let local = snap.local_node();
    let first_block = |v4: bool| {
        snap.blocks()
            .filter(|(b, e)| e.value.node == *local && b.addr().is_ipv4() == v4)
            .map(|(b, _)| b.network())
            .min()
    };
    let own = snap.node(local).map(|e| &e.value);
    (
        own.and_then(|r| r.underlay_v4)
            .map(IpAddr::V4)
            .or_else(|| first_block(true)),
        own.and_then(|r| r.underlay_v6)
            .map(IpAddr::V6)
            .or_else(|| first_block(false)),
    )
}

/// The node's underlay address in the family of the local underlay (the
/// kernel path's device speaks one family).
fn underlay_of(record: &NodeRecord, v6: bool) -> Option<IpAddr> {
    if v6 {
        record.underlay_v6.map(IpAddr::V6)
    } else {
        record.underlay_v4.map(IpAddr::V4)
    }
}

/// Each remote node's VTEP address per family on the kernel path: the
/// network address of its lowest block of that family.
fn vtep_addresses(snap: &Snapshot) -> BTreeMap<(fdb::NodeId, bool), IpAddr> {
    let mut out: BTreeMap<(fdb::NodeId, bool), IpAddr> = BTreeMap::new();
    for (b, owner) in snap.blocks() {
        let key = (owner.value.node.clone(), b.addr().is_ipv4());
        let a = b.network();
        out.entry(key)
            .and_modify(|cur| *cur = (*cur).min(a))
            .or_insert(a);
    }
    out
}

/// The kernel path's device, as `desired` routes through it.
#[derive(Debug, Clone, Copy)]
enum KernelTunnel {
    /// A vxlan device over an IPv4 (or IPv6) underlay.
    Vxlan { ifindex: u32, v6: bool },
    /// An ipip device.
    Ipip { ifindex: u32 },
}

/// The kernel state for `snap` under `policy`.
pub fn desired(snap: &Snapshot, policy: &RoutePolicy, host: &HostNet) -> Desired {
    let local = snap.local_node();
    let (src_v4, src_v6) = host_sources(snap);
    let mut d = Desired::default();
    let kernel = match (policy.device, &host.kernel_device) {
        (OverlayDevice::KernelVxlan { ifindex, v6 }, Some(names)) => {
            let own = snap.node(local).map(|e| &e.value);
            d.vtep = Some(VtepState {
                guard: GuardPlan {
                    port: names.port,
                    device: names.device.clone(),
                    underlay_device: names.underlay_device.clone(),
                    local: own
                        .map(|r| {
                            let v4 = r.underlay_v4.map(IpAddr::V4);
                            v4.into_iter()
                                .chain(r.underlay_v6.map(IpAddr::V6))
                                .collect()
                        })
                        .unwrap_or_default(),
                    ..GuardPlan::default()
                },
                checks: names.checks,
                ..VtepState::default()
            });
            Some(KernelTunnel::Vxlan { ifindex, v6 })
        }
        (OverlayDevice::KernelIpip { ifindex }, Some(_)) => Some(KernelTunnel::Ipip { ifindex }),
        _ => None,
    };
    let vteps = vtep_addresses(snap);
    for a in [src_v4, src_v6].into_iter().flatten() {
        if snap.node_at(a) != Some(local) {
            d.tun_addrs.insert(a);
        }
    }
    for (dst, owner) in snap.blocks() {
        let src = if dst.addr().is_ipv4() { src_v4 } else { src_v6 };
        if owner.value.node == *local {
            d.routes.insert(if host.local_via_tun {
                WeftRoute::Device {
                    dst,
                    ifindex: policy.device.index(),
                    src,
                }
            } else {
                WeftRoute::Blackhole { dst }
            });
            continue;
        }
        let Some(record) = snap.node(&owner.value.node).map(|e| &e.value) else {
            continue;
        };
        match (policy.direct_gateway(dst, record), policy.direct, kernel) {
            (Some(gateway), Some(direct), _) => {
                d.routes.insert(WeftRoute::Via {
                    dst,
                    gateway,
                    ifindex: direct.ifindex,
                });
            }
            // encap none: a node outside the subnet is not reachable.
            (None, Some(Direct { only: true, .. }), _) => {}
            (_, _, Some(KernelTunnel::Ipip { ifindex })) => {
                // IPv4 blocks, via the node's underlay address: the route's
                // gateway is the tunnel's far end.
                let (true, Some(peer)) = (dst.addr().is_ipv4(), record.underlay_v4) else {
                    continue;
                };
                d.routes.insert(WeftRoute::Onlink {
                    dst,
                    gateway: IpAddr::V4(peer),
                    ifindex,
                    src,
                });
            }
            (_, _, Some(KernelTunnel::Vxlan { ifindex, v6 })) => {
                // A node without an address of the device's family cannot
                // be reached by it.
                let (Some(vtep), Some(peer)) = (d.vtep.as_mut(), underlay_of(record, v6)) else {
                    continue;
                };
                let gateway = dst.network();
                let mac = record.vtep_mac.0;
                vtep.neighbours.insert(gateway, mac);
                vtep.fdb.insert(mac, peer);
                vtep.guard.sources.entry(mac).or_default().insert(dst);
                d.routes.insert(WeftRoute::Onlink {
                    dst,
                    gateway,
                    ifindex,
                    src,
                });
            }
            _ => {
                d.routes.insert(WeftRoute::Device {
                    dst,
                    ifindex: policy.device.index(),
                    src,
                });
            }
        }
    }
    for (id, e) in snap.nodes() {
        let record = &e.value;
        let addrs = record
            .underlay_v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(record.underlay_v6.map(IpAddr::V6));
        for a in addrs {
            d.nat.cluster.insert(host_net(a));
            if id == local {
                continue;
            }
            if let Some(vtep) = d.vtep.as_mut() {
                vtep.guard.members.insert(a, record.vtep_mac.0);
                vtep.guard
                    .sources
                    .entry(record.vtep_mac.0)
                    .or_default()
                    .insert(host_net(a));
            }
            // Nodes reached directly (same subnet) need nothing: pods'
            // packets to them go straight over the underlay, as the answers
            // come back. encap none reaches no other node.
            let direct = policy.direct_gateway(host_net(a), record).is_some()
                || policy.direct.is_some_and(|d| d.only);
            if direct || !host.nodes_via_overlay {
                continue;
            }
            let gateway = match kernel {
                // Through the ipip device to the node's own IPv4 address.
                Some(KernelTunnel::Ipip { .. }) if a.is_ipv4() => Some(a),
                Some(KernelTunnel::Ipip { .. }) => continue,
                // Through the node's VTEP address of this family, if the
                // device reaches the node at all.
                Some(KernelTunnel::Vxlan { v6, .. }) => match (
                    vteps.get(&(id.clone(), a.is_ipv4())),
                    underlay_of(record, v6),
                ) {
                    (Some(vtep), Some(_)) => Some(*vtep),
                    _ => continue,
                },
                None => None,
            };
            d.routes.insert(WeftRoute::NodeHost {
                dst: host_net(a),
                ifindex: policy.device.index(),
                gateway,
            });
        }
    }
    // Pods' traffic towards where the nodes live consults weft's table;
    // pod-to-pod traffic never does (see `kernel::rules`).
    let node_nets: BTreeSet<IpNet> = d
        .routes
        .iter()
        .filter_map(|r| match r {
            WeftRoute::NodeHost { dst, .. } => Some(covering(dst.addr())),
            _ => None,
        })
        .collect();
    d.rules = host
        .pools
        .iter()
        .flat_map(|from| {
            node_nets
                .iter()
                .filter(|to| to.addr().is_ipv4() == from.addr().is_ipv4())
                .map(|to| Rule {
                    from: *from,
                    to: *to,
                })
        })
        .collect();
    d.nat.cluster.extend(host.pools.iter().copied());
    d.nat.masquerade = host.nat_pools.iter().copied().collect();
    d
}

/// Makes the kernel hold `want`. `last` is what the previous call applied
/// (None at start: everything is checked against the kernel); the NAT table
/// is rewritten only when its plan changed or its last write failed.
/// Routes, rules and addresses are reconciled against the kernel every
/// time (cheap, and it repairs what someone else removed). A failing
/// concern is reported and the others still applied.
///
/// With [`Stale::Keep`] (a restarted weftd adopting the kernel path's
/// device before its control plane caught up) nothing is deleted and the
/// NAT table and receive checks are left as the previous run wrote them.
pub fn apply(
    want: &Desired,
    device_index: u32,
    last: Option<&Desired>,
    stale: Stale,
    report: &SharedReport,
) {
    let mut errors = std::collections::BTreeMap::new();
    let kernel = crate::kernel::with_netlink(async |h| {
        // Addresses first: an IPv6 route's preferred source must exist.
        let a = crate::kernel::addresses::reconcile(&h, device_index, &want.tun_addrs).await;
        // The kernel path: a VTEP's FDB entry and neighbour before the
        // routes that lead to it.
        let v: Result<_, crate::kernel::KernelError> = match &want.vtep {
            Some(vtep) => match vxlan::reconcile_fdb(&h, device_index, &vtep.fdb, stale).await {
                Ok(f) => vxlan::reconcile_neighbours(&h, device_index, &vtep.neighbours, stale)
                    .await
                    .map(|n| Some((f, n))),
                Err(e) => Err(e),
            },
            None => Ok(None),
        };
        let r = Routes::new(h.clone()).reconcile(&want.routes, stale).await;
        let p = Rules::new(h).reconcile(&want.rules, stale).await;
        Ok::<_, crate::kernel::KernelError>((a, v, r, p))
    });
    match kernel {
        Ok((a, v, r, p)) => {
            if let Err(e) = a {
                errors.insert("tun_addresses", e.to_string());
            }
            match v {
                Ok(Some((f, n)))
                    if f != vxlan::Changes::default() || n != vxlan::Changes::default() =>
                {
                    tracing::info!(
                        fdb_installed = f.installed,
                        fdb_removed = f.removed,
                        neighbours_installed = n.installed,
                        neighbours_removed = n.removed,
                        "vxlan device reconciled"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    errors.insert("vxlan_device", e.to_string());
                }
            }
            match r {
                Ok(r) if !r.installed.is_empty() || !r.removed.is_empty() => tracing::info!(
                    installed = r.installed.len(),
                    removed = r.removed.len(),
                    kept = r.kept,
                    "kernel routes reconciled"
                ),
                Ok(_) => {}
                Err(e) => {
                    errors.insert("routes", e.to_string());
                }
            }
            if let Err(e) = p {
                errors.insert("rules", e.to_string());
            }
        }
        Err(e) => {
            errors.insert("netlink", e.to_string());
        }
    }
    let (nat_failed_before, guard_failed_before) = {
        let r = report.lock().expect("not poisoned");
        (
            r.errors.contains_key("nat"),
            r.errors.contains_key("vxlan_guard"),
        )
    };
    if stale == Stale::Keep {
        record(errors, report);
        return;
    }
    let last_vtep = last.and_then(|l| l.vtep.as_ref());
    if want.vtep.as_ref().is_some_and(|v| !v.checks) && last_vtep.is_none_or(|v| v.checks) {
        if let Err(e) = crate::kernel::vxlan_guard::remove() {
            errors.insert("vxlan_guard", e.to_string());
        }
    }
    let guard = want.vtep.as_ref().filter(|v| v.checks).map(|v| &v.guard);
    if let Some(plan) = guard {
        let previous = last.and_then(|l| l.vtep.as_ref()).map(|v| &v.guard);
        if previous != Some(plan) || guard_failed_before {
            // After a failure, what the kernel holds is unknown: replace it.
            let previous = previous.filter(|_| !guard_failed_before);
            match plan.apply(previous) {
                Ok(()) => tracing::info!(
                    members = plan.members.len(),
                    sources = plan.sources.len(),
                    "vxlan receive checks written"
                ),
                Err(e) => {
                    errors.insert("vxlan_guard", e.to_string());
                }
            }
        }
    }
    if last.map(|l| &l.nat) != Some(&want.nat) || nat_failed_before {
        match want.nat.apply() {
            Ok(()) => tracing::info!(
                masquerade = want.nat.masquerade.len(),
                cluster = want.nat.cluster.len(),
                "outgoing NAT table written"
            ),
            Err(e) => {
                errors.insert("nat", e.to_string());
            }
        }
    }
    record(errors, report);
}

fn record(errors: BTreeMap<&'static str, String>, report: &SharedReport) {
    for (what, e) in &errors {
        tracing::error!(concern = what, "kernel state: {e}");
    }
    report.lock().expect("not poisoned").errors = errors;
}

/// Whether the control plane has caught up with the cluster since start,
/// so that what fdb lacks is really gone (see [`Stale`]).
pub type Settled = Box<dyn Fn() -> bool + Send>;

/// Keeps the kernel equal to fdb: every change (from gossip or the CNI
/// plugin) is followed, after a short pause that gathers a burst into one
/// pass, by [`apply`]; a pass that failed is retried every 5 s. Until
/// `settled` says so, passes only add ([`Stale::Keep`]); the first pass
/// after it deletes what is stale. `applied` is what start-up applied
/// (None if it kept stale entries).
pub fn spawn(
    fdb: Fdb,
    policy: RoutePolicy,
    host: HostNet,
    applied: Option<Desired>,
    settled: Settled,
    report: SharedReport,
) -> Result<(), String> {
    let sub = fdb.subscribe(4096);
    std::thread::Builder::new()
        .name("weft-kernel".into())
        .spawn(move || {
            let mut sub = sub;
            let mut last = applied;
            let mut holding = last.is_none();
            loop {
                let wait = if holding { 1 } else { 5 };
                let changed = sub
                    .next_timeout(std::time::Duration::from_secs(wait))
                    .is_some();
                let failed = !report.lock().expect("not poisoned").errors.is_empty();
                let released = holding && settled();
                if released {
                    holding = false;
                    tracing::info!("control plane settled: stale kernel entries may go");
                }
                if !changed && !failed && !released {
                    continue;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                while sub.try_next().is_some() {}
                let want = desired(&fdb.snapshot(), &policy, &host);
                let stale = if holding { Stale::Keep } else { Stale::Remove };
                apply(&want, policy.device.index(), last.as_ref(), stale, &report);
                last = (stale == Stale::Remove).then_some(want);
            }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdb::{Meta, NodeId, NodeRecord, Source};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn node(v4: &str, v6: Option<&str>) -> NodeRecord {
        NodeRecord {
            underlay_v4: Some(v4.parse().unwrap()),
            underlay_v6: v6.map(|a| a.parse().unwrap()),
            ..NodeRecord::default()
        }
    }

    #[test]
    fn the_kernel_state_of_a_dual_stack_pod_network() {
        let fdb = Fdb::new(NodeId::new("n1"), node("10.99.0.1", None));
        let n2 = NodeId::new("n2");
        let m = Meta::new(Source::Gossip, 1);
        fdb.update(|t| {
            t.upsert_node(n2.clone(), node("10.99.0.2", Some("fd00:99::2")), m)?;
            t.upsert_block("10.244.4.0/26".parse().unwrap(), NodeId::new("n1"), m)?;
            t.upsert_block("fd00:244:0:1::/122".parse().unwrap(), NodeId::new("n1"), m)?;
            t.upsert_block("10.244.8.0/26".parse().unwrap(), n2.clone(), m)?;
            t.upsert_block("fd00:244:0:2::/122".parse().unwrap(), n2, m)
        })
        .unwrap();
        let policy = RoutePolicy {
            device: OverlayDevice::Tun(7),
            direct: None,
        };
        let host = HostNet {
            pools: vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00:244::/48".parse().unwrap(),
            ],
            nat_pools: vec!["10.244.0.0/16".parse().unwrap()],
            local_via_tun: false,
            kernel_device: None,
            nodes_via_overlay: true,
        };
        let d = desired(&fdb.snapshot(), &policy, &host);
        // No IPv6 address of its own: the first IPv6 block's network
        // address goes on the TUN and is the IPv6 routes' source.
        assert_eq!(d.tun_addrs, [ip("fd00:244:0:1::")].into_iter().collect());
        assert!(d.routes.contains(&WeftRoute::Device {
            dst: net("fd00:244:0:2::/122"),
            ifindex: 7,
            src: Some(ip("fd00:244:0:1::")),
        }));
        assert!(d.routes.contains(&WeftRoute::Device {
            dst: net("10.244.8.0/26"),
            ifindex: 7,
            src: Some(ip("10.99.0.1")),
        }));
        assert!(d.routes.contains(&WeftRoute::Blackhole {
            dst: net("10.244.4.0/26")
        }));
        // Both of n2's addresses through the TUN; none for this node.
        let hosts: Vec<IpNet> = d
            .routes
            .iter()
            .filter_map(|r| match r {
                WeftRoute::NodeHost { dst, .. } => Some(*dst),
                _ => None,
            })
            .collect();
        assert_eq!(hosts, vec![net("10.99.0.2/32"), net("fd00:99::2/128")]);
        // Rules name where nodes live, so pod-to-pod skips weft's table.
        let rules: Vec<String> = d.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            vec![
                "from 10.244.0.0/16 to 10.99.0.0/16 lookup 87",
                "from fd00:244::/48 to fd00:99::/48 lookup 87"
            ]
        );
        // NAT: IPv4 pool only; every pool and node address is inside.
        assert_eq!(d.nat.masquerade.len(), 1);
        assert!(d.nat.cluster.contains(&net("10.99.0.1/32")));
        assert!(d.nat.cluster.contains(&net("fd00:99::2/128")));
        // Pods to nodes over the underlay: no route in weft's table, no rule.
        let straight = desired(
            &fdb.snapshot(),
            &policy,
            &HostNet {
                nodes_via_overlay: false,
                ..host.clone()
            },
        );
        assert!(straight.rules.is_empty());
        assert!(!straight
            .routes
            .iter()
            .any(|r| matches!(r, WeftRoute::NodeHost { .. })));
        assert_eq!(straight.nat, d.nat);
        // Veth attachment's host port: local blocks to the TUN instead.
        let veth = desired(
            &fdb.snapshot(),
            &policy,
            &HostNet {
                local_via_tun: true,
                ..host
            },
        );
        assert!(veth.routes.contains(&WeftRoute::Device {
            dst: net("10.244.4.0/26"),
            ifindex: 7,
            src: Some(ip("10.99.0.1")),
        }));
    }

    #[test]
    fn the_kernel_path_routes_via_vteps_and_guards_what_each_sender_owns() {
        let mac2 = fdb::Mac([2, 0, 0, 0, 0, 2]);
        let fdb = three_nodes(mac2, "10.244.8.64/26");
        let policy = RoutePolicy {
            device: OverlayDevice::KernelVxlan {
                ifindex: 9,
                v6: false,
            },
            direct: None,
        };
        let host = kernel_host("weft-vxlan");
        let d = desired(&fdb.snapshot(), &policy, &host);
        for block in ["10.244.8.0/26", "10.244.8.64/26"] {
            assert!(d.routes.contains(&WeftRoute::Onlink {
                dst: net(block),
                gateway: net(block).network(),
                ifindex: 9,
                src: Some(ip("10.99.0.1")),
            }));
        }
        // The node's own address via its lowest block's VTEP address.
        assert!(d.routes.contains(&WeftRoute::NodeHost {
            dst: net("10.99.0.2/32"),
            ifindex: 9,
            gateway: Some(ip("10.244.8.0")),
        }));
        assert!(!d.routes.iter().any(|r| r.dst() == net("10.244.12.0/26")));
        let vtep = d.vtep.unwrap();
        assert_eq!(
            vtep.neighbours,
            [(ip("10.244.8.0"), mac2.0), (ip("10.244.8.64"), mac2.0)]
                .into_iter()
                .collect()
        );
        assert_eq!(vtep.fdb, [(mac2.0, ip("10.99.0.2"))].into_iter().collect());
        // Members: every other node's addresses; sources: n2's MAC with its
        // blocks and its address, never another node's.
        assert_eq!(
            vtep.guard.members.keys().copied().collect::<Vec<_>>(),
            [ip("10.99.0.2"), ip("fd00:99::3")]
        );
        assert_eq!(
            vtep.guard.sources[&mac2.0],
            [
                net("10.244.8.0/26"),
                net("10.244.8.64/26"),
                net("10.99.0.2/32")
            ]
            .into_iter()
            .collect()
        );
        // n3's MAC: only its own address (the device cannot reach its block).
        assert_eq!(vtep.guard.sources.len(), 2);
        assert_eq!(vtep.guard.device, "weft-vxlan");
        assert_eq!(vtep.guard.local, [ip("10.99.0.1")].into_iter().collect());
    }

    /// Node n1 (this one, 10.99.0.1, block 10.244.4.0/26); n2 at
    /// 10.99.0.2 with VTEP MAC `mac2`, blocks 10.244.8.0/26 and `n2_extra`;
    /// n3 with an IPv6 underlay address only (an IPv4 device cannot reach
    /// it), block 10.244.12.0/26.
    fn three_nodes(mac2: fdb::Mac, n2_extra: &str) -> Fdb {
        let fdb = Fdb::new(NodeId::new("n1"), node("10.99.0.1", None));
        let (n2, n3) = (NodeId::new("n2"), NodeId::new("n3"));
        let m = Meta::new(Source::Gossip, 1);
        fdb.update(|t| {
            let n2_record = NodeRecord {
                vtep_mac: mac2,
                ..node("10.99.0.2", None)
            };
            t.upsert_node(n2.clone(), n2_record, m)?;
            let n3_record = NodeRecord {
                underlay_v4: None,
                underlay_v6: Some("fd00:99::3".parse().unwrap()),
                ..NodeRecord::default()
            };
            t.upsert_node(n3.clone(), n3_record, m)?;
            t.upsert_block("10.244.4.0/26".parse().unwrap(), NodeId::new("n1"), m)?;
            t.upsert_block(n2_extra.parse().unwrap(), n2.clone(), m)?;
            t.upsert_block("10.244.8.0/26".parse().unwrap(), n2, m)?;
            t.upsert_block("10.244.12.0/26".parse().unwrap(), n3, m)
        })
        .unwrap();
        fdb
    }

    /// A kernel-path node's host settings, its device named `device`.
    fn kernel_host(device: &str) -> HostNet {
        HostNet {
            pools: vec!["10.244.0.0/16".parse().unwrap()],
            nat_pools: vec![],
            local_via_tun: false,
            kernel_device: Some(KernelNames {
                device: device.into(),
                port: 4789,
                underlay_device: "eth0".into(),
                checks: true,
            }),
            nodes_via_overlay: true,
        }
    }

    /// The kernel IP-in-IP path: each remote IPv4 block and node address
    /// routed through the ipip device via the node's underlay address (the
    /// tunnel's far end), nothing for a node without IPv4 or for IPv6
    /// blocks; no neighbours, FDB or receive checks.
    #[test]
    fn the_kernel_ip_in_ip_path_routes_via_each_nodes_underlay_address() {
        let fdb = three_nodes(fdb::Mac([2, 0, 0, 0, 0, 2]), "fd00:244:0:2::/122");
        let policy = RoutePolicy {
            device: OverlayDevice::KernelIpip { ifindex: 11 },
            direct: None,
        };
        let host = kernel_host("weft-ipip");
        let d = desired(&fdb.snapshot(), &policy, &host);
        assert!(d.routes.contains(&WeftRoute::Onlink {
            dst: net("10.244.8.0/26"),
            gateway: ip("10.99.0.2"),
            ifindex: 11,
            src: Some(ip("10.99.0.1")),
        }));
        assert!(d.routes.contains(&WeftRoute::NodeHost {
            dst: net("10.99.0.2/32"),
            ifindex: 11,
            gateway: Some(ip("10.99.0.2")),
        }));
        for unreachable in ["10.244.12.0/26", "fd00:244:0:2::/122", "fd00:99::3/128"] {
            assert!(
                !d.routes.iter().any(|r| r.dst() == net(unreachable)),
                "{unreachable}: {:?}",
                d.routes
            );
        }
        assert!(d.routes.contains(&WeftRoute::Blackhole {
            dst: net("10.244.4.0/26")
        }));
        assert_eq!(d.vtep, None);
    }
}
