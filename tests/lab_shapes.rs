//! The lab's other shapes, through `netns-lab/lab.sh` as users run them:
//! dual-stack pods on two underlay subnets joined by a router with
//! CrossSubnet (same-subnet nodes routed directly, the others through
//! VXLAN), the kernel-VXLAN reference cluster, veth attachment over
//! IP-in-IP, a gossip cluster over an IPv6 underlay mixing the kernel
//! path and the userspace path, and a dual-stack underlay where each pair
//! of nodes tunnels over a family both have (VXLAN and IP-in-IP).
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

mod support;

fn routes(lab: &support::lab::Lab, k: usize) -> String {
    support::weft_route_lines(&lab.ns(k))
}

#[test]
fn dual_stack_pods_across_two_subnets_with_cross_subnet() {
    let Some(lab) = support::lab::lab("wx") else {
        return;
    };
    lab.run(&[
        "up",
        "--nodes",
        "4",
        "--pods",
        "1",
        "--family",
        "dual",
        "--cross-subnet",
    ]);
    lab.run(&["wait", "60"]);
    let pods = lab.pods();
    assert!(
        pods.iter().all(|p| p.1.contains(',') && p.1.contains(':')),
        "{pods:?}"
    );
    lab.all_pods_reach_all_pods();
    // n1 and n2 share 10.99.0.0/24: direct IPv4 route. n3 and n4 are on
    // 10.99.1.0/24: through the TUN. IPv6 blocks (IPv4 underlay): TUN.
    let r = routes(&lab, 1);
    assert_eq!(r.matches(" via 10.99.0.2 dev ul0").count(), 1, "{r}");
    assert_eq!(r.matches("dev weft0").count(), 2 + 3, "{r}");
    let r = routes(&lab, 3);
    assert_eq!(r.matches(" via 10.99.1.4 dev ul0").count(), 1, "{r}");
}

#[test]
fn kernel_vxlan_reference_cluster() {
    let Some(lab) = support::lab::lab("wk") else {
        return;
    };
    lab.run(&["up", "--nodes", "3", "--pods", "1", "--kernel-vxlan"]);
    lab.all_pods_reach_all_pods();
    let status = lab.run(&["status"]);
    assert!(status.contains("kernel VXLAN reference"), "{status}");
    // No weft route anywhere: the kernel's device carries it all.
    assert!(routes(&lab, 1).is_empty());
}

#[test]
fn veth_attachment_over_ip_in_ip_with_dual_stack_pods() {
    let Some(lab) = support::lab::lab("wy") else {
        return;
    };
    lab.run(&[
        "up",
        "--nodes",
        "3",
        "--pods",
        "2",
        "--family",
        "dual",
        "--encap",
        "ipip",
        "--attach",
        "veth",
        "--no-host-paths",
    ]);
    lab.run(&["wait", "60"]);
    lab.all_pods_reach_all_pods();
    let status = lab.run(&["status"]);
    assert!(status.contains("veth attachment"), "{status}");
    // No TUN and no weft route on any node: weftd is the pods' router.
    for k in 1..=3 {
        assert!(routes(&lab, k).is_empty(), "node {k}: {}", routes(&lab, k));
        let links = support::ip(&["-n", &lab.ns(k), "link", "show", "weft0"]);
        assert!(!links.status.success(), "node {k} has a TUN");
    }
}

#[test]
fn gossip_cluster_over_an_ipv6_underlay_mixing_kernel_and_userspace_nodes() {
    let Some(lab) = support::lab::lab("w6") else {
        return;
    };
    lab.run(&[
        "up",
        "--nodes",
        "3",
        "--pods",
        "1",
        "--family",
        "dual",
        "--underlay",
        "6",
        "--mode",
        "kernel,userspace,userspace",
    ]);
    lab.run(&["wait", "60"]);
    let status = lab.run(&["status"]);
    assert!(status.contains("IPv6 underlay"), "{status}");
    lab.all_pods_reach_all_pods();
    // Every peer is known at its IPv6 underlay address (gossip over IPv6).
    let v = lab.status(1);
    assert_eq!(v["path"], "kernel", "{v}");
    for p in v["peers"].as_array().unwrap() {
        assert!(
            p["underlay"].as_str().unwrap().starts_with("fd00:99:"),
            "{p}"
        );
    }
    // A partition over IPv6 is seen and healed.
    lab.run(&["partition", "1", "--", "2", "3"]);
    let n1_block = v["blocks"][0].as_str().unwrap().to_string();
    lab.until(
        "n1's block withdrawn on n2",
        std::time::Duration::from_secs(30),
        || !routes(&lab, 2).contains(&n1_block),
    );
    lab.run(&["heal"]);
    lab.run(&["wait", "60"]);
    lab.all_pods_reach_all_pods();
}

#[test]
fn a_dual_stack_underlay_carries_vxlan_over_a_family_each_pair_shares() {
    dual_stack_underlay("wdv", "vxlan", "udp dport 4789", 1430, 1450);
}

#[test]
fn a_dual_stack_underlay_carries_ip_in_ip_over_a_family_each_pair_shares() {
    dual_stack_underlay("wdi", "ipip", "meta l4proto { 4, 41 }", 1460, 1480);
}

/// Node 1 tunnels over IPv4 alone, node 2 over both preferring IPv6, node
/// 3 over both preferring IPv4 (`--underlay 4,dual6,dual4`). Each tunnel
/// goes to the receiver's preferred family when the sender has it, else
/// the other: n1 -> n2 over IPv4 (n1 has no IPv6 tunnels), n3 -> n2 over
/// IPv6, n2 -> n3 over IPv4. Counted on the receivers' underlay links
/// (nftables, `outer` matching the tunnel's packets), under pings and TCP
/// streams checked end to end, both pod families. Gossip joins all three
/// (n1 reaches n2 at its IPv4 address). A dual-stack node's overlay MTU
/// leaves room for the IPv6 outer header (`mtu_dual`); n1's does not
/// (`mtu_v4`).
fn dual_stack_underlay(tag: &str, encap: &str, outer: &str, mtu_dual: u64, mtu_v4: u64) {
    use std::net::{IpAddr, SocketAddr};
    let Some(lab) = support::lab::lab(tag) else {
        return;
    };
    lab.run(&[
        "up",
        "--nodes",
        "3",
        "--pods",
        "1",
        "--family",
        "dual",
        "--encap",
        encap,
        "--underlay",
        "4,dual6,dual4",
    ]);
    lab.run(&["wait", "60"]);
    // Named counters of tunnel packets arriving on n2 and n3, by sender
    // and outer family.
    let senders = [
        (2, "from_n1_v4", "ip saddr 10.99.0.1"),
        (2, "from_n1_v6", "ip6 saddr fd00:99::1"),
        (2, "from_n3_v4", "ip saddr 10.99.0.3"),
        (2, "from_n3_v6", "ip6 saddr fd00:99::3"),
        (3, "from_n2_v4", "ip saddr 10.99.0.2"),
        (3, "from_n2_v6", "ip6 saddr fd00:99::2"),
    ];
    for k in [2, 3] {
        let mut script = "add table inet weft_dual_test\n\
             add chain inet weft_dual_test in { type filter hook prerouting priority -300; }\n"
            .to_string();
        for (_, name, from) in senders.iter().filter(|s| s.0 == k) {
            script += &format!(
                "add counter inet weft_dual_test {name}\n\
                 add rule inet weft_dual_test in {from} {outer} counter name {name}\n"
            );
        }
        support::nft(&lab.ns(k), &script);
    }
    // Bytes, not packets: GRO on the receiver's link merges datagrams.
    let bytes = |k: usize, name: &str| -> u64 {
        let listing = support::nft(
            &lab.ns(k),
            &format!("list counter inet weft_dual_test {name}"),
        );
        let after = listing.split("bytes ").nth(1).expect("a counter");
        after.split_whitespace().next().unwrap().parse().unwrap()
    };

    lab.all_pods_reach_all_pods();
    let pods = lab.pods();
    let addrs = |k: usize| -> Vec<IpAddr> {
        pods[k - 1]
            .1
            .split(',')
            .map(|a| a.parse().unwrap())
            .collect()
    };
    let mut port = 6100;
    for (from, to) in [(1, 2), (3, 2), (2, 3)] {
        for ip in addrs(to) {
            port += 1;
            support::traffic::tcp_transfer(
                &pods[from - 1].0,
                &pods[to - 1].0,
                SocketAddr::new(ip, port),
                16 << 20,
            );
        }
    }
    // Two streams of 16 MB each way checked: at least 32 MB over the
    // expected family, not a byte over the other.
    for (k, from, over, not_over) in [
        (2, "n1", "v4", "v6"),
        (2, "n3", "v6", "v4"),
        (3, "n2", "v4", "v6"),
    ] {
        let (yes, no) = (
            bytes(k, &format!("from_{from}_{over}")),
            bytes(k, &format!("from_{from}_{not_over}")),
        );
        assert!(
            yes >= 32 << 20 && no == 0,
            "{from} -> n{k}: {yes} bytes over {over}, {no} over {not_over}"
        );
    }

    // What weftctl shows is where the tunnels go.
    assert_eq!(lab.peer_underlay(1, "n2"), "10.99.0.2");
    assert_eq!(lab.peer_underlay(3, "n2"), "fd00:99::2");
    assert_eq!(lab.peer_underlay(2, "n3"), "10.99.0.3");
    assert_eq!(lab.peer_underlay(2, "n1"), "10.99.0.1");
    for (k, mtu) in [(1, mtu_v4), (2, mtu_dual), (3, mtu_dual)] {
        let v = lab.status(k);
        assert_eq!(v["overlay_mtu"].as_u64(), Some(mtu), "n{k}: {v}");
    }
}
