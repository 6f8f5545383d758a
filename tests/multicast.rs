//! Multicast between pods across nodes, through `netns-lab/lab.sh` as
//! users run it, in both attachment modes and both pod families: a sender
//! reaches exactly the joined pods on every node (each datagram once, none
//! back to the sender, nothing to non-members), a leave stops the copies
//! to that node, a node that dies takes its members with it, and what is
//! not carried (TTL 1, link-local groups) is dropped and counted; over a
//! dual-stack underlay, copies leave over each member node's family.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

mod support;

use serde_json::Value as Json;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::lab::Lab;
use support::traffic::in_ns;

const G4: Ipv4Addr = Ipv4Addr::new(239, 7, 7, 7);
const G6: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 7, 7);
const PORT: u16 = 5007;

/// A UDP socket of `group`'s family bound to PORT; joined to `group` if
/// `join`. The kernel's own loopback of a sender's multicast is off, so a
/// sender that is a member hears itself only if weft sent it back.
fn socket(group: IpAddr, join: bool) -> Socket {
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    let any: SocketAddr = match group {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, PORT).into(),
        IpAddr::V6(_) => {
            s.set_only_v6(true).unwrap();
            (Ipv6Addr::UNSPECIFIED, PORT).into()
        }
    };
    s.bind(&any.into()).unwrap();
    match group {
        IpAddr::V4(g) => {
            s.set_multicast_loop_v4(false).unwrap();
            if join {
                s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED).unwrap();
            }
        }
        IpAddr::V6(g) => {
            s.set_multicast_loop_v6(false).unwrap();
            if join {
                s.join_multicast_v6(&g, 0).unwrap();
            }
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// A pod listening on PORT for `group` until told to stop: how many
/// times each payload arrived.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<Vec<u8>, u32>>,
}

impl Listener {
    fn start(ns: &str, group: IpAddr, join: bool) -> Listener {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&stop);
        let thread = in_ns(ns, move || {
            let s = socket(group, join);
            let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = (&s).read(&mut buf) {
                    *seen.entry(buf[..n].to_vec()).or_default() += 1;
                }
            }
            seen
        });
        Listener { stop, thread }
    }

    fn finish(self) -> HashMap<Vec<u8>, u32> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Sends `n` datagrams `TAG-i` to `to` from pod `ns` with TTL (hop
/// limit) `ttl`, 5 ms apart, from a socket that is itself a member (its
/// own datagrams must not come back to it).
fn send(ns: &str, to: IpAddr, tag: &str, n: usize, ttl: u32) {
    let tag = tag.to_string();
    in_ns(ns, move || {
        let s = socket(to, true);
        match to {
            IpAddr::V4(_) => s.set_multicast_ttl_v4(ttl).unwrap(),
            IpAddr::V6(_) => s.set_multicast_hops_v6(ttl).unwrap(),
        }
        let dst = SockAddr::from(SocketAddr::new(to, PORT));
        for i in 0..n {
            s.send_to(format!("{tag}-{i}").as_bytes(), &dst).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        // Long enough for a copy coming back to arrive, then read it.
        std::thread::sleep(Duration::from_millis(300));
        let mut buf = [0u8; 2048];
        let mut back = 0;
        while (&s).read(&mut buf).is_ok() {
            back += 1;
        }
        assert_eq!(back, 0, "{tag}: the sender heard its own datagrams");
    })
    .join()
    .unwrap();
}

/// The other nodes with members of `group`, as node `k` sees them.
fn member_nodes(lab: &Lab, k: usize, group: IpAddr) -> Vec<String> {
    let v = lab.weftctl(k, "groups");
    v["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["group"] == Json::String(group.to_string()))
        .flat_map(|g| g["nodes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

fn counter(lab: &Lab, k: usize, name: &str) -> u64 {
    lab.weftctl(k, "stats")[name].as_u64().unwrap()
}

fn drops(lab: &Lab, k: usize, reason: &str) -> u64 {
    lab.weftctl(k, "stats")["drops"][reason].as_u64().unwrap()
}

/// Pod `p` of node `n`.
fn pod(lab: &Lab, n: usize, p: usize) -> String {
    format!("{}-n{n}-p{p}", lab.prefix)
}

/// The whole exchange on a lab of three nodes with two dual-stack pods
/// each: n1-p1 sends, n1-p2, n2-p1 and n3-p2 are members, n2-p2 and n3-p1
/// listen on the port without joining.
fn exchange(lab: &Lab, kill_a_node: bool) {
    let (members, others) = (
        [pod(lab, 1, 2), pod(lab, 2, 1), pod(lab, 3, 2)],
        [pod(lab, 2, 2), pod(lab, 3, 1)],
    );
    for group in [IpAddr::V4(G4), IpAddr::V6(G6)] {
        let joined: Vec<Listener> = members
            .iter()
            .map(|ns| Listener::start(ns, group, true))
            .collect();
        let idle: Vec<Listener> = others
            .iter()
            .map(|ns| Listener::start(ns, group, false))
            .collect();
        lab.until(
            &format!("n1 learns n2 and n3 have members of {group}"),
            Duration::from_secs(20),
            || member_nodes(lab, 1, group) == ["n2", "n3"],
        );
        let copies = counter(lab, 1, "multicast_copies");
        send(&pod(lab, 1, 1), group, "a", 100, 8);
        // One copy per node with members, none to the others.
        lab.until("copies counted", Duration::from_secs(5), || {
            counter(lab, 1, "multicast_copies") >= copies + 200
        });
        assert_eq!(counter(lab, 1, "multicast_copies"), copies + 200);
        std::thread::sleep(Duration::from_millis(300));
        for (ns, l) in members.iter().zip(joined) {
            let seen = l.finish();
            assert_eq!(seen.len(), 100, "{group}: {ns} got {} of 100", seen.len());
            assert!(
                seen.values().all(|n| *n == 1),
                "{group}: {ns} got duplicates"
            );
        }
        for (ns, l) in others.iter().zip(idle) {
            let seen = l.finish();
            assert!(
                seen.is_empty(),
                "{group}: non-member {ns} got {}",
                seen.len()
            );
        }

        // TTL 1 means "this link only": dropped and counted at the sender's
        // node, like any router would.
        let expired = drops(lab, 1, "ttl_expired");
        send(&pod(lab, 1, 1), group, "ttl1", 3, 1);
        lab.until("TTL 1 counted", Duration::from_secs(5), || {
            drops(lab, 1, "ttl_expired") >= expired + 3
        });

        // A leave (the last member socket on n3 closes): n1 stops sending
        // to n3 once the control plane has converged.
        let member = Listener::start(&members[1], group, true);
        lab.until("the leave reaches n1", Duration::from_secs(20), || {
            member_nodes(lab, 1, group) == ["n2"]
        });
        let copies = counter(lab, 1, "multicast_copies");
        let at_n3 = counter(lab, 3, "multicast_local");
        send(&pod(lab, 1, 1), group, "b", 20, 8);
        assert_eq!(
            member.finish().len(),
            20,
            "{group}: n2's member after n3 left"
        );
        assert_eq!(counter(lab, 1, "multicast_copies"), copies + 20);
        assert_eq!(counter(lab, 3, "multicast_local"), at_n3);
    }

    // Link-local groups stay on the pod's link: counted, not carried.
    let link_scope = drops(lab, 1, "link_scope");
    send(
        &pod(lab, 1, 1),
        "224.0.0.251".parse().unwrap(),
        "mdns",
        3,
        255,
    );
    lab.until("link-scope counted", Duration::from_secs(5), || {
        drops(lab, 1, "link_scope") >= link_scope + 3
    });

    // A pod joining more groups than it may: capped, the rest counted.
    let limited = drops(lab, 2, "group_limit");
    let greedy = in_ns(&pod(lab, 2, 2), || {
        let s = socket(IpAddr::V6(G6), false);
        for k in 0..100u16 {
            let g = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 8, k);
            s.join_multicast_v6(&g, 0).unwrap();
        }
        std::thread::sleep(Duration::from_secs(2));
        drop(s);
    });
    lab.until(
        "joins past the limit counted",
        Duration::from_secs(10),
        || drops(lab, 2, "group_limit") >= limited + 36,
    );
    let groups = lab.weftctl(2, "groups")["groups"].as_array().unwrap().len();
    assert_eq!(
        groups, 64,
        "n2's pods are in {groups} groups, the limit is 64"
    );
    greedy.join().unwrap();

    // A malformed report (its checksum broken) is dropped and counted.
    let bad = drops(lab, 3, "bad_membership_report");
    in_ns(&pod(lab, 3, 1), || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(2))).unwrap();
        // An IGMPv2 report for 239.7.7.8 with a wrong checksum.
        let mut m = [0x16, 0, 0, 0, 239, 7, 7, 8];
        let sum = !m
            .chunks(2)
            .fold(0u32, |a, w| a + u32::from(u16::from_be_bytes([w[0], w[1]])));
        let sum = (sum as u16).wrapping_add(1);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        let to = SockAddr::from(SocketAddr::from((Ipv4Addr::new(239, 7, 7, 8), 0)));
        s.send_to(&m, &to).unwrap();
    })
    .join()
    .unwrap();
    lab.until("the bad report counted", Duration::from_secs(5), || {
        drops(lab, 3, "bad_membership_report") > bad
    });

    if kill_a_node {
        // A node that dies takes its members with it.
        let member = Listener::start(&members[1], IpAddr::V4(G4), true);
        lab.until("n2's member seen", Duration::from_secs(20), || {
            member_nodes(lab, 1, IpAddr::V4(G4)) == ["n2"]
        });
        lab.run(&["kill", "2"]);
        lab.until("n2's members gone with n2", Duration::from_secs(30), || {
            member_nodes(lab, 1, IpAddr::V4(G4)).is_empty()
        });
        // Restarted, weftd queries its pods and publishes their groups
        // again (the pod never re-joined).
        lab.run(&["start", "2"]);
        lab.until(
            "the restarted n2's member seen again",
            Duration::from_secs(30),
            || member_nodes(lab, 1, IpAddr::V4(G4)) == ["n2"],
        );
        let copies = counter(lab, 1, "multicast_copies");
        send(&pod(lab, 1, 1), IpAddr::V4(G4), "c", 20, 8);
        let got = member.finish().len();
        if got != 20 {
            panic!(
                "n2's member got {got} of 20 after the restart; n1 sent {} copies, \
                 n1 drops {}, n2 kernel path {}",
                counter(lab, 1, "multicast_copies") - copies,
                lab.weftctl(1, "stats")["drops"],
                lab.weftctl(2, "stats")["kernel_path"]
            );
        }
    }
}

/// A pod sending faster than `multicast.pod_rate_pps` (1,000 in the lab
/// that calls this): the excess is dropped and counted.
fn rate_limited(lab: &Lab) {
    let limited = drops(lab, 1, "multicast_rate_limited");
    let listener = Listener::start(&pod(lab, 2, 1), IpAddr::V4(G4), true);
    lab.until("n2's member seen", Duration::from_secs(20), || {
        member_nodes(lab, 1, IpAddr::V4(G4)) == ["n2"]
    });
    in_ns(&pod(lab, 1, 1), || {
        let s = socket(IpAddr::V4(G4), false);
        s.set_multicast_ttl_v4(8).unwrap();
        let dst = SockAddr::from(SocketAddr::from((G4, PORT)));
        for i in 0..3000 {
            s.send_to(format!("burst-{i}").as_bytes(), &dst).unwrap();
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let got = listener.finish().len();
    let dropped = drops(lab, 1, "multicast_rate_limited") - limited;
    // At most a second's worth (the burst allowance) and what accrued
    // while the burst was sent gets through.
    assert!(dropped >= 1000, "only {dropped} of 3000 rate-limited");
    assert!(got <= 2000, "{got} of 3000 arrived past a limit of 1,000/s");
}

/// TUN attachment, VXLAN, node 2 on the kernel path (its vxlan device
/// decapsulates the copies, weftd hands them to its pods).
#[test]
fn multicast_across_nodes_tun_attachment_vxlan_with_a_kernel_path_node() {
    let Some(lab) = support::lab::lab("wm") else {
        return;
    };
    lab.run_with_env(
        &[
            "up",
            "--nodes",
            "3",
            "--pods",
            "2",
            "--family",
            "dual",
            "--mode",
            "userspace,kernel,userspace",
        ],
        &[("WEFT_LAB_CONFIG_EXTRA", "[multicast]\nenabled = true")],
    );
    lab.run(&["wait", "60"]);
    exchange(&lab, true);
}

/// Veth attachment, IP-in-IP over an IPv6 underlay, pods limited to 1,000
/// multicast datagrams a second. (Multicast is off by default: both labs
/// turn it on.)
#[test]
fn multicast_across_nodes_veth_attachment_ip_in_ip_over_ipv6() {
    let Some(lab) = support::lab::lab("wn") else {
        return;
    };
    let extra = [(
        "WEFT_LAB_CONFIG_EXTRA",
        "[multicast]\nenabled = true\npod_rate_pps = 1000",
    )];
    let args = [
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
        "--underlay",
        "6",
        "--mode",
        "userspace",
    ];
    lab.run_with_env(&args, &extra);
    lab.run(&["wait", "60"]);
    exchange(&lab, false);
    rate_limited(&lab);
}

/// Over a dual-stack underlay where the sender's node reaches one member
/// node over IPv4 and the other over IPv6 (`--underlay dual6,dual4,6`:
/// n2 prefers IPv4, n3 has IPv6 alone): each copy leaves over the family
/// its node is reached by, one send per family.
#[test]
fn multicast_across_nodes_over_a_dual_stack_underlay() {
    let Some(lab) = support::lab::lab("wnd") else {
        return;
    };
    let extra = [("WEFT_LAB_CONFIG_EXTRA", "[multicast]\nenabled = true")];
    let args = [
        "up",
        "--nodes",
        "3",
        "--pods",
        "2",
        "--family",
        "dual",
        "--underlay",
        "dual6,dual4,6",
    ];
    lab.run_with_env(&args, &extra);
    lab.run(&["wait", "60"]);
    assert_eq!(lab.peer_underlay(1, "n2"), "10.99.0.2");
    assert_eq!(lab.peer_underlay(1, "n3"), "fd00:99::3");
    exchange(&lab, false);
}
