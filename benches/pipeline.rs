//! The in-process forwarding pipeline, no syscalls, through weftd's own
//! functions: for a batch of 64 inner packets, `dataplane::tx::encap_vxlan`
//! (check, next hop, VXLAN encapsulation: what weftd does between a TUN
//! read and a socket send), and `dataplane::rx::accept_vxlan` (checks,
//! decapsulation, inner source check) + TCP coalescing of a batch of
//! segments (between a socket read and a TUN write), both copying payloads
//! into one buffer and in place (headers only, as weftd does before its
//! vectored write); and the same for a run of 64 small UDP datagrams of
//! one flow (`InPlaceRun`, as weftd merges them for a USO write).
//!
//! Run: `cargo bench --bench pipeline`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use encap::ecn::Ecn;
use encap::segment::{
    split_tcp, split_udp, ChecksumFill, InPlaceRun, Layout, RunRules, TcpCoalescer,
};
use encap::vxlan::{Vni, VxlanDecap, VxlanEncap};
use encap::MacAddr;
use fdb::{Fdb, Mac, Meta, NodeId, NodeRecord, Source};
use std::net::IpAddr;
use weft::dataplane::rx::{accept_vxlan, inner_checksums_need_verifying, PassedChecks};
use weft::dataplane::tx::encap_vxlan;
use weft::dataplane::Settings;

const BATCH: usize = 64;
const HEADROOM: usize = 64;
const STRIDE: usize = HEADROOM + 1500;

/// Tables with 1,000 remote /26 blocks over 64 nodes, and this node's own
/// block, 10.245.0.0/26 (where received packets go).
fn tables() -> Fdb {
    let fdb = Fdb::new(NodeId::new("local"), NodeRecord::default());
    fdb.update(|t| {
        for n in 0..64u8 {
            let rec = NodeRecord {
                underlay_v4: Some([10, 99, 0, n].into()),
                vtep_mac: Mac([2, 0, 0, 0, 0, n]),
                ..NodeRecord::default()
            };
            t.upsert_node(
                NodeId::new(&format!("n{n}")),
                rec,
                Meta::new(Source::Gossip, 1),
            )?;
        }
        t.upsert_block(
            "10.245.0.0/26".parse().unwrap(),
            NodeId::new("local"),
            Meta::new(Source::Static, 1),
        )?;
        for b in 0..1000u32 {
            let net = ipnet::Ipv4Net::new((0x0af4_0000 + b * 64).into(), 26).unwrap();
            t.upsert_block(
                net.into(),
                NodeId::new(&format!("n{}", b % 64)),
                Meta::new(Source::Gossip, 1),
            )?;
        }
        Ok(())
    })
    .unwrap();
    fdb
}

/// A batch of 1400-byte IPv4/TCP packets to different blocks, each at
/// `i * STRIDE + HEADROOM`.
fn batch() -> Vec<u8> {
    let mut buf = vec![0u8; BATCH * STRIDE];
    for i in 0..BATCH {
        let mut p = Vec::new();
        let dst = 0x0af4_0000u32 + (i as u32 * 7 % 1000) * 64 + 5;
        etherparse::PacketBuilder::ipv4([10, 244, 200, 2], dst.to_be_bytes(), 63)
            .tcp(40000 + i as u16, 5201, 1, 64000)
            .write(&mut p, &[7u8; 1360])
            .unwrap();
        buf[i * STRIDE + HEADROOM..][..p.len()].copy_from_slice(&p);
    }
    buf
}

fn pipeline(c: &mut Criterion) {
    let fdb = tables();
    let mut reader = fdb.reader();
    let vni = Vni::new(1).unwrap();
    let mut tx = batch();
    let len = 1400;
    let settings = Settings {
        vni,
        port: 4789,
        local_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        overlay_mtu: 1450,
        tunnels: fdb::Families::V4,
        icmp_source_v4: weft::podnet::GATEWAY_V4,
        icmp_source_v6: weft::podnet::GATEWAY_V6,
        busy_poll: std::time::Duration::ZERO,
    };
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup_and_encap_64x1400", |b| {
        b.iter(|| {
            let snap = reader.load();
            let mut sent = 0usize;
            for i in 0..BATCH {
                let at = i * STRIDE + HEADROOM;
                if let Ok(d) = encap_vxlan(&settings, snap, &mut tx, at..at + len) {
                    sent += d.at;
                }
            }
            black_box(sent)
        })
    });

    // Receive side: 46 VXLAN payloads of one flow's segments.
    let mut sup = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 244, 1, 2], [10, 245, 0, 2], 63)
        .tcp(40000, 5201, 1, 64000)
        .ack(1)
        .write(&mut sup, &vec![9u8; 46 * 1360])
        .unwrap();
    let layout = Layout {
        headroom: 22,
        stride: 22 + 1500,
    };
    let mut segs = vec![0u8; 64 * layout.stride];
    let mut lens = [0usize; 64];
    let n = split_tcp(&sup, 1360, &mut segs, layout, &mut lens).unwrap();
    let enc = VxlanEncap::new(
        vni,
        MacAddr([2, 0, 0, 0, 0, 2]),
        MacAddr([2, 0, 0, 0, 0, 1]),
    );
    let mut starts = Vec::new();
    for (i, l) in lens.iter().enumerate().take(n) {
        let at = i * layout.stride + 22;
        starts.push((enc.encap_payload(&mut segs, at..at + l).unwrap(), at + l));
    }
    let dec = VxlanDecap { vni, port: 4789 };
    // The segments come from 10.244.1.2, in node n4's block.
    let peer = NodeId::new("n4");
    let snap = reader.load();
    // One datagram of a receive checked and decapsulated, as weftd does.
    let accept = |segs: &mut [u8], (s, e): (usize, usize), passed: &mut PassedChecks| {
        accept_vxlan(&dec, snap, &peer, segs, s..e, Ecn::NotEct, passed).unwrap()
    };
    let mut merged = vec![0u8; 70_000];
    g.throughput(Throughput::Bytes((n * 1400) as u64));
    g.bench_function("decap_and_coalesce_46x1400", |b| {
        b.iter(|| {
            let mut passed = PassedChecks::default();
            let first = accept(&mut segs, starts[0], &mut passed);
            let mut c = TcpCoalescer::start(&mut merged, &segs[first], true).unwrap();
            for &se in &starts[1..] {
                let inner = accept(&mut segs, se, &mut passed);
                c.push(&segs[inner]).unwrap();
            }
            black_box(c.finish(ChecksumFill::Partial))
        })
    });
    // What weftd does with a GRO train: headers merged, payloads left in
    // place for a vectored TUN write, inner checksums left unchecked (the
    // outer ones covered them).
    let mut headers = vec![0u8; 256];
    let verify = inner_checksums_need_verifying(IpAddr::from([192, 168, 0, 4]), starts.len());
    g.bench_function("decap_and_coalesce_in_place_46x1400", |b| {
        b.iter(|| {
            let mut passed = PassedChecks::default();
            let first = accept(&mut segs, starts[0], &mut passed);
            let (mut c, _) =
                TcpCoalescer::start_in_place(&mut headers, &segs[first], verify).unwrap();
            for &se in &starts[1..] {
                let inner = accept(&mut segs, se, &mut passed);
                black_box(c.push_in_place(&segs[inner]).unwrap());
            }
            black_box(c.finish(ChecksumFill::Partial))
        })
    });

    // 64 datagrams of 64 bytes of one UDP flow (iperf3 -l 64), as a GRO
    // receive hands them over: decapsulated and merged in place.
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 244, 1, 2], [10, 245, 0, 2], 63)
        .udp(40000, 5201)
        .write(&mut udp, &[3u8; 64 * 64])
        .unwrap();
    let n = split_udp(&udp, 64, &mut segs, layout, &mut lens).unwrap();
    let mut starts = Vec::new();
    for (i, l) in lens.iter().enumerate().take(n) {
        let at = i * layout.stride + 22;
        starts.push((enc.encap_payload(&mut segs, at..at + l).unwrap(), at + l));
    }
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decap_and_coalesce_udp_in_place_64x64", |b| {
        b.iter(|| {
            let mut passed = PassedChecks::default();
            let first = accept(&mut segs, starts[0], &mut passed);
            let (mut c, _) =
                InPlaceRun::start(&mut headers, &segs[first], RunRules { udp: true, verify })
                    .unwrap();
            for &se in &starts[1..] {
                let inner = accept(&mut segs, se, &mut passed);
                black_box(c.push(&segs[inner]).unwrap());
            }
            black_box(c.finish())
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
