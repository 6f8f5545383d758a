//! Writes seed inputs for the fuzz targets (fuzz/corpus/<target>/seed-*):
//! valid VXLAN and IP-in-IP packets in both families, bare inner packets and
//! a TCP super-packet, so the fuzzers start from the formats, not from noise.
//!
//! Run: `cargo run -p weft-encap --example fuzz_seeds -- fuzz/corpus`

use encap::vxlan::{Vni, VxlanEncap};
use encap::{ipip, MacAddr, OuterIp};
use std::path::Path;

fn inner(v6: bool, proto: u8, payload_len: usize) -> Vec<u8> {
    let hl = if v6 { 40 } else { 20 };
    let l4 = if proto == 6 { 20 } else { 8 };
    let mut p = vec![0u8; hl + l4 + payload_len];
    if v6 {
        let h = encap::ipv6::Ipv6Header {
            src: "fd00:244::2".parse().unwrap(),
            dst: "fd00:244:1::2".parse().unwrap(),
            next_header: proto,
            traffic_class: 2,
            flow_label: 1,
            hop_limit: 63,
            payload_len: l4 + payload_len,
        };
        h.write(&mut p).unwrap();
    } else {
        let h = encap::ipv4::Ipv4Header {
            src: [10, 244, 0, 2].into(),
            dst: [10, 244, 1, 2].into(),
            protocol: proto,
            tos: 2,
            ttl: 63,
            ident: 1,
            dont_frag: true,
            payload_len: l4 + payload_len,
        };
        h.write(&mut p).unwrap();
    }
    if proto == 6 {
        p[hl + 12] = 5 << 4;
        p[hl + 13] = 0x10;
    } else {
        p[hl + 4..hl + 6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    }
    p
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let root = Path::new(&root);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let vni = Vni::new(1).unwrap();
    let enc = VxlanEncap::new(
        vni,
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
    );
    for v6_in in [false, true] {
        for v6_out in [false, true] {
            for proto in [6u8, 17] {
                let pkt = inner(v6_in, proto, 32);
                let outer = if v6_out {
                    OuterIp::new("fd00:99::1".parse().unwrap(), "fd00:99::2".parse().unwrap())
                } else {
                    OuterIp::new("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap())
                };
                let name = format!(
                    "{}in{}-{proto}",
                    if v6_in { 6 } else { 4 },
                    if v6_out { 6 } else { 4 }
                );
                let mut buf = vec![0u8; 128 + pkt.len()];
                buf[128..].copy_from_slice(&pkt);
                let end = buf.len();
                let s = enc.encap(&mut buf, 128..end, &outer).unwrap();
                let mut d = vec![1u8];
                d.extend_from_slice(&buf[s..]);
                write("decap", &format!("vxlan-{name}"), &d);
                write(
                    "decap",
                    &format!("vxlan-payload-{name}"),
                    &buf[s + outer.header_len() + 8..],
                );
                let mut buf = vec![0u8; 128 + pkt.len()];
                buf[128..].copy_from_slice(&pkt);
                let end = buf.len();
                let s = ipip::encap(&mut buf, 128..end, &outer).unwrap();
                write("decap", &format!("ipip-{name}"), &buf[s..]);
                write("headers", &name, &pkt);
                let mut e = vec![if v6_out { 1 } else { 0 }];
                e.extend_from_slice(&pkt);
                write("encap", &format!("vxlan-{name}"), &e);
                e[0] |= 2;
                write("encap", &format!("ipip-{name}"), &e);
            }
            let mut seg = vec![0x01, 0x00];
            seg.extend_from_slice(&inner(v6_in, 6, 1500));
            write(
                "segment",
                &format!("tcp{}", if v6_in { 6 } else { 4 }),
                &seg,
            );
        }
    }
    println!("seeds written under {}", root.display());
}
