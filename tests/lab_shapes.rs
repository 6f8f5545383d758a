//! The lab's other shapes, through `netns-lab/lab.sh` as users run them:
//! dual-stack pods on two underlay subnets joined by a router with
//! CrossSubnet (same-subnet nodes routed directly, the others through
//! VXLAN), the kernel-VXLAN reference cluster, and veth attachment over
//! IP-in-IP.
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
