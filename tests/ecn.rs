//! ECN across the tunnel (RFC 6040), with real weftd processes in the lab:
//! a pod's ECN-capable packet leaves its node with the ECN field copied to
//! the outer header, so an underlay router can mark congestion on it; a CE
//! mark set on the outer header reaches the receiving pod in the inner one.
//! The "router" is an nftables rule on node 1's way out that sets CE on
//! every outer ECT(0) tunnel packet. VXLAN and IP-in-IP; IPv4 and IPv6
//! pods, IPv4 underlay.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

mod support;

use nix::sys::socket::{setsockopt, sockopt};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use weft::dataplane::sys::udp_gso;

const NOT_ECT: u8 = 0;
const ECT_0: u8 = 2;
const CE: u8 = 3;

/// Sends one datagram from `from_ns` (ECN field `ecn`, DSCP 0x28) to
/// `to` in `to_ns`, and returns the TOS / traffic class it arrived with.
fn tos_on_arrival(from_ns: &str, to_ns: &str, to: SocketAddr, ecn: u8) -> u8 {
    let mut enter_rx = support::enter(to_ns);
    let rx = std::thread::spawn(move || {
        enter_rx().unwrap();
        let s = UdpSocket::bind(to).unwrap();
        assert!(udp_gso::enable_recv_tos(&s));
        s
    })
    .join()
    .unwrap();
    let mut enter_tx = support::enter(from_ns);
    std::thread::spawn(move || {
        enter_tx().unwrap();
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(any).unwrap();
        let tos = 0xa0 | ecn;
        if to.is_ipv4() {
            setsockopt(&s, sockopt::Ipv4Tos, &i32::from(tos)).unwrap();
        } else {
            setsockopt(&s, sockopt::Ipv6TClass, &i32::from(tos)).unwrap();
        }
        s.send_to(b"are you congested?", to).unwrap();
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    let mut control = udp_gso::RecvControl::default();
    loop {
        match udp_gso::recv(&rx, &mut buf, &mut control) {
            Ok(r) => {
                assert_eq!(&buf[..r.len], b"are you congested?");
                return r.tos;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "nothing arrived at {to}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn congestion_marks_cross_a_vxlan_tunnel() {
    congestion_marks_cross_the_tunnel("we", "vxlan", "4", "udp dport 4789");
}

#[test]
fn congestion_marks_cross_an_ip_in_ip_tunnel() {
    congestion_marks_cross_the_tunnel("wi", "ipip", "4", "ip protocol { 4, 41 }");
}

#[test]
fn congestion_marks_cross_a_vxlan_tunnel_over_an_ipv6_underlay() {
    congestion_marks_cross_the_tunnel("we6", "vxlan", "6", "udp dport 4789");
}

#[test]
fn congestion_marks_cross_an_ip_in_ip_tunnel_over_an_ipv6_underlay() {
    congestion_marks_cross_the_tunnel("wi6", "ipip", "6", "meta l4proto { 4, 41 }");
}

/// `outer` is the nftables match for the tunnel's outer packets, over an
/// IPv4 or IPv6 `underlay`.
fn congestion_marks_cross_the_tunnel(tag: &str, encap: &str, underlay: &str, outer: &str) {
    let Some(lab) = support::lab::lab(tag) else {
        return;
    };
    lab.run(&[
        "up",
        "--nodes",
        "2",
        "--pods",
        "1",
        "--family",
        "dual",
        "--encap",
        encap,
        "--underlay",
        underlay,
    ]);
    lab.run(&["wait", "60"]);
    let pods = lab.pods();
    let (p1, p2) = (&pods[0], &pods[1]);
    assert_ne!(p1.2, p2.2, "one pod per node");
    let addrs: Vec<std::net::IpAddr> = p2.1.split(',').map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs.len(), 2, "dual-stack pod: {}", p2.1);
    // Every datagram goes to a port of its own: a socket just closed here
    // may still be open in a child another test thread is spawning (its
    // copy of our descriptors lives until it execs), and binding the same
    // port again would then fail with "address in use".
    let mut port = 5500u16;
    let mut next_port = move || {
        port += 1;
        port
    };
    for ip in addrs {
        // Without congestion the ECN field and DSCP arrive as sent.
        for ecn in [NOT_ECT, ECT_0] {
            let to = SocketAddr::new(ip, next_port());
            let tos = tos_on_arrival(&p1.0, &p2.0, to, ecn);
            assert_eq!(tos, 0xa0 | ecn, "{ip}: sent ECN {ecn}");
        }
    }
    // An underlay router marks congestion on ECN-capable outer packets.
    let n1 = lab.ns(1);
    let nft = |script: &str| support::nft(&n1, script);
    let family = if underlay == "6" { "ip6" } else { "ip" };
    nft(&format!("add table {family} weft_ecn_test"));
    nft(&format!(
        "add chain {family} weft_ecn_test out {{ type filter hook postrouting priority 0; }}"
    ));
    nft(&format!(
        "add rule {family} weft_ecn_test out {outer} {family} ecn ect0 counter {family} ecn set ce"
    ));
    let addrs: Vec<std::net::IpAddr> = p2.1.split(',').map(|a| a.parse().unwrap()).collect();
    for ip in addrs {
        // The mark reaches the pod; DSCP kept.
        let to = SocketAddr::new(ip, next_port());
        assert_eq!(tos_on_arrival(&p1.0, &p2.0, to, ECT_0), 0xa0 | CE, "{ip}");
        // A packet that is not ECN-capable is never marked (the outer copy
        // is not ECN-capable either).
        let to = SocketAddr::new(ip, next_port());
        assert_eq!(
            tos_on_arrival(&p1.0, &p2.0, to, NOT_ECT),
            0xa0 | NOT_ECT,
            "{ip}"
        );
    }
    // And the rule did see ECN-capable outer packets (one per family).
    let listing = nft(&format!("list table {family} weft_ecn_test"));
    assert!(listing.contains("packets 2 "), "{listing}");
}
