//! Veth attachment end to end: weftd owns the host ends of the pod veths
//! (AF_PACKET), answers ARP/ND for the gateway, switches same-node traffic,
//! and delivers decapsulated frames to the right veth, with the nodes'
//! routing tables, proxy ARP and forwarding left alone.
//!
//! Two node namespaces joined by an underlay veth, pods wired by weft's own
//! CNI plugin ("attach": "veth"), a real weftd process per node. Needs root;
//! fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set. Everything
//! carries a unique prefix and is removed by Drop guards.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::traffic::{oversized_df_ping, ping, tcp_transfer, udp_gso_transfer};
use support::two_nodes::{Pod, TwoNodes};
use support::{enter, ip, ok, spawn_with_stdin};

/// Two nodes on one underlay link, weftd on each in veth attachment.
struct Cluster(TwoNodes);

impl std::ops::Deref for Cluster {
    type Target = TwoNodes;
    fn deref(&self) -> &TwoNodes {
        &self.0
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut TwoNodes {
        &mut self.0
    }
}

impl Cluster {
    /// The namespaces; None if they cannot be made and WEFT_SKIP_NETNS=1.
    fn new() -> Option<Cluster> {
        TwoNodes::new("wv").map(Cluster)
    }

    fn config(&self, k: usize) -> PathBuf {
        let o = 3 - k;
        let text = format!(
            "node_name = \"n{k}\"\ncni_socket = \"{sock}\"\nadmin_socket = \"{admin}\"\n\
             [underlay]\naddress = \"10.99.0.{k}\"\n\
             [overlay]\nencap = \"vxlan\"\npools = [\"10.244.0.0/16\", \"fd00:244::/48\"]\n\
             blocks = [\"10.244.{k}.0/26\", \"fd00:244:0:{k}::/122\"]\n\
             [dataplane]\nmode = \"userspace\"\nworkers = 2\nattach = \"veth\"\nveth_host_paths = false\nports_file = \"{ports}\"\nstats_file = \"{stats}\"\n\
             [[peers]]\nnode = \"n{o}\"\nunderlay = \"10.99.0.{o}\"\n\
             blocks = [\"10.244.{o}.0/26\", \"fd00:244:0:{o}::/122\"]\n",
            sock = self.socket(k).display(),
            admin = self.dir.join(format!("admin{k}.sock")).display(),
            ports = self.ports_file(k).display(),
            stats = self.stats_path(k).display(),
        );
        let path = self.dir.join(format!("n{k}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn socket(&self, k: usize) -> PathBuf {
        self.dir.join(format!("cni{k}.sock"))
    }

    fn ports_file(&self, k: usize) -> PathBuf {
        self.dir.join(format!("ports{k}.json"))
    }

    fn start_weftd(&mut self, k: usize) {
        let config = self.config(k);
        let socket = self.socket(k);
        self.0
            .start_weftd(k, &config, |n| n.stats_path(k).exists() && socket.exists());
    }

    fn cni(&self, k: usize, command: &str, id: &str, ns: &str) -> (bool, Value) {
        let conf = json!({
            "cniVersion": "1.1.0", "name": "weft", "type": "weft",
            "attach": "veth",
            // Larger than the overlay MTU on purpose: weftd must answer too-big.
            "mtu": 1500,
            "blocks": [format!("10.244.{k}.0/26"), format!("fd00:244:0:{k}::/122")],
            "stateDir": self.dir.join(format!("cni{k}")),
            "weftdSocket": self.socket(k),
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", format!("/var/run/netns/{ns}"))
            .stdout(Stdio::piped());
        // SAFETY: setns only, between fork and exec.
        unsafe { cmd.pre_exec(enter(&self.node(k))) };
        let out = spawn_with_stdin(&mut cmd, conf.to_string().as_bytes())
            .wait_with_output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), v)
    }

    fn pod(&mut self, k: usize, name: &str) -> Pod {
        let ns = self.namespace(name);
        let (success, v) = self.cni(k, "ADD", name, &ns);
        assert!(success, "CNI ADD: {v}");
        Pod::from_add(ns, &v)
    }

    /// Everything in node `k`'s routing tables and the sysctls the TUN
    /// attachment would change.
    fn host_state(&self, k: usize) -> String {
        let n = self.node(k);
        let mut s = String::new();
        for args in [
            vec!["-n", &n, "-4", "route", "show", "table", "all"],
            vec!["-n", &n, "-6", "route", "show", "table", "all"],
        ] {
            // Less the underlay's own link-local address, which appears
            // whenever its duplicate address detection ends.
            for line in String::from_utf8_lossy(&ip(&args).stdout).lines() {
                if !line.starts_with("local fe80::") {
                    s += line;
                    s += "\n";
                }
            }
        }
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            let out = Command::new("ip")
                .args(["netns", "exec", &n, "sysctl", "-n", key])
                .output()
                .unwrap();
            s += &format!("{key} = {}", String::from_utf8_lossy(&out.stdout));
        }
        s
    }
}

fn stat(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn drop_count(v: &Value, reason: &str) -> u64 {
    v["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("{reason} in {v}"))
}

#[test]
fn weftd_owns_the_pod_veths() {
    let Some(mut c) = Cluster::new() else {
        return;
    };
    let before = [c.host_state(1), c.host_state(2)];
    assert!(
        before[0].contains("net.ipv4.ip_forward = 0"),
        "{}",
        before[0]
    );
    c.start_weftd(1);
    c.start_weftd(2);
    let a = c.pod(1, "pa");
    let b = c.pod(1, "pb");
    let r = c.pod(2, "pr");

    // Across nodes, both families, both ways.
    assert!(ping(&a.ns, r.v4), "node 1 pod -> node 2 pod, IPv4");
    assert!(ping(&r.ns, a.v4), "node 2 pod -> node 1 pod, IPv4");
    assert!(ping(&a.ns, r.v6), "node 1 pod -> node 2 pod, IPv6");
    assert!(ping(&r.ns, b.v6), "node 2 pod -> node 1 pod, IPv6");
    // Same node, switched by weftd.
    assert!(ping(&a.ns, b.v4), "same-node pods, IPv4");
    assert!(ping(&b.ns, a.v6), "same-node pods, IPv6");
    let s1 = c.stats(1);
    assert!(stat(&s1, "local_packets") >= 12, "{s1}");
    // The gateway was resolved from weftd: ARP (IPv4) and ND (IPv6).
    assert!(stat(&s1, "gateway_replies") >= 4, "{s1}");
    let neigh = ip(&["-n", &a.ns, "neigh", "show", "169.254.1.1"]);
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains("ee:ee:ee:ee:ee:ee"),
        "{neigh:?}"
    );

    // 200 MB over TCP across nodes, and 50 MB on the node, checksummed.
    const BYTES: u64 = 200 * 1024 * 1024;
    let secs = tcp_transfer(&a.ns, &r.ns, SocketAddr::new(r.v4, 5001), BYTES);
    eprintln!(
        "200 MB across nodes in {secs:.2} s ({:.0} Mbit/s, test build)",
        BYTES as f64 * 8.0 / secs / 1e6
    );
    let secs = tcp_transfer(&r.ns, &a.ns, SocketAddr::new(a.v4, 5002), BYTES);
    eprintln!("200 MB back in {secs:.2} s");
    tcp_transfer(&a.ns, &b.ns, SocketAddr::new(b.v4, 5003), 50 * 1024 * 1024);

    // UDP super-packets (UDP_SEGMENT) across nodes and on the node.
    for (to, port) in [(&r, 5004), (&b, 5005)] {
        let (good, bad) = udp_gso_transfer(&a.ns, a.v4, &to.ns, SocketAddr::new(to.v4, port), 20);
        assert_eq!((good, bad), (60, 0), "UDP_SEGMENT datagrams to {}", to.v4);
    }

    // An oversized DF packet: pods have MTU 1500, the overlay 1450; with no
    // TUN in between, weftd itself answers "fragmentation needed".
    let text = oversized_df_ping(&a.ns, r.v4);
    assert!(
        text.contains("mtu = 1450") || text.contains("mtu=1450"),
        "ping -M do: {text}"
    );
    assert!(drop_count(&c.stats(1), "too_big") >= 1);

    // Spoofing: a source address the port was not given, then a source MAC.
    let spoofed_before = drop_count(&c.stats(1), "spoofed_source");
    ok(&["-n", &a.ns, "addr", "add", "10.244.1.60/32", "dev", "eth0"]);
    let out = Command::new("ip")
        .args([
            "netns", "exec", &a.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I",
        ])
        .args(["10.244.1.60", &r.v4.to_string()])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a spoofed source address got through"
    );
    ok(&["-n", &a.ns, "addr", "del", "10.244.1.60/32", "dev", "eth0"]);
    let mac = String::from_utf8_lossy(&ip(&["-n", &a.ns, "-br", "link", "show", "eth0"]).stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    ok(&[
        "-n",
        &a.ns,
        "link",
        "set",
        "eth0",
        "address",
        "02:00:00:00:66:66",
    ]);
    ok(&["-n", &a.ns, "neigh", "flush", "dev", "eth0"]);
    assert!(!ping(&a.ns, r.v4), "a spoofed source MAC got through");
    ok(&["-n", &a.ns, "link", "set", "eth0", "address", &mac]);
    let s1 = c.stats(1);
    assert!(
        drop_count(&s1, "spoofed_source") >= spoofed_before + 6,
        "{s1}"
    );
    assert!(ping(&a.ns, r.v4), "the pod's own addresses still pass");

    // A destination in this node's block with no pod: dropped, counted,
    // not flooded.
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &r.ns, "ping", "-c", "2", "-i", "0.2", "-W", "1",
        ])
        .arg("10.244.1.61")
        .output();
    assert!(drop_count(&c.stats(1), "no_endpoint") >= 2);

    // The hosts' routing tables and forwarding settings are as they were;
    // no proxy ARP on the ports; no TUN.
    assert_eq!(c.host_state(1), before[0], "node 1's routing was touched");
    assert_eq!(c.host_state(2), before[1], "node 2's routing was touched");
    let links = String::from_utf8_lossy(&ip(&["-n", &c.node(1), "-br", "link"]).stdout).to_string();
    assert!(!links.contains("weft0"), "{links}");
    for port in links.split_whitespace().filter(|w| w.starts_with("weft")) {
        let port = port.split('@').next().unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &c.node(1), "sysctl", "-n"])
            .arg(format!("net.ipv4.conf.{port}.proxy_arp"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{port}");
    }

    // kill -9 and restart: the ports are taken up again from the ports file.
    c.kill_weftd(1);
    assert!(!ping(&a.ns, r.v4), "nothing forwards while weftd is away");
    c.start_weftd(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(&a.ns, r.v4) {
        assert!(Instant::now() < deadline, "no forwarding after the restart");
    }
    assert!(
        ping(&r.ns, b.v4) && ping(&b.ns, a.v4),
        "every port came back"
    );

    // DEL unregisters the port.
    let (success, v) = c.cni(1, "DEL", "pb", &b.ns);
    assert!(success, "CNI DEL: {v}");
    let ports = std::fs::read_to_string(c.ports_file(1)).unwrap();
    let listed: Value = serde_json::from_str(&ports).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{ports}");
}

#[test]
fn veth_add_without_weftd_is_try_again_and_leaves_nothing() {
    let Some(mut c) = Cluster::new() else {
        return;
    };
    let ns = c.namespace("pt");
    let conf = json!({
        "cniVersion": "1.1.0", "name": "weft", "type": "weft",
        "attach": "veth",
        "blocks": ["10.244.1.0/26"],
        "stateDir": c.dir.join("cni-missing"),
        "weftdSocket": c.dir.join("nobody.sock"),
    });
    // weftd is not running: the pod would have no network, so ADD fails
    // with "try again later" and undoes its wiring.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "orphan")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", format!("/var/run/netns/{ns}"))
        .stdout(Stdio::piped());
    // SAFETY: setns only, between fork and exec.
    unsafe { cmd.pre_exec(enter(&c.node(1))) };
    let out = spawn_with_stdin(&mut cmd, conf.to_string().as_bytes())
        .wait_with_output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success());
    assert_eq!(v["code"], 11, "{v}");
    let links = String::from_utf8_lossy(&ip(&["-n", &c.node(1), "-br", "link"]).stdout).to_string();
    assert!(!links.contains("weft"), "the veth was removed: {links}");
    let pods = String::from_utf8_lossy(&ip(&["-n", &ns, "-br", "link"]).stdout).to_string();
    assert!(!pods.contains("eth0"), "{pods}");
}
