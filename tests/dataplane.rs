//! weftd's data plane end to end: two node namespaces joined by an underlay
//! veth, pods wired by weft's own CNI plugin, a real weftd process per node.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.
//! Namespaces, processes and files carry a unique prefix and are removed by
//! Drop guards, on failure too (deleting a node namespace also removes its
//! persistent TUN device and routes).

use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::traffic::{self, in_ns, ping, udp_gso_transfer};
use support::two_nodes::{Pod, TwoNodes};
use support::{enter, ip, ok, spawn_with_stdin};

/// Two nodes, one pod each, weftd on each (or a Linux vxlan on node 2).
struct Cluster {
    nodes: TwoNodes,
    pods: Vec<Pod>,
    /// vxlan, ipip or none; "+cross-subnet" turns CrossSubnet on.
    encap: &'static str,
    /// The nodes' underlay is IPv6 (fd00:99::k); otherwise IPv4 (10.99.0.k).
    underlay6: bool,
}

impl std::ops::Deref for Cluster {
    type Target = TwoNodes;
    fn deref(&self) -> &TwoNodes {
        &self.nodes
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut TwoNodes {
        &mut self.nodes
    }
}

impl Cluster {
    /// Builds the namespaces; None if they cannot be made and WEFT_SKIP_NETNS=1.
    fn new(linux_vxlan_on_node2: bool, encap: &'static str) -> Option<Cluster> {
        Cluster::build(linux_vxlan_on_node2, encap, false)
    }

    /// Two weftd nodes whose underlay is IPv6: each node's underlay link
    /// also has fd00:99::k/64, and weftd is configured with that address.
    fn over_ipv6_underlay(encap: &'static str) -> Option<Cluster> {
        Cluster::build(false, encap, true)
    }

    fn build(linux_vxlan_on_node2: bool, encap: &'static str, underlay6: bool) -> Option<Cluster> {
        let mut c = Cluster {
            nodes: TwoNodes::new("wd")?,
            pods: vec![],
            encap,
            underlay6,
        };
        if underlay6 {
            for (k, dev) in [(1, "u1"), (2, "u2")] {
                let addr = format!("fd00:99::{k}/64");
                ok(&["-n", &c.node(k), "addr", "add", &addr, "dev", dev, "nodad"]);
            }
        }
        for k in 1..=2 {
            // A default route, as real nodes have: proxy ARP answers for
            // 169.254.1.1 because it is routed elsewhere.
            ok(&[
                "-n",
                &c.node(k),
                "route",
                "add",
                "default",
                "via",
                "10.99.0.254",
            ]);
        }
        for k in 1..=2 {
            let pod = c.pod(k);
            c.pods.push(pod);
        }
        if linux_vxlan_on_node2 {
            c.start_weftd(1);
            c.linux_vxlan_on_node2();
        } else {
            c.start_weftd(1);
            c.start_weftd(2);
        }
        Some(c)
    }

    fn pod(&mut self, k: usize) -> Pod {
        let ns = self.namespace(&format!("p{k}"));
        let conf = json!({
            "cniVersion": "1.1.0", "name": "weft", "type": "weft",
            // Larger than the overlay MTU on purpose: weftd must answer too-big.
            "mtu": 1500,
            "blocks": [format!("10.244.{k}.0/26"), format!("fd00:244:0:{k}::/122")],
            "stateDir": self.dir.join(format!("cni{k}")),
            "weftdSocket": self.dir.join(format!("cni{k}.sock")),
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("pod{k}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", format!("/var/run/netns/{ns}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: setns only, between fork and exec.
        unsafe { cmd.pre_exec(enter(&self.node(k))) };
        let child = spawn_with_stdin(&mut cmd, conf.to_string().as_bytes());
        let out = child.wait_with_output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success(), "CNI ADD: {v}");
        Pod::from_add(ns, &v)
    }

    /// Node `k`'s underlay address.
    fn underlay(&self, k: usize) -> String {
        if self.underlay6 {
            format!("fd00:99::{k}")
        } else {
            format!("10.99.0.{k}")
        }
    }

    fn config(&self, k: usize) -> PathBuf {
        let o = 3 - k;
        let text = format!(
            "node_name = \"n{k}\"\ncni_socket = \"{}\"\nadmin_socket = \"{}\"\n[underlay]\naddress = \"{}\"\n[overlay]\nencap = \"{}\"\ncross_subnet = {}\n{}pools = [\"10.244.0.0/16\", \"fd00:244::/48\"]\nblocks = [\"10.244.{k}.0/26\", \"fd00:244:0:{k}::/122\"]\ntun_name = \"weft0\"\n[dataplane]\nmode = \"userspace\"\nworkers = 2\nbusy_poll_us = {}\nstats_file = \"{}\"\n[[peers]]\nnode = \"n{o}\"\nunderlay = \"{}\"\n{}blocks = [\"10.244.{o}.0/26\", \"fd00:244:0:{o}::/122\"]\n",
            self.dir.join(format!("cni{k}.sock")).display(),
            self.dir.join(format!("admin{k}.sock")).display(),
            self.underlay(k),
            self.encap.trim_end_matches("+cross-subnet"),
            self.encap.ends_with("+cross-subnet"),
            // The cross-subnet cluster sends its VXLAN from the VXLAN port
            // alone (the fixed-port setting); the others per flow.
            if self.encap.ends_with("+cross-subnet") { "source_ports = \"4789\"\n" } else { "" },
            // IP-in-IP runs its workers without busy polling: both ways of
            // going idle are exercised.
            if self.encap == "ipip" { 0 } else { 100 },
            self.stats_path(k).display(),
            self.underlay(o),
            if o == 2 { format!("vtep_mac = \"{LINUX_VXLAN_MAC}\"\n") } else { String::new() },
        );
        let path = self.dir.join(format!("n{k}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start_weftd(&mut self, k: usize) {
        let config = self.config(k);
        // Up when its routes are in place and it has written stats (with
        // encap none, the peer's IPv6 block has no route: 3, not 4).
        let routes = if self.encap == "none" { 3 } else { 4 };
        self.nodes.start_weftd(k, &config, |n| {
            n.weft_routes(k) >= routes && n.stats_path(k).exists()
        });
    }

    /// Node 2 runs the kernel's own VXLAN device instead of weftd, set up the
    /// way a Flannel-style node would be, with static FDB entries for node 1
    /// (its ARP for node 1's gateway address is answered by weftd).
    fn linux_vxlan_on_node2(&mut self) {
        let n2 = self.node(2);
        let weft_mac = weft::dataplane::vtep_mac("n1").to_string();
        ok(&[
            "-n",
            &n2,
            "link",
            "add",
            "vx0",
            "address",
            LINUX_VXLAN_MAC,
            "type",
            "vxlan",
            "id",
            "1",
            "dstport",
            "4789",
            "local",
            "10.99.0.2",
            "dev",
            "u2",
            "nolearning",
        ]);
        ok(&["-n", &n2, "link", "set", "vx0", "mtu", "1450", "up"]);
        bridge_fdb_append(&n2, &weft_mac, "10.99.0.1");
        // No static neighbour entry: broadcasts (ARP) go to weft's VTEP
        // through the all-zeros FDB entry, and weftd answers from its tables.
        bridge_fdb_append(&n2, "00:00:00:00:00:00", "10.99.0.1");
        ok(&[
            "-n",
            &n2,
            "route",
            "add",
            "10.244.1.0/26",
            "via",
            "10.244.1.0",
            "dev",
            "vx0",
            "onlink",
        ]);
        let s = Command::new("ip")
            .args([
                "netns",
                "exec",
                &n2,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()
            .unwrap();
        assert!(s.status.success());
    }
}

/// `bridge fdb append MAC dev vx0 dst DST` in namespace `ns`.
fn bridge_fdb_append(ns: &str, mac: &str, dst: &str) {
    let b = Command::new("bridge")
        .args(["-n", ns, "fdb", "append", mac, "dev", "vx0", "dst", dst])
        .output()
        .unwrap();
    assert!(
        b.status.success(),
        "bridge fdb: {}",
        String::from_utf8_lossy(&b.stderr)
    );
}

const LINUX_VXLAN_MAC: &str = "02:00:00:00:0a:02";

/// 200 MB-class transfer from pod 1 to pod 2, checksummed.
fn tcp_transfer(c: &Cluster, bytes: u64, port: u16) -> f64 {
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    traffic::tcp_transfer(&p1.ns, &p2.ns, SocketAddr::new(p2.v4, port), bytes)
}

/// Ping both ways in both pod families, 200 MB of TCP checksummed on the
/// far side (on `port`), and the tiny-MSS transfers (on `port + 4`).
fn pings_and_transfers(c: &Cluster, underlay: &str, port: u16) {
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    assert!(ping(&p1.ns, p2.v4), "pod 1 -> pod 2 over IPv4");
    assert!(ping(&p2.ns, p1.v4), "pod 2 -> pod 1 over IPv4");
    assert!(ping(&p1.ns, p2.v6), "pod 1 -> pod 2 over IPv6");
    assert!(ping(&p2.ns, p1.v6), "pod 2 -> pod 1 over IPv6");
    const BYTES: u64 = 200 * 1024 * 1024;
    let secs = tcp_transfer(c, BYTES, port);
    eprintln!(
        "{underlay}: 200 MB in {secs:.2} s ({:.0} Mbit/s, test build)",
        BYTES as f64 * 8.0 / secs / 1e6
    );
    small_mss_transfers(c, port + 4);
}

/// What a node's weftd dropped, but for `no_route` (which the tests' own
/// probes cause).
fn drops_but_no_route(stats: &Value) -> u64 {
    let d = &stats["drops"];
    let all: u64 = d
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    all - d["no_route"].as_u64().unwrap()
}

/// A sender with a tiny MSS (88 bytes): its 64 KiB super-packets carry
/// ~700 segments, far more than one GSO send or one batch holds. They must
/// all arrive, in both families, and weftd must count no bad offload.
fn small_mss_transfers(c: &Cluster, port: u16) {
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    for to in [p2.v4, p2.v6] {
        traffic::tcp_transfer_with_mss(
            &p1.ns,
            &p2.ns,
            SocketAddr::new(to, port),
            4 * 1024 * 1024,
            Some(88),
        );
    }
    let s1 = c.stats(1);
    assert_eq!(s1["drops"]["bad_offload"].as_u64(), Some(0), "{s1}");
}

#[test]
fn two_weft_nodes_carry_pod_traffic() {
    let Some(mut c) = Cluster::new(false, "vxlan") else {
        return;
    };
    pings_and_transfers(&c, "over IPv4", 5001);
    let (p1, p2) = (&c.pods[0], &c.pods[1]);

    // A UDP burst: 2,000 numbered datagrams in bursts of 50. Every one that
    // arrives must be intact; UDP may lose some on a loaded machine, but the
    // overlay must carry the burst (at least 90 %), and weftd must not drop
    // any itself.
    let to = SocketAddr::new(p2.v4, 5002);
    let sink = in_ns(&p2.ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_recv_buffer_size(4 << 20).unwrap();
        s.bind(&to.into()).unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let (mut n, mut buf) = (0u32, [0u8; 2048]);
        while let Ok(k) = s.recv(&mut buf) {
            assert_eq!(k, 512, "datagram length");
            let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            assert!(
                buf[4..k].iter().all(|b| *b == i as u8),
                "datagram {i} intact"
            );
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(100));
    let from = p1.v4;
    in_ns(&p1.ns, move || {
        let s = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        let mut d = [0u8; 512];
        for i in 0..2000u32 {
            d[..4].copy_from_slice(&i.to_be_bytes());
            d[4..].fill(i as u8);
            s.send_to(&d, to).unwrap();
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .join()
    .unwrap();
    let got = sink.join().unwrap();
    eprintln!("UDP burst: {got} of 2000 datagrams arrived");
    assert!(got >= 1800, "UDP burst: {got} of 2000 datagrams arrived");

    // Applications that send with UDP segmentation offload (QUIC stacks):
    // the TUN hands weftd UDP super-packets, which must reach the far pod
    // as the datagrams the application asked for, in both families. The
    // datagrams of each arrive together, so node 2 writes them to its TUN
    // as one USO super-packet, which pod 2's kernel cuts back into them.
    let merged_before = c.stats(2)["rx_super_packets"].as_u64().unwrap();
    for (from, to) in [(p1.v4, p2.v4), (p1.v6, p2.v6)] {
        let (good, bad) = udp_gso_transfer(&p1.ns, from, &p2.ns, SocketAddr::new(to, 5004), 20);
        assert_eq!((good, bad), (60, 0), "UDP_SEGMENT datagrams to {to}");
    }
    let s2 = c.stats(2);
    let merged = s2["rx_super_packets"].as_u64().unwrap() - merged_before;
    assert!(
        merged >= 20,
        "UDP datagrams coalesced into {merged} super-packets: {s2}"
    );
    assert_eq!(
        drops_but_no_route(&s2),
        0,
        "weftd on node 2 dropped traffic: {s2}"
    );

    // An oversized packet with DF set draws ICMP "fragmentation needed"
    // with the overlay MTU (pods have MTU 1500, the overlay 1450). The node's
    // kernel sends it: the TUN's MTU is the overlay MTU, so nothing too big
    // reaches weftd (whose own check is for attachments without a TUN).
    let text = traffic::oversized_df_ping(&p1.ns, p2.v4);
    assert!(
        text.contains("mtu = 1450") || text.contains("mtu=1450"),
        "ping -M do: {text}"
    );
    let s1 = c.stats(1);
    assert!(s1["tx_packets"].as_u64().unwrap() > 100_000, "{s1}");

    // Packets from the underlay that must be dropped, and counted.
    let vx_to = |src_inner: [u8; 4], dst_inner: [u8; 4], vni: u32| {
        let mut inner = Vec::new();
        etherparse::PacketBuilder::ipv4(src_inner, dst_inner, 64)
            .udp(1, 2)
            .write(&mut inner, b"x")
            .unwrap();
        let mut buf = vec![0u8; 64 + inner.len()];
        buf[64..].copy_from_slice(&inner);
        let end = buf.len();
        let enc = encap::vxlan::VxlanEncap::new(
            encap::vxlan::Vni::new(vni).unwrap(),
            encap::MacAddr([2, 0, 0, 0, 0, 9]),
            weft::dataplane::vtep_mac("n1"),
        );
        let at = enc.encap_payload(&mut buf, 64..end).unwrap();
        buf[at..].to_vec()
    };
    let vx = |src_inner: [u8; 4], vni: u32| vx_to(src_inner, [10, 244, 1, 1], vni);
    let (spoofed, wrong_vni, good) = (
        vx([10, 244, 9, 9], 1),
        vx([10, 244, 2, 1], 7),
        vx([10, 244, 2, 1], 1),
    );
    // From the member itself, well formed, but not for node 1: a broadcast
    // and a packet for node 2's own block (transit back through node 1).
    let (broadcast, transit) = (
        vx_to([10, 244, 2, 1], [255, 255, 255, 255], 1),
        vx_to([10, 244, 2, 1], [10, 244, 2, 9], 1),
    );
    ok(&["-n", &c.node(2), "addr", "add", "10.99.0.3/24", "dev", "u2"]);
    in_ns(&c.node(2), move || {
        let rogue = UdpSocket::bind("10.99.0.3:0").unwrap();
        let peer = UdpSocket::bind("10.99.0.2:0").unwrap();
        for _ in 0..10 {
            rogue.send_to(&good, "10.99.0.1:4789").unwrap();
            peer.send_to(&spoofed, "10.99.0.1:4789").unwrap();
            peer.send_to(&wrong_vni, "10.99.0.1:4789").unwrap();
            peer.send_to(b"\x08\x00\x00", "10.99.0.1:4789").unwrap();
            peer.send_to(&broadcast, "10.99.0.1:4789").unwrap();
            peer.send_to(&transit, "10.99.0.1:4789").unwrap();
        }
    })
    .join()
    .unwrap();
    let s1 = c.stats(1);
    let d = &s1["drops"];
    assert!(d["not_for_this_node"].as_u64().unwrap() >= 20, "{s1}");
    assert!(d["unknown_source"].as_u64().unwrap() >= 10, "{s1}");
    assert!(d["spoofed_inner"].as_u64().unwrap() >= 10, "{s1}");
    assert!(d["wrong_vni"].as_u64().unwrap() >= 10, "{s1}");
    assert!(d["bad_vxlan"].as_u64().unwrap() >= 10, "{s1}");

    // kill -9 and restart: routes stay while weftd is away, no duplicates after.
    let routes = c.weft_routes(1);
    c.kill_weftd(1);
    assert_eq!(
        c.weft_routes(1),
        routes,
        "routes persist while weftd is down"
    );
    c.start_weftd(1);
    assert_eq!(
        c.weft_routes(1),
        routes,
        "no duplicate routes after a restart"
    );
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    assert!(ping(&p1.ns, p2.v4), "forwarding again after the restart");

    // Uninstall removes weft's routes and TUN.
    c.kill_weftd(1);
    let mut u = Command::new(env!("CARGO_BIN_EXE_weftd"));
    u.env_clear()
        .arg("--config")
        .arg(c.config(1))
        .arg("uninstall");
    // SAFETY: setns only, between fork and exec.
    unsafe { u.pre_exec(enter(&c.node(1))) };
    assert!(u.status().unwrap().success());
    assert_eq!(c.weft_routes(1), 0);
    assert!(
        !ip(&["-n", &c.node(1), "link", "show", "weft0"])
            .status
            .success(),
        "TUN removed"
    );
}

/// What one VXLAN datagram from node 1 carried, as seen on node 2's
/// underlay link: the outer source port and the inner packet's transport
/// ports (0 for ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Captured {
    outer_source_port: u16,
    inner_ports: (u16, u16),
    icmp: bool,
}

/// Captures VXLAN datagrams from 10.99.0.1 arriving in namespace `ns`
/// (an AF_PACKET socket on every link) until `stop` is set.
fn capture_vxlan(
    ns: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Captured>> {
    in_ns(ns, move || {
        let all = (nix::libc::ETH_P_ALL as u16).to_be();
        let s = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(i32::from(all))),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let s: std::net::UdpSocket = std::os::fd::OwnedFd::from(s).into();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok(n) = s.recv(&mut buf) else { continue };
            let Ok(outer) = etherparse::SlicedPacket::from_ethernet(&buf[..n]) else {
                continue;
            };
            let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(udp))) =
                (&outer.net, &outer.transport)
            else {
                continue;
            };
            if ip.header().source() != [10, 99, 0, 1] || udp.destination_port() != 4789 {
                continue;
            }
            // A GSO send crosses the veth whole: one outer header, then
            // the datagrams' payloads (VXLAN + inner frame) back to back.
            let mut rest = udp.payload();
            while rest.len() >= 8 + 14 + 20 {
                let frame = &rest[8..];
                let inner_len = match frame[14] >> 4 {
                    4 => usize::from(u16::from_be_bytes([frame[16], frame[17]])),
                    6 => 40 + usize::from(u16::from_be_bytes([frame[18], frame[19]])),
                    _ => break,
                };
                let Some(frame) = frame.get(..14 + inner_len) else {
                    break;
                };
                rest = &rest[8 + frame.len()..];
                let Ok(inner) = etherparse::SlicedPacket::from_ethernet(frame) else {
                    break;
                };
                let (inner_ports, icmp) = match &inner.transport {
                    Some(etherparse::TransportSlice::Udp(u)) => {
                        ((u.source_port(), u.destination_port()), false)
                    }
                    Some(etherparse::TransportSlice::Tcp(t)) => {
                        ((t.source_port(), t.destination_port()), false)
                    }
                    Some(etherparse::TransportSlice::Icmpv4(_)) => ((0, 0), true),
                    _ => continue,
                };
                out.push(Captured {
                    outer_source_port: udp.source_port(),
                    inner_ports,
                    icmp,
                });
            }
        }
        out
    })
}

/// Node `k`'s packets delivered, per worker.
fn rx_per_worker(c: &Cluster, k: usize) -> Vec<u64> {
    c.stats(k)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rx_packets"].as_u64().unwrap())
        .collect()
}

/// RFC 7348 section 5 on the wire: 16 inner UDP flows from one pod to
/// another leave node 1 on outer source ports chosen per flow (one port per
/// flow, many ports in all, from the default range, never the VXLAN port);
/// a ping leaves from the port `weftctl trace` names; and on node 2 the
/// flows are spread over both workers (SO_REUSEPORT hashes the outer
/// ports), as the per-worker counters show.
/// Tunnel packets (VXLAN or IP-in-IP, as the cluster's encapsulation)
/// node `k` has received over each underlay family, IPv4 and IPv6: an
/// nftables table counting them, added by the first call.
fn tunnel_packets_by_family(c: &Cluster, k: usize) -> (u64, u64) {
    let ns = c.node(k);
    let nft = |script: &str| support::nft(&ns, script);
    if nft("list tables").contains("weft-test-tunnel") {
        let text = nft("list counters table inet weft-test-tunnel");
        let count = |name: &str| -> u64 {
            let at = text
                .find(&format!("counter {name} "))
                .expect("counter listed");
            let rest = &text[at..];
            let p = rest.find("packets ").expect("packets") + "packets ".len();
            rest[p..].split(' ').next().unwrap().parse().unwrap()
        };
        return (count("v4"), count("v6"));
    }
    let tunnel = if c.encap == "ipip" {
        "meta l4proto { 4, 41 }"
    } else {
        "udp dport 4789"
    };
    nft(&format!(
        "add table inet weft-test-tunnel\n\
         add counter inet weft-test-tunnel v4\n\
         add counter inet weft-test-tunnel v6\n\
         add chain inet weft-test-tunnel in {{ type filter hook input priority -10 ; }}\n\
         add rule inet weft-test-tunnel in meta nfproto ipv4 {tunnel} counter name v4\n\
         add rule inet weft-test-tunnel in meta nfproto ipv6 {tunnel} counter name v6\n"
    ));
    (0, 0)
}

/// Ping both ways in both pod families, 200 MB of checksummed TCP, tiny-MSS
/// transfers and "fragmentation needed" with the overlay MTU (`mtu`), over
/// an IPv6 underlay, with nothing tunnelled over IPv4 and nothing dropped.
fn carries_pod_traffic_over_an_ipv6_underlay(encap: &'static str, mtu: usize) {
    let Some(c) = Cluster::over_ipv6_underlay(encap) else {
        return;
    };
    assert_eq!(tunnel_packets_by_family(&c, 2), (0, 0), "counting from now");
    pings_and_transfers(&c, &format!("{encap} over IPv6"), 5031);
    let (v4, v6) = tunnel_packets_by_family(&c, 2);
    assert_eq!(v4, 0, "nothing tunnelled over IPv4 reached node 2");
    // Counted as they cross the veth: GSO batches count once.
    assert!(v6 > 1_000, "{encap} over IPv6 reached node 2: {v6} packets");
    // The outer IPv6 header is 20 bytes longer than IPv4's, and a pod
    // sending more than the overlay MTU with DF set is told the MTU.
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    let text = traffic::oversized_df_ping(&p1.ns, p2.v4);
    assert!(
        text.contains(&format!("mtu = {mtu}")) || text.contains(&format!("mtu={mtu}")),
        "ping -M do: {text}"
    );
    let s2 = c.stats(2);
    assert_eq!(
        drops_but_no_route(&s2),
        0,
        "weftd on node 2 dropped traffic: {s2}"
    );
}

#[test]
fn vxlan_over_an_ipv6_underlay() {
    carries_pod_traffic_over_an_ipv6_underlay("vxlan", 1500 - 70);
}

#[test]
fn ip_in_ip_over_an_ipv6_underlay() {
    carries_pod_traffic_over_an_ipv6_underlay("ipip", 1500 - 40);
}

#[test]
fn vxlan_flows_leave_on_their_own_source_ports_and_spread_over_workers() {
    let Some(c) = Cluster::new(false, "vxlan") else {
        return;
    };
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let capture = capture_vxlan(&c.node(2), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let before = rx_per_worker(&c, 2);
    assert_eq!(before.len(), 2, "two workers on node 2");

    const FLOWS: u16 = 16;
    let to = SocketAddr::new(p2.v4, 7000);
    let sink = in_ns(&p2.ns, move || {
        let s = UdpSocket::bind(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let (mut n, mut buf) = (0u32, [0u8; 256]);
        while s.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(100));
    let from = p1.v4;
    in_ns(&p1.ns, move || {
        let socks: Vec<UdpSocket> = (0..FLOWS)
            .map(|i| UdpSocket::bind(SocketAddr::new(from, 41000 + i)).unwrap())
            .collect();
        for round in 0..20u8 {
            for s in &socks {
                s.send_to(&[round; 100], to).unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .join()
    .unwrap();
    let delivered = sink.join().unwrap();
    assert!(ping(&p1.ns, p2.v4), "pod 1 -> pod 2");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = capture.join().unwrap();
    assert!(
        delivered >= u32::from(FLOWS) * 18,
        "{delivered} of {} datagrams",
        u32::from(FLOWS) * 20
    );

    // One outer port per flow, many ports over the flows, in range.
    let mut port_of_flow: std::collections::HashMap<(u16, u16), std::collections::HashSet<u16>> =
        std::collections::HashMap::new();
    for d in seen.iter().filter(|d| d.inner_ports.1 == 7000) {
        port_of_flow
            .entry(d.inner_ports)
            .or_default()
            .insert(d.outer_source_port);
    }
    assert_eq!(
        port_of_flow.len(),
        usize::from(FLOWS),
        "flows captured: {port_of_flow:?}"
    );
    for (flow, ports) in &port_of_flow {
        assert_eq!(ports.len(), 1, "flow {flow:?} left on ports {ports:?}");
    }
    let ports: std::collections::HashSet<u16> = port_of_flow.values().flatten().copied().collect();
    assert!(
        ports.len() >= 8,
        "16 flows left on only {} ports: {ports:?}",
        ports.len()
    );
    assert!(
        ports.iter().all(|p| (32768..=60999).contains(p)),
        "ports outside the default range: {ports:?}"
    );

    // The ping left from the port trace names (one decision, two users).
    let ping_ports: std::collections::HashSet<u16> = seen
        .iter()
        .filter(|d| d.icmp)
        .map(|d| d.outer_source_port)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args([
            "--socket",
            c.dir.join("admin1.sock").to_str().unwrap(),
            "--json",
            "trace",
            &p1.v4.to_string(),
            &p2.v4.to_string(),
        ])
        .output()
        .unwrap();
    let trace: Value = serde_json::from_slice(&out.stdout).unwrap();
    let named = trace["how"]["source_port_ping"].as_u64().unwrap() as u16;
    assert_eq!(ping_ports, [named].into(), "trace: {trace}");

    // Node 2's two workers both received some of the flows.
    let after = rx_per_worker(&c, 2);
    let busy = after.iter().zip(&before).filter(|(a, b)| a > b).count();
    assert_eq!(
        busy, 2,
        "workers' rx_packets before {before:?}, after {after:?}"
    );
}

/// Chaos, short form: weftd on node 1 killed with -9 and restarted while a
/// TCP stream runs from pod 1 to pod 2. The stream survives (every byte,
/// checksummed end to end), the routes stay while weftd is away and are
/// not duplicated after, and weftd on node 2 drops nothing but what it
/// must (no route to a pod it does not know, never a malformed packet).
#[test]
fn a_tcp_stream_survives_weftd_killed_and_restarted_under_it() {
    let Some(mut c) = Cluster::new(false, "vxlan") else {
        return;
    };
    let routes = c.weft_routes(1);
    let (p1ns, p2ns, to) = (
        c.pods[0].ns.clone(),
        c.pods[1].ns.clone(),
        SocketAddr::new(c.pods[1].v4, 5011),
    );
    // 48 MB at 12 MB/s: about 4 s, the kill after 1 s of it.
    let pause = traffic::tcp_stream_while(&p1ns, &p2ns, to, 48 << 20, 12 << 20, || {
        std::thread::sleep(Duration::from_secs(1));
        c.kill_weftd(1);
        assert_eq!(
            c.weft_routes(1),
            routes,
            "routes persist while weftd is down"
        );
        std::thread::sleep(Duration::from_millis(300));
        c.start_weftd(1);
    });
    eprintln!("longest pause in the stream: {pause:?}");
    assert_eq!(
        c.weft_routes(1),
        routes,
        "no duplicate routes after the restart"
    );
    let s2 = c.stats(2);
    for (why, n) in s2["drops"].as_object().unwrap() {
        let n = n.as_u64().unwrap();
        assert!(
            n == 0 || why == "no_route",
            "weftd on node 2 dropped {n} packets as {why}: {s2}"
        );
    }
}

/// Chaos, short form: 10 % of the underlay's packets lost on their way into
/// each node (nftables, both directions of the stream) while TCP runs
/// through the overlay: the stream arrives whole and intact.
#[test]
fn a_tcp_stream_survives_ten_percent_underlay_loss() {
    let Some(c) = Cluster::new(false, "vxlan") else {
        return;
    };
    for k in 1..=2 {
        let dev = format!("u{k}");
        for rule in [
            "add table inet weftloss".to_string(),
            "add chain inet weftloss input { type filter hook input priority 0; policy accept; }"
                .to_string(),
            format!("add rule inet weftloss input iifname {dev} udp dport 4789 numgen random mod 10 == 0 counter drop"),
        ] {
            let out = Command::new("ip")
                .args(["netns", "exec", &c.node(k), "nft"])
                .args(rule.split(' '))
                .output()
                .unwrap();
            assert!(out.status.success(), "nft {rule}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    let pause = traffic::tcp_stream_while(
        &p1.ns,
        &p2.ns,
        SocketAddr::new(p2.v4, 5012),
        8 << 20,
        4 << 20,
        || {},
    );
    eprintln!("longest pause in the stream: {pause:?}");
    let listed = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.node(2),
            "nft",
            "list",
            "table",
            "inet",
            "weftloss",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !text.contains("packets 0 "),
        "the loss rule dropped something: {text}"
    );
}

#[test]
fn weft_interoperates_with_linux_vxlan() {
    let Some(c) = Cluster::new(true, "vxlan") else {
        return;
    };
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    assert!(ping(&p1.ns, p2.v4), "weft node -> Linux vxlan node");
    assert!(ping(&p2.ns, p1.v4), "Linux vxlan node -> weft node");
    let s1 = c.stats(1);
    assert!(
        s1["rx_packets"].as_u64().unwrap() >= 3 && s1["tx_packets"].as_u64().unwrap() >= 3,
        "{s1}"
    );
    // The Linux node resolved weft's gateway address by ARP, answered by
    // weftd with its VTEP MAC.
    assert!(s1["arp_replies"].as_u64().unwrap() >= 1, "{s1}");
    let neigh = ip(&[
        "-n",
        &c.node(2),
        "neigh",
        "show",
        "10.244.1.0",
        "dev",
        "vx0",
    ]);
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    let weft_mac = weft::dataplane::vtep_mac("n1").to_string();
    assert!(neigh.contains(&weft_mac), "{neigh}");

    // IPv6 the same way, with no static neighbour entry either: the Linux
    // node's neighbour solicitation for weft's block address goes to weft's
    // VTEP through the all-zeros FDB entry, and weftd answers it from fdb.
    let n2 = c.node(2);
    ok(&[
        "netns",
        "exec",
        &n2,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    ok(&[
        "-n",
        &n2,
        "-6",
        "route",
        "add",
        "fd00:244:0:1::/122",
        "via",
        "fd00:244:0:1::",
        "dev",
        "vx0",
        "onlink",
    ]);
    assert!(ping(&p1.ns, p2.v6), "weft node -> Linux vxlan node, IPv6");
    assert!(ping(&p2.ns, p1.v6), "Linux vxlan node -> weft node, IPv6");
    let s1 = c.stats(1);
    assert!(s1["nd_replies"].as_u64().unwrap() >= 1, "{s1}");
    let neigh = ip(&[
        "-n",
        &n2,
        "-6",
        "neigh",
        "show",
        "fd00:244:0:1::",
        "dev",
        "vx0",
    ]);
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(neigh.contains(&weft_mac), "{neigh}");
}

#[test]
fn two_weft_nodes_over_ip_in_ip_without_the_ipip_module() {
    let Some(c) = Cluster::new(false, "ipip") else {
        return;
    };
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    assert!(ping(&p1.ns, p2.v4), "IPv4 in IPv4 (protocol 4)");
    assert!(ping(&p2.ns, p1.v6), "IPv6 in IPv4 (protocol 41)");
    // 200 MB over TCP, checksummed on the far side.
    tcp_transfer(&c, 200 * 1024 * 1024, 5003);
    small_mss_transfers(&c, 5005);
    // UDP super-packets from an application using UDP_SEGMENT: they cross
    // as datagrams and reach pod 2 merged again (one USO write each).
    let merged_before = c.stats(2)["rx_super_packets"].as_u64().unwrap();
    let (good, bad) = udp_gso_transfer(&p1.ns, p1.v4, &p2.ns, SocketAddr::new(p2.v4, 5004), 20);
    assert_eq!((good, bad), (60, 0), "UDP_SEGMENT datagrams over IP-in-IP");
    let s2 = c.stats(2);
    let merged = s2["rx_super_packets"].as_u64().unwrap() - merged_before;
    assert!(
        merged >= 1,
        "UDP datagrams coalesced into {merged} super-packets: {s2}"
    );
    // An IP-in-IP packet from an address that is no node is dropped, counted.
    ok(&["-n", &c.node(2), "addr", "add", "10.99.0.3/24", "dev", "u2"]);
    in_ns(&c.node(2), move || {
        let mut inner = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 244, 2, 1], [10, 244, 1, 1], 64)
            .udp(1, 2)
            .write(&mut inner, b"x")
            .unwrap();
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(4)),
        )
        .unwrap();
        s.bind(&SocketAddr::from(([10, 99, 0, 3], 0)).into())
            .unwrap();
        for _ in 0..10 {
            s.send_to(&inner, &SocketAddr::from(([10, 99, 0, 1], 0)).into())
                .unwrap();
        }
    })
    .join()
    .unwrap();
    let s1 = c.stats(1);
    assert!(
        s1["drops"]["unknown_source"].as_u64().unwrap() >= 10,
        "{s1}"
    );
    // No ipip module was needed: no tunl0 appeared.
    assert!(!ip(&["-n", &c.node(1), "link", "show", "tunl0"])
        .status
        .success());
}

/// An underlay NIC with GRO (the default on real hardware) merges an
/// IP-in-IP TCP flow's segments before weftd reads them, and the raw socket
/// hands over packets of up to 64 KiB. They must reach the pod whole and
/// intact, in both families (weftd used to drop them all as too long, and
/// TCP crawled at a few hundred kbit/s). The lab's veth acts as such a NIC
/// once node 1's end does not segment (so segments cross it, as on a wire)
/// and node 2's end runs GRO with a flush timeout (so one NAPI poll sees
/// more than one segment).
#[test]
fn ip_in_ip_survives_underlay_gro() {
    let Some(c) = Cluster::new(false, "ipip") else {
        return;
    };
    let (n1, n2) = (c.node(1), c.node(2));
    for (ns, args) in [
        (&n1, ["-K", "u1", "tso", "off", "gso", "off"]),
        (&n2, ["-K", "u2", "gro", "on", "", ""]),
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ethtool"])
            .args(&args)
            .output()
            .expect("ethtool");
        assert!(out.status.success(), "ethtool {args:?}: {out:?}");
    }
    let sysfs = "echo 20000 > /sys/class/net/u2/gro_flush_timeout && \
                 echo 100 > /sys/class/net/u2/napi_defer_hard_irqs";
    let out = Command::new("ip")
        .args(["netns", "exec", &n2, "sh", "-c", sysfs])
        .output()
        .unwrap();
    assert!(out.status.success(), "GRO flush timeout: {out:?}");

    let before = c.stats(2)["rx_underlay_gro"].as_u64().unwrap();
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    for (to, port) in [(p2.v4, 5006), (p2.v6, 5007)] {
        traffic::tcp_transfer(&p1.ns, &p2.ns, SocketAddr::new(to, port), 32 * 1024 * 1024);
    }
    let s2 = c.stats(2);
    let merged = s2["rx_underlay_gro"].as_u64().unwrap() - before;
    eprintln!("packets merged by the underlay's GRO, delivered whole: {merged}");
    assert!(
        merged > 0,
        "the underlay merged nothing: the test tests nothing: {s2}"
    );
    for why in ["bad_vxlan", "bad_ipip", "bad_inner_checksum", "io_error"] {
        assert_eq!(s2["drops"][why].as_u64(), Some(0), "{why}: {s2}");
    }
}

#[test]
fn two_nodes_without_encapsulation() {
    let Some(c) = Cluster::new(false, "none") else {
        return;
    };
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    assert!(ping(&p1.ns, p2.v4), "pod 1 -> pod 2, routed");
    assert!(ping(&p2.ns, p1.v4), "pod 2 -> pod 1, routed");
    let routes = support::weft_route_lines(&c.node(1));
    assert!(
        routes.contains("10.244.2.0/26 via 10.99.0.2 dev u1"),
        "{routes}"
    );
    // IPv6 blocks over an IPv4 underlay cannot be routed directly: no route.
    assert!(!routes.contains("fd00:244:0:2::/122"), "{routes}");
    // Nothing went through weftd's tunnel.
    let s1 = c.stats(1);
    assert_eq!(s1["tx_packets"].as_u64(), Some(0), "{s1}");
}

#[test]
fn cross_subnet_routes_same_subnet_nodes_directly_and_encapsulates_the_rest() {
    let Some(c) = Cluster::new(false, "vxlan+cross-subnet") else {
        return;
    };
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    let before = c.stats(1)["tx_packets"].as_u64().unwrap();
    assert!(ping(&p1.ns, p2.v4) && ping(&p2.ns, p1.v4), "IPv4: direct");
    let routes = support::weft_route_lines(&c.node(1));
    assert!(
        routes.contains("10.244.2.0/26 via 10.99.0.2 dev u1"),
        "{routes}"
    );
    assert_eq!(
        c.stats(1)["tx_packets"].as_u64().unwrap(),
        before,
        "IPv4 bypassed the tunnel"
    );
    // IPv6 pods over the IPv4 underlay: through the TUN, VXLAN (from
    // port 4789 alone: `source_ports = "4789"`).
    assert!(routes.contains("fd00:244:0:2::/122 dev weft0"), "{routes}");
    assert!(
        ping(&p1.ns, p2.v6) && ping(&p2.ns, p1.v6),
        "IPv6: encapsulated"
    );
    assert!(c.stats(1)["tx_packets"].as_u64().unwrap() > before);
}
