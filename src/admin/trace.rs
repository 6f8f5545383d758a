//! `trace SRC DST`: how weftd would forward a packet from SRC to DST, and
//! why, from the same fdb snapshot the data path reads.

use crate::config::Encap;
use crate::dataplane::next_hop::{next_hop, NextHop};
use crate::dataplane::source_ports::SourcePorts;
use fdb::Snapshot;
use serde_json::{json, Value};
use std::net::IpAddr;

/// What the data path needs to explain a forwarding decision.
pub struct TraceContext<'a> {
    /// The tables.
    pub snap: &'a Snapshot,
    /// This node's encapsulation.
    pub encap: Encap,
    /// VXLAN VNI and port.
    pub vni: u32,
    /// VXLAN UDP port.
    pub port: u16,
    /// Overlay MTU.
    pub overlay_mtu: usize,
    /// The addresses this node's tunnels go over (the outer source: the
    /// one of the peer's family), one per underlay family.
    pub tunnel_addrs: &'a [IpAddr],
    /// Direct (unencapsulated) routing, if CrossSubnet or encap none.
    pub policy: Option<&'a crate::daemon::node::RoutePolicy>,
    /// Veth attachment: weftd delivers to pods' ports itself.
    pub veth: bool,
    /// The VXLAN source ports, to name the one a ping would leave from.
    pub source_ports: Option<&'a SourcePorts>,
}

/// The header of an ICMP echo from `src` to `dst` (a ping's flow: what
/// the flow hash reads of it), for naming its outer source port.
fn echo_header(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[9] = 1;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            h
        }
        (s, d) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[6] = 58;
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            h[8..24].copy_from_slice(&v6(s).octets());
            h[24..40].copy_from_slice(&v6(d).octets());
            h
        }
    }
}

/// The verdict and the steps that led to it.
pub fn trace(cx: &TraceContext<'_>, src: IpAddr, dst: IpAddr) -> Value {
    let mut steps: Vec<String> = Vec::new();
    let local = cx.snap.local_node();
    // Where the source lives: which node would send it.
    let src_owner = cx.snap.owner_of(src).cloned();
    match &src_owner {
        Some(n) if n == local => steps.push(format!("{src} is in a block of this node ({n}): a local pod sends it into the TUN")),
        Some(n) => steps.push(format!("{src} is in a block of {n}: it would arrive from {n}'s underlay address, and is accepted because {src} lies in {n}'s blocks")),
        None => match cx.snap.node_at(src) {
            Some(n) if n == local => steps.push(format!("{src} is this node's own address: the host sends it into the TUN")),
            Some(n) => steps.push(format!("{src} is {n}'s own address: it would arrive from {n} and is accepted (a node's host traffic to pods)")),
            None => steps.push(format!("{src} is in no known block and is no node's address: a packet from it arriving over the underlay would be dropped (spoofed_inner)")),
        },
    }
    if src.is_ipv4() != dst.is_ipv4() {
        steps.push("source and destination are of different families: no such packet".into());
        return json!({"verdict": "drop", "reason": "family_mismatch", "steps": steps});
    }
    let families = crate::daemon::node::families(cx.tunnel_addrs);
    let verdict = match next_hop(cx.snap, dst, families) {
        NextHop::NoRoute => {
            steps.push(format!("{dst} is in no known block: dropped (no_route)"));
            json!({"verdict": "drop", "reason": "no_route"})
        }
        NextHop::Local { block } if cx.veth => {
            match cx.snap.endpoint(dst).and_then(|e| e.value.local_port) {
                Some(port) => steps.push(format!("{dst} is in {block}, a block of this node: weftd writes it to the pod's port (ifindex {port})")),
                None => steps.push(format!("{dst} is in {block}, a block of this node, but no pod port holds it: dropped (no_endpoint)")),
            }
            json!({"verdict": "local", "block": block.to_string()})
        }
        NextHop::Local { block } => {
            steps.push(format!("{dst} is in {block}, a block of this node: the kernel delivers it to the pod's veth by its /32 (or /128) host route; without one, the block's blackhole route drops it"));
            json!({"verdict": "local", "block": block.to_string()})
        }
        NextHop::NoUnderlay { node } => {
            steps.push(format!(
                "{dst} belongs to {node}, which advertised no underlay address of a family this node tunnels over: dropped (no_underlay)"
            ));
            json!({"verdict": "drop", "reason": "no_underlay"})
        }
        NextHop::Peer {
            node,
            record,
            underlay: peer,
            block,
        } => {
            let block = match block {
                Some(block) => block,
                None => {
                    steps.push(format!("{dst} is {node}'s own address: pods reach it through the overlay, as they reach its pods"));
                    ipnet::IpNet::from(dst)
                }
            };
            steps.push(format!("{dst} is in {block}, owned by {node}"));
            let direct = cx
                .policy
                .and_then(|p| p.direct.map(|d| (p.direct_gateway(block, record), d)));
            match direct {
                Some((Some(gw), d)) => {
                    steps.push(format!("{gw} is in this node's underlay subnet {}: routed by the kernel straight to it, without encapsulation (weftd is not on the path)", d.subnet));
                    return json!({"verdict": "forward", "node": node.to_string(), "block": block.to_string(), "how": {"encap": "none", "peer": gw.to_string()}, "steps": steps});
                }
                Some((None, d)) if d.only => {
                    steps.push(format!("{node} is outside this node's underlay subnet {} and encap is none: no route", d.subnet));
                    return json!({"verdict": "drop", "reason": "not_on_link", "steps": steps});
                }
                _ => {}
            }
            let outer_source = cx
                .tunnel_addrs
                .iter()
                .find(|a| a.is_ipv6() == peer.is_ipv6())
                .map_or_else(|| "?".to_string(), ToString::to_string);
            if cx.tunnel_addrs.len() > 1 {
                let family = if peer.is_ipv6() { "IPv6" } else { "IPv4" };
                let why = if record.tunnel_address() == Some(peer) {
                    "its preferred underlay family"
                } else {
                    "the family it has in common with this node"
                };
                steps.push(format!("{node} is reached over {family}, {why}"));
            }
            let how = match cx.encap {
                Encap::Vxlan => {
                    let source = cx.source_ports.map(|s| {
                        let ping = s.port(s.for_packet(&echo_header(src, dst)));
                        (ping, s.ports().len())
                    });
                    let from = match source {
                        Some((ping, 1)) => format!("{ping}"),
                        Some((ping, n)) => format!(
                            "one of {n} source ports by the inner flow's hash ({ping} for a ping)"
                        ),
                        None => "a source port by the inner flow's hash".into(),
                    };
                    steps.push(format!("encapsulated as VXLAN: {} -> {peer}, UDP {from} -> {}, VNI {}, inner Ethernet to {node}'s VTEP MAC {}", outer_source, cx.port, cx.vni, record.vtep_mac));
                    let mut how = json!({"encap": "vxlan", "peer": peer.to_string(), "port": cx.port, "vni": cx.vni, "vtep_mac": record.vtep_mac.to_string()});
                    if let Some((ping, _)) = source {
                        how["source_port_ping"] = json!(ping);
                    }
                    how
                }
                Encap::Ipip => {
                    let proto = if dst.is_ipv4() { 4 } else { 41 };
                    steps.push(format!(
                        "encapsulated as IP-in-IP: {outer_source} -> {peer}, IP protocol {proto}"
                    ));
                    json!({"encap": "ipip", "peer": peer.to_string(), "protocol": proto})
                }
                Encap::None => {
                    steps.push(format!("routed without encapsulation to {peer}"));
                    json!({"encap": "none", "peer": peer.to_string()})
                }
            };
            steps.push(format!("packets larger than the overlay MTU ({}) with DF set are answered with ICMP too-big", cx.overlay_mtu));
            json!({"verdict": "forward", "node": node.to_string(), "block": block.to_string(), "how": how})
        }
    };
    let mut v = verdict;
    v["steps"] = json!(steps);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdb::{Fdb, Meta, NodeId, NodeRecord, Source};

    /// A VXLAN node (VNI 1, port 4789, TUN attachment) at `underlay`.
    fn vxlan_context<'a>(snap: &'a Snapshot, tunnel_addrs: &'a [IpAddr]) -> TraceContext<'a> {
        TraceContext {
            snap,
            encap: Encap::Vxlan,
            vni: 1,
            port: 4789,
            overlay_mtu: 1450,
            tunnel_addrs,
            policy: None,
            veth: false,
            source_ports: None,
        }
    }

    #[test]
    fn local_remote_unknown() {
        let local = NodeId::new("n1");
        let fdb = Fdb::new(local.clone(), NodeRecord::default());
        let m = Meta::new(Source::Static, 1);
        fdb.update(|t| {
            t.upsert_block("10.244.0.0/26".parse().unwrap(), local.clone(), m)?;
            let rec = NodeRecord {
                underlay_v4: Some("10.99.0.2".parse().unwrap()),
                ..NodeRecord::default()
            };
            t.upsert_node(NodeId::new("n2"), rec, m)?;
            t.upsert_block("10.244.1.0/26".parse().unwrap(), NodeId::new("n2"), m)
        })
        .unwrap();
        let snap = fdb.snapshot();
        let own = ["10.99.0.1".parse().unwrap()];
        let cx = vxlan_context(&snap, &own);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let t = trace(&cx, ip("10.244.0.5"), ip("10.244.1.5"));
        assert_eq!(t["verdict"], "forward");
        assert_eq!(t["node"], "n2");
        assert_eq!(t["how"]["peer"], "10.99.0.2");
        assert_eq!(
            trace(&cx, ip("10.244.1.5"), ip("10.244.0.5"))["verdict"],
            "local"
        );
        assert_eq!(
            trace(&cx, ip("10.244.0.5"), ip("10.9.9.9"))["reason"],
            "no_route"
        );
        let spoof = trace(&cx, ip("10.8.0.1"), ip("10.244.0.5"));
        assert!(spoof["steps"][0]
            .as_str()
            .unwrap()
            .contains("spoofed_inner"));
    }

    #[test]
    fn trace_names_the_peer_the_data_path_sends_to() {
        // Nodes with IPv4 only, IPv6 only, both (preferring either), and
        // none; blocks of both families; node addresses. Whatever families
        // this node tunnels over, trace must name the hop `next_hop` (the
        // data path's function) returns.
        let local = NodeId::new("n1");
        let fdb = Fdb::new(local.clone(), NodeRecord::default());
        let m = Meta::new(Source::Static, 1);
        let rec = |v4: Option<&str>, v6: Option<&str>| NodeRecord {
            underlay_v4: v4.map(|a| a.parse().unwrap()),
            underlay_v6: v6.map(|a| a.parse().unwrap()),
            tunnel_v6: v4.is_none(),
            ..NodeRecord::default()
        };
        let prefers_v6 = |r: NodeRecord| NodeRecord {
            tunnel_v6: true,
            ..r
        };
        fdb.update(|t| {
            t.upsert_block("10.244.0.0/26".parse().unwrap(), local.clone(), m)?;
            for (name, r, v4, v6) in [
                (
                    "n2",
                    rec(Some("10.99.0.2"), None),
                    "10.244.1.0/26",
                    "fd00:1::/64",
                ),
                (
                    "n3",
                    rec(None, Some("fd99::3")),
                    "10.244.2.0/26",
                    "fd00:2::/64",
                ),
                (
                    "n4",
                    rec(Some("10.99.0.4"), Some("fd99::4")),
                    "10.244.3.0/26",
                    "fd00:3::/64",
                ),
                ("n5", rec(None, None), "10.244.4.0/26", "fd00:4::/64"),
                (
                    "n6",
                    prefers_v6(rec(Some("10.99.0.6"), Some("fd99::6"))),
                    "10.244.5.0/26",
                    "fd00:5::/64",
                ),
            ] {
                t.upsert_node(NodeId::new(name), r, m)?;
                t.upsert_block(v4.parse().unwrap(), NodeId::new(name), m)?;
                t.upsert_block(v6.parse().unwrap(), NodeId::new(name), m)?;
            }
            Ok(())
        })
        .unwrap();
        let snap = fdb.snapshot();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let own: [&[IpAddr]; 3] = [
            &[ip("10.99.0.1")],
            &[ip("fd99::1")],
            &[ip("10.99.0.1"), ip("fd99::1")],
        ];
        for tunnel_addrs in own {
            let cx = vxlan_context(&snap, tunnel_addrs);
            let families = crate::daemon::node::families(tunnel_addrs);
            for dst in [
                "10.244.1.5",
                "fd00:1::5",
                "10.244.2.5",
                "fd00:2::5",
                "10.244.3.5",
                "fd00:3::5",
                "10.244.4.5",
                "fd00:4::5",
                "10.244.5.5",
                "fd00:5::5",
                "10.99.0.4",
                "fd99::3",
                "10.244.0.5",
                "10.7.7.7",
            ] {
                let src = if dst.contains(':') {
                    "fd00::1"
                } else {
                    "10.244.0.1"
                };
                let t = trace(&cx, ip(src), ip(dst));
                match next_hop(&snap, ip(dst), families) {
                    NextHop::Peer { node, underlay, .. } => {
                        assert_eq!(t["verdict"], "forward", "{dst}: {t}");
                        assert_eq!(t["node"], node.as_str(), "{dst}");
                        assert_eq!(t["how"]["peer"], underlay.to_string(), "{dst}");
                        assert!(families.holds(underlay), "{dst}: over {underlay}");
                        let from = tunnel_addrs
                            .iter()
                            .find(|a| a.is_ipv6() == underlay.is_ipv6());
                        let step = format!("{} -> {underlay}", from.unwrap());
                        assert!(t.to_string().contains(&step), "{dst}: {t}");
                    }
                    NextHop::Local { .. } => assert_eq!(t["verdict"], "local", "{dst}"),
                    NextHop::NoRoute => assert_eq!(t["reason"], "no_route", "{dst}"),
                    NextHop::NoUnderlay { .. } => {
                        assert_eq!(t["reason"], "no_underlay", "{dst}")
                    }
                }
            }
        }
        // The rule itself: the peer's preferred family where this node has
        // it, else the other; none in common, no hop.
        let hop = |dst: &str, from: fdb::Families| match next_hop(&snap, ip(dst), from) {
            NextHop::Peer { underlay, .. } => Some(underlay),
            _ => None,
        };
        let (v4, v6, both) = (fdb::Families::V4, fdb::Families::V6, fdb::Families::BOTH);
        assert_eq!(hop("fd00:3::5", both), Some(ip("10.99.0.4")));
        assert_eq!(hop("fd00:3::5", v6), Some(ip("fd99::4")));
        assert_eq!(hop("10.244.5.5", both), Some(ip("fd99::6")));
        assert_eq!(hop("10.244.5.5", v4), Some(ip("10.99.0.6")));
        assert_eq!(hop("10.244.2.5", both), Some(ip("fd99::3")));
        assert_eq!(hop("10.244.2.5", v4), None);
        assert_eq!(hop("10.244.1.5", v6), None);
    }
}
