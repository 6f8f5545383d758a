//! The Kubernetes network model on lab clusters, through `netns-lab/lab.sh`
//! as users run it: nodes reach remote pods and pods reach remote nodes
//! (both ways, ping and TCP, IPv4 and IPv6, no NAT between them); pods
//! reach "the internet" (a namespace the lab's nodes route to, with no
//! route back to the pods) masqueraded as their node; pod to pod keeps the
//! pod's address; a fresh pod's gateway answers at once; a restarted weftd
//! keeps its pods and forgets the ones deleted while it was away; pods take
//! the MTU from the underlay; an nftables failure is reported and pod
//! traffic still flows. VXLAN, IP-in-IP and CrossSubnet.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use support::lab::Lab;
use support::traffic::{in_ns, ping, tcp_transfer};

const OUTSIDE_V4: &str = "203.0.113.1";
const OUTSIDE_V6: &str = "2001:db8::1";

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The source address a TCP listener at `to` in `to_ns` sees for a
/// connection from `from_ns`.
fn seen_source(from_ns: &str, to_ns: &str, to: SocketAddr) -> IpAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = in_ns(to_ns, move || {
        let any: IpAddr = if to.is_ipv4() {
            "0.0.0.0".parse().unwrap()
        } else {
            "::".parse().unwrap()
        };
        let l = TcpListener::bind(SocketAddr::new(any, to.port())).unwrap();
        tx.send(()).unwrap();
        let (mut c, peer) = l.accept().unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        c.write_all(b"ok").unwrap();
        peer.ip()
    });
    rx.recv().unwrap();
    in_ns(from_ns, move || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).unwrap();
    })
    .join()
    .unwrap_or_else(|_| panic!("{from_ns} -> {to} failed"));
    server.join().unwrap()
}

/// Ping and a checksummed TCP transfer from `from_ns` to `to` in `to_ns`.
fn reaches(from_ns: &str, to_ns: &str, to: IpAddr, port: u16) {
    assert!(ping(from_ns, to), "{from_ns} cannot ping {to}");
    tcp_transfer(from_ns, to_ns, SocketAddr::new(to, port), 256 * 1024);
}

/// Node k's own addresses in the lab (IPv4 underlay, IPv6 on the same link).
fn node_addrs(lab: &Lab, k: usize) -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string(lab.state.join(format!("addr-n{k}"))).unwrap();
    let v4: IpAddr = addr(v4.trim());
    let subnet = match v4 {
        IpAddr::V4(a) => a.octets()[2],
        IpAddr::V6(_) => panic!("the lab's underlay is IPv4"),
    };
    vec![v4, addr(&format!("fd00:99:{subnet}::{k}"))]
}

fn node_of(pod_node: &str) -> usize {
    pod_node.trim_start_matches('n').parse().unwrap()
}

/// Every check of the network model on a running lab of `nodes` nodes.
fn the_whole_model_holds(lab: &Lab, nodes: usize) {
    let pods = lab.pods();
    let mut port = 7100;
    for (pod, ips, pnode) in &pods {
        let home = node_of(pnode);
        let pod_ips: Vec<IpAddr> = ips.split(',').map(addr).collect();
        // Its own node reaches it (host routes, or the host port in veth
        // attachment).
        for ip in &pod_ips {
            port += 1;
            reaches(&lab.ns(home), pod, *ip, port);
        }
        for k in (1..=nodes).filter(|k| *k != home) {
            // Node k to the remote pod, and the pod to node k, both ways.
            for ip in &pod_ips {
                port += 1;
                reaches(&lab.ns(k), pod, *ip, port);
                assert_eq!(
                    seen_source(&lab.ns(k), pod, SocketAddr::new(*ip, port + 1000)),
                    node_addrs(lab, k)[usize::from(ip.is_ipv6())],
                    "node n{k} -> pod {ip}: the pod sees the node's own address"
                );
            }
            for a in node_addrs(lab, k)
                .into_iter()
                .filter(|a| pod_ips.iter().any(|p| p.is_ipv4() == a.is_ipv4()))
            {
                port += 1;
                reaches(pod, &lab.ns(k), a, port);
                let family_ip = pod_ips.iter().find(|p| p.is_ipv4() == a.is_ipv4());
                assert_eq!(
                    Some(&seen_source(
                        pod,
                        &lab.ns(k),
                        SocketAddr::new(a, port + 1000)
                    )),
                    family_ip,
                    "pod {pod} -> node n{k} at {a}: no NAT, the node sees the pod"
                );
            }
        }
        // The outside sees the pod's node; nothing routes back to pods.
        let rt = format!("{}-rt", lab.prefix);
        for (outside, v6) in [(OUTSIDE_V4, false), (OUTSIDE_V6, true)] {
            if !pod_ips.iter().any(|p| p.is_ipv6() == v6) {
                continue;
            }
            port += 1;
            let seen = seen_source(pod, &rt, SocketAddr::new(addr(outside), port));
            assert_eq!(
                seen,
                node_addrs(lab, home)[usize::from(v6)],
                "pod {pod} -> {outside}: masqueraded as its node"
            );
        }
        // Pod to pod keeps the pod's address.
        for (other, other_ips, _) in pods.iter().filter(|p| p.0 != *pod) {
            for ip in other_ips.split(',').map(addr) {
                port += 1;
                let seen = seen_source(pod, other, SocketAddr::new(ip, port));
                assert!(
                    pod_ips.contains(&seen),
                    "{pod} -> {other} at {ip}: seen as {seen}"
                );
            }
        }
    }
}

fn up(lab: &Lab, args: &[&str]) {
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    lab.run(&all);
    lab.run(&["wait", "60"]);
}

#[test]
fn hosts_pods_and_the_outside_over_vxlan_dual_stack() {
    let Some(lab) = support::lab::lab("wm") else {
        return;
    };
    up(&lab, &["--nodes", "2", "--pods", "1", "--family", "dual"]);
    the_whole_model_holds(&lab, 2);
    // Pod wiring: no proxy delay on any pod's host end, and a fresh pod's
    // first pings (both families) are answered.
    let links = support::ip(&["-n", &lab.ns(1), "-o", "link", "show"]);
    let hosts: Vec<String> = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("weft") && n != "weft0")
        .collect();
    assert!(!hosts.is_empty());
    let fresh = lab.run(&["add-pod", "1"]);
    let (fresh_ns, fresh_ips) = fresh.trim().split_once(' ').unwrap();
    for h in hosts {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns(1), "cat"])
            .arg(format!("/proc/sys/net/ipv4/neigh/{h}/proxy_delay"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{h}");
    }
    let remote = lab.pods().into_iter().find(|p| p.2 == "n2").unwrap();
    for (ip, fresh_ip) in remote.1.split(',').zip(fresh_ips.split(',')) {
        assert!(ping(fresh_ns, addr(ip)), "fresh pod {fresh_ip} -> {ip}");
    }
}

#[test]
fn hosts_pods_and_the_outside_over_ip_in_ip() {
    let Some(lab) = support::lab::lab("wi") else {
        return;
    };
    up(
        &lab,
        &[
            "--nodes", "2", "--pods", "1", "--family", "dual", "--encap", "ipip",
        ],
    );
    the_whole_model_holds(&lab, 2);
}

#[test]
fn hosts_pods_and_the_outside_across_subnets_with_cross_subnet() {
    let Some(lab) = support::lab::lab("wc") else {
        return;
    };
    up(
        &lab,
        &[
            "--nodes",
            "3",
            "--pods",
            "1",
            "--family",
            "dual",
            "--cross-subnet",
        ],
    );
    the_whole_model_holds(&lab, 3);
    // n1 and n2 share a subnet: nothing of weft's for each other's
    // address; n3 (the other subnet) is reached through the TUN.
    let table = support::ip(&["-n", &lab.ns(1), "route", "show", "table", "87"]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.contains("10.99.1.3 dev weft0"), "{table}");
    assert!(!table.contains("10.99.0.2"), "{table}");
}

fn endpoints(lab: &Lab, k: usize) -> Vec<String> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_weftctl"));
    let out = Command::new(bin)
        .args(["--socket"])
        .arg(lab.state.join(format!("admin-n{k}.sock")))
        .args(["--json", "endpoints"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut eps: Vec<String> = v["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}",
                e["ip"].as_str().unwrap(),
                e["node"].as_str().unwrap()
            )
        })
        .collect();
    eps.sort();
    eps
}

#[test]
fn hosts_pods_and_the_outside_with_veth_attachment() {
    let Some(lab) = support::lab::lab("wv") else {
        return;
    };
    up(
        &lab,
        &[
            "--nodes", "2", "--pods", "2", "--family", "dual", "--attach", "veth",
        ],
    );
    the_whole_model_holds(&lab, 2);
}

#[test]
fn a_restarted_weftd_keeps_its_pods_and_forgets_those_deleted_meanwhile() {
    let Some(lab) = support::lab::lab("wr") else {
        return;
    };
    up(&lab, &["--nodes", "3", "--pods", "2"]);
    lab.until(
        "every node lists all 6 pods",
        Duration::from_secs(20),
        || (1..=3).all(|k| endpoints(&lab, k).len() == 6),
    );
    let before: Vec<Vec<String>> = (1..=3).map(|k| endpoints(&lab, k)).collect();
    // kill -9 and start: the same endpoints everywhere.
    lab.run(&["kill", "1"]);
    lab.run(&["start", "1"]);
    lab.until("n1's weftd answers", Duration::from_secs(20), || {
        endpoints(&lab, 1).len() == 6
    });
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<Vec<String>> = (1..=3).map(|k| endpoints(&lab, k)).collect();
    assert_eq!(before, after);
    // A pod deleted while weftd is down disappears from every node.
    lab.run(&["kill", "1"]);
    let (gone_ns, gone_ip, _) = lab.pods().into_iter().find(|p| p.2 == "n1").unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"weft","type":"weft","blocksFile":"{s}/blocks-n1.json","stateDir":"{s}/cni-n1","weftdSocket":"{s}/cni-n1.sock"}}"#,
        s = lab.state.display()
    );
    let mut del = Command::new("ip");
    del.args(["netns", "exec", &lab.ns(1), env!("CARGO_BIN_EXE_weft")])
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", &gone_ns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", format!("/var/run/netns/{gone_ns}"))
        .stdout(std::process::Stdio::piped());
    let out = support::spawn_with_stdin(&mut del, conf.as_bytes())
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    lab.run(&["start", "1"]);
    let wanted: Vec<Vec<String>> = before
        .iter()
        .map(|eps| {
            eps.iter()
                .filter(|e| !e.starts_with(&format!("{gone_ip} ")))
                .cloned()
                .collect()
        })
        .collect();
    lab.until(
        "the deleted pod is gone from every node",
        Duration::from_secs(20),
        || (1..=3).map(|k| endpoints(&lab, k)).collect::<Vec<_>>() == wanted,
    );
}

#[test]
fn pods_take_their_mtu_from_the_underlay() {
    let Some(lab) = support::lab::lab("wu") else {
        return;
    };
    up(
        &lab,
        &["--nodes", "2", "--pods", "1", "--underlay-mtu", "1400"],
    );
    let pods = lab.pods();
    let (a, b) = (&pods[0], &pods[1]);
    // VXLAN over IPv4: 50 bytes of overhead.
    let link = support::ip(&["-n", &a.0, "link", "show", "eth0"]);
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(link.contains("mtu 1350 "), "{link}");
    let df_ping = |size: usize| {
        Command::new("ip")
            .args([
                "netns", "exec", &a.0, "ping", "-c", "1", "-W", "2", "-M", "do",
            ])
            .args(["-s", &size.to_string(), &b.1])
            .output()
            .unwrap()
    };
    let full = df_ping(1350 - 28);
    assert!(
        full.status.success(),
        "a full-size packet: {}",
        String::from_utf8_lossy(&full.stdout)
    );
    let over = df_ping(1350 - 27);
    let text =
        String::from_utf8_lossy(&over.stdout).to_string() + &String::from_utf8_lossy(&over.stderr);
    assert!(!over.status.success(), "{text}");
    assert!(
        text.contains("mtu = 1350") || text.contains("mtu=1350"),
        "{text}"
    );
}

#[test]
fn a_failing_nftables_is_reported_and_pods_still_reach_each_other() {
    let Some(lab) = support::lab::lab("wn") else {
        return;
    };
    let out = lab.cmd_with_env(
        &["up", "--nodes", "2", "--pods", "1"],
        &[("WEFT_NFT", "/bin/false")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.run(&["wait", "60"]);
    lab.all_pods_reach_all_pods();
    let status = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("--socket")
        .arg(lab.state.join("admin-n1.sock"))
        .arg("status")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("kernel nat: FAILING") && status.contains("/bin/false"),
        "{status}"
    );
    // Nothing half-applied: no table at all.
    let list = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(1),
            "nft",
            "list",
            "table",
            "inet",
            "weft",
        ])
        .output()
        .unwrap();
    assert!(!list.status.success());
}
