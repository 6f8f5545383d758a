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

use super::node::{Direct, RoutePolicy};
use crate::kernel::nat::NatPlan;
use crate::kernel::routes::{Routes, WeftRoute};
use crate::kernel::rules::{Rule, Rules};
use fdb::{Fdb, Snapshot};
use ipnet::IpNet;
use std::collections::BTreeSet;
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
}

/// The kernel state the pod network needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// weft's routes (main table and weft's table).
    pub routes: BTreeSet<WeftRoute>,
    /// Traffic that looks up weft's table first.
    pub rules: BTreeSet<Rule>,
    /// The TUN's own addresses.
    pub tun_addrs: BTreeSet<IpAddr>,
    /// The outgoing-NAT table.
    pub nat: NatPlan,
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

/// The kernel state for `snap` under `policy`.
pub fn desired(snap: &Snapshot, policy: &RoutePolicy, host: &HostNet) -> Desired {
    let local = snap.local_node();
    let (src_v4, src_v6) = host_sources(snap);
    let mut d = Desired::default();
    for a in [src_v4, src_v6].into_iter().flatten() {
        if snap.node_at(a) != Some(local) {
            d.tun_addrs.insert(a);
        }
    }
    for (dst, owner) in snap.blocks() {
        if owner.value.node == *local {
            d.routes.insert(if host.local_via_tun {
                WeftRoute::Device {
                    dst,
                    ifindex: policy.tun_index,
                    src: if dst.addr().is_ipv4() { src_v4 } else { src_v6 },
                }
            } else {
                WeftRoute::Blackhole { dst }
            });
            continue;
        }
        let Some(record) = snap.node(&owner.value.node).map(|e| &e.value) else {
            continue;
        };
        match (policy.direct_gateway(dst, record), policy.direct) {
            (Some(gateway), Some(direct)) => {
                d.routes.insert(WeftRoute::Via {
                    dst,
                    gateway,
                    ifindex: direct.ifindex,
                });
            }
            // encap none: a node outside the subnet is not reachable.
            (None, Some(Direct { only: true, .. })) => {}
            _ => {
                d.routes.insert(WeftRoute::Device {
                    dst,
                    ifindex: policy.tun_index,
                    src: if dst.addr().is_ipv4() { src_v4 } else { src_v6 },
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
            // Nodes reached directly (same subnet) need nothing: pods'
            // packets to them go straight over the underlay, as the answers
            // come back. encap none reaches no other node.
            let direct = policy.direct_gateway(host_net(a), record).is_some()
                || policy.direct.is_some_and(|d| d.only);
            if id != local && !direct {
                d.routes.insert(WeftRoute::NodeHost {
                    dst: host_net(a),
                    ifindex: policy.tun_index,
                });
            }
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
pub fn apply(want: &Desired, tun_index: u32, last: Option<&Desired>, report: &SharedReport) {
    let mut errors = std::collections::BTreeMap::new();
    let kernel = crate::kernel::with_netlink(async |h| {
        // Addresses first: an IPv6 route's preferred source must exist.
        let a = crate::kernel::addresses::reconcile(&h, tun_index, &want.tun_addrs).await;
        let r = Routes::new(h.clone()).reconcile(&want.routes).await;
        let p = Rules::new(h).reconcile(&want.rules).await;
        Ok::<_, crate::kernel::KernelError>((a, r, p))
    });
    match kernel {
        Ok((a, r, p)) => {
            if let Err(e) = a {
                errors.insert("tun_addresses", e.to_string());
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
    let nat_failed_before = report
        .lock()
        .expect("not poisoned")
        .errors
        .contains_key("nat");
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
    for (what, e) in &errors {
        tracing::error!(concern = what, "kernel state: {e}");
    }
    report.lock().expect("not poisoned").errors = errors;
}

/// Keeps the kernel equal to fdb: every change (from gossip or the CNI
/// plugin) is followed, after a short pause that gathers a burst into one
/// pass, by [`apply`]; a pass that failed is retried every 5 s.
pub fn spawn(
    fdb: Fdb,
    policy: RoutePolicy,
    host: HostNet,
    applied: Desired,
    report: SharedReport,
) -> Result<(), String> {
    let sub = fdb.subscribe(4096);
    std::thread::Builder::new()
        .name("weft-kernel".into())
        .spawn(move || {
            let mut sub = sub;
            let mut last = applied;
            loop {
                let changed = sub
                    .next_timeout(std::time::Duration::from_secs(5))
                    .is_some();
                let failed = !report.lock().expect("not poisoned").errors.is_empty();
                if !changed && !failed {
                    continue;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                while sub.try_next().is_some() {}
                let want = desired(&fdb.snapshot(), &policy, &host);
                apply(&want, policy.tun_index, Some(&last), &report);
                last = want;
            }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdb::{Meta, NodeId, NodeRecord, Source};

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
            tun_index: 7,
            direct: None,
        };
        let host = HostNet {
            pools: vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00:244::/48".parse().unwrap(),
            ],
            nat_pools: vec!["10.244.0.0/16".parse().unwrap()],
            local_via_tun: false,
        };
        let d = desired(&fdb.snapshot(), &policy, &host);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let net = |s: &str| -> IpNet { s.parse().unwrap() };
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
}
