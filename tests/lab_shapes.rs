//! The lab's other shapes, through `netns-lab/lab.sh` as users run them:
//! dual-stack pods on two underlay subnets joined by a router with
//! CrossSubnet (same-subnet nodes routed directly, the others through
//! VXLAN), the kernel-VXLAN reference cluster, veth attachment over
//! IP-in-IP, and a gossip cluster over an IPv6 underlay mixing the kernel
//! path and the userspace path.
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
