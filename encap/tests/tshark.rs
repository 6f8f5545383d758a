//! Real-world check: packets built by this crate, written to a pcap file,
//! are dissected by Wireshark's tshark as what they claim to be.
//!
//! Needs `tshark` (Debian package `tshark`; `.ci/run` installs it). Fails when
//! it is missing, unless WEFT_SKIP_TSHARK=1 is set.

use encap::segment::{split_tcp, Layout};
use encap::vxlan::{Vni, VxlanEncap};
use encap::{icmp, ipip, MacAddr};
use std::process::Command;

/// Writes `packets` (raw IP, linktype 101) as a classic pcap file.
fn write_pcap(path: &std::path::Path, packets: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).unwrap();
}

mod common;
use common::{inner_packet, outer};

fn inner_tcp(v6: bool, payload: &[u8]) -> Vec<u8> {
    inner_packet(v6, true, 0, payload)
}

fn inner_udp(v6: bool) -> Vec<u8> {
    inner_packet(v6, false, 0, b"weft says hello")
}

fn vxlan(inner: &[u8], v6_out: bool) -> Vec<u8> {
    let enc = VxlanEncap::new(
        Vni::new(4242).unwrap(),
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
    );
    let mut buf = vec![0u8; 128 + inner.len()];
    buf[128..].copy_from_slice(inner);
    let end = buf.len();
    let s = enc.encap(&mut buf, 128..end, &outer(v6_out)).unwrap();
    buf[s..].to_vec()
}

fn ipip_pkt(inner: &[u8], v6_out: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 128 + inner.len()];
    buf[128..].copy_from_slice(inner);
    let end = buf.len();
    let s = ipip::encap(&mut buf, 128..end, &outer(v6_out)).unwrap();
    buf[s..].to_vec()
}

fn tshark_available() -> bool {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            if std::env::var("WEFT_SKIP_TSHARK").as_deref() == Ok("1") {
                eprintln!("tshark missing: skipped because WEFT_SKIP_TSHARK=1");
                false
            } else {
                panic!("tshark is not installed (apt-get install tshark), or set WEFT_SKIP_TSHARK=1 to skip this test");
            }
        }
    }
}

#[test]
fn tshark_dissects_what_encap_builds() {
    if !tshark_available() {
        return;
    }
    let mut packets = vec![
        vxlan(&inner_tcp(false, b"0123456789"), false),
        vxlan(&inner_udp(true), true),
        vxlan(&inner_tcp(true, b"abc"), false),
        ipip_pkt(&inner_tcp(false, b"ipip"), false),
        ipip_pkt(&inner_udp(true), false),
        ipip_pkt(&inner_udp(false), true),
    ];
    let mut icmp_out = [0u8; 600];
    let big = inner_tcp(false, &[9u8; 1500]);
    let n = icmp::frag_needed_v4(&big, [169, 254, 1, 1].into(), 1450, &mut icmp_out).unwrap();
    packets.push(icmp_out[..n].to_vec());
    let mut ptb = [0u8; 1300];
    let n = icmp::packet_too_big_v6(
        &inner_tcp(true, &[9u8; 1500]),
        "fe80::1".parse().unwrap(),
        1430,
        &mut ptb,
    )
    .unwrap();
    packets.push(ptb[..n].to_vec());
    let layout = Layout {
        headroom: 0,
        stride: 1500,
    };
    let mut segs = vec![0u8; 8 * 1500];
    let mut lens = [0usize; 8];
    let count = split_tcp(
        &inner_tcp(false, &[7u8; 4000]),
        1400,
        &mut segs,
        layout,
        &mut lens,
    )
    .unwrap();
    for (i, len) in lens.iter().enumerate().take(count) {
        packets.push(vxlan(&segs[i * 1500..i * 1500 + len], false));
    }

    let dir = std::env::temp_dir().join(format!("weft-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("encap.pcap");
    write_pcap(&pcap, &packets);
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
        ])
        .args([
            "-e",
            "frame.protocols",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.proto",
            "-e",
            "ipv6.nxt",
            "-e",
            "tcp.checksum.status",
        ])
        .args([
            "-e",
            "udp.checksum.status",
            "-e",
            "ip.checksum.status",
            "-e",
            "icmp.type",
            "-e",
            "icmp.code",
            "-e",
            "icmp.mtu",
        ])
        .args([
            "-e",
            "icmpv6.type",
            "-e",
            "icmpv6.mtu",
            "-e",
            "icmpv6.checksum.status",
            "-e",
            "tcp.len",
            "-e",
            "_ws.expert.severity",
        ])
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), packets.len(), "one row per packet:\n{text}");
    let f = |r: usize, c: usize| rows[r][c];

    // Wireshark's checksum status: 1 good, 3 not present (zero UDP checksum).
    // VXLAN, IPv4 outer, TCP inner: VNI, inner protocol, checksums good.
    assert!(
        f(0, 0).contains("udp:vxlan:eth:ethertype:ip:tcp"),
        "{}",
        f(0, 0)
    );
    assert_eq!(f(0, 1), "4242");
    assert_eq!(f(0, 2), "17,6");
    assert_eq!(f(0, 4), "1");
    assert_eq!(f(0, 5), "3", "zero outer UDP checksum over IPv4");
    assert_eq!(f(0, 6), "1,1");
    assert_eq!(f(0, 13), "10");
    // VXLAN, IPv6 outer with a computed UDP checksum, IPv6/UDP inner.
    assert!(
        f(1, 0).contains("ipv6:udp:vxlan:eth:ethertype:ipv6:udp"),
        "{}",
        f(1, 0)
    );
    assert_eq!(f(1, 1), "4242");
    assert_eq!(f(1, 5), "1,1", "outer and inner UDP checksums verified");
    // VXLAN over IPv4 carrying IPv6/TCP.
    assert!(
        f(2, 0).contains("udp:vxlan:eth:ethertype:ipv6:tcp"),
        "{}",
        f(2, 0)
    );
    assert_eq!(f(2, 4), "1");
    // IP-in-IP: 4 in 4, 6 in 4 (protocol 41), 4 in 6 (next header 4).
    assert!(f(3, 0).contains("ip:ip:tcp"), "{}", f(3, 0));
    assert_eq!(f(3, 2), "4,6");
    assert_eq!(f(3, 4), "1");
    assert!(f(4, 0).contains("ip:ipv6:udp"), "{}", f(4, 0));
    assert_eq!(f(4, 2), "41");
    assert!(f(5, 0).contains("ipv6:ip:udp"), "{}", f(5, 0));
    assert_eq!(f(5, 3), "4");
    // ICMP fragmentation needed, MTU 1450; ICMPv6 packet too big, MTU 1430.
    assert_eq!((f(6, 7), f(6, 8), f(6, 9)), ("3", "4", "1450"));
    assert_eq!((f(7, 10), f(7, 11), f(7, 12)), ("2", "1430", "1"));
    // Three segments of a split super-packet, each with a good TCP checksum.
    for row in &rows[8..11] {
        assert_eq!(row[1], "4242");
        assert_eq!(row[4], "1", "segment: {row:?}");
    }
    assert_eq!((f(8, 13), f(9, 13), f(10, 13)), ("1400", "1400", "1200"));
    // No expert errors (0x800000) except in the ICMP quotes, whose quoted TCP
    // is truncated by design.
    for (r, row) in rows.iter().enumerate().filter(|(r, _)| !(6..8).contains(r)) {
        assert!(
            !row[14].split(',').any(|s| s == "8388608"),
            "expert error in packet {r}: {row:?}"
        );
    }
}
