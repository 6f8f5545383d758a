//! Wire-format costs: VXLAN and IP-in-IP encap/decap of one packet, and TCP
//! split/coalesce of a 64 KiB super-packet.
//!
//! Run: `cargo bench --bench encap` (add `-- --quick` for a fast look).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use encap::ecn::Ecn;
use encap::segment::{split_tcp, split_tcp_headers, ChecksumFill, Layout, TcpCoalescer};
use encap::vxlan::{Vni, VxlanDecap, VxlanEncap};
use encap::{ipip, MacAddr, OuterIp};

const HEADROOM: usize = 128;

/// An IPv4/UDP packet of `len` bytes at offset HEADROOM.
fn buffer_with_inner(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + len];
    encap::ipv4::Ipv4Header {
        src: [10, 244, 0, 2].into(),
        dst: [10, 244, 1, 2].into(),
        protocol: 17,
        tos: 0,
        ttl: 63,
        ident: 1,
        dont_frag: true,
        payload_len: len - 20,
    }
    .write(&mut buf[HEADROOM..])
    .unwrap();
    encap::udp::write_header(&mut buf[HEADROOM + 20..], 40000, 5201, len - 28).unwrap();
    buf
}

fn tunnel(c: &mut Criterion) {
    let vni = Vni::new(1).unwrap();
    let enc = VxlanEncap::new(
        vni,
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
    );
    let dec = VxlanDecap { vni, port: 4789 };
    let outer = OuterIp::new("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap());
    let mut g = c.benchmark_group("tunnel");
    for len in [64usize, 1400] {
        let end = HEADROOM + len;
        g.throughput(Throughput::Elements(1));
        let mut buf = buffer_with_inner(len);
        g.bench_with_input(BenchmarkId::new("vxlan_encap", len), &len, |b, _| {
            b.iter(|| {
                enc.encap(black_box(&mut buf), HEADROOM..end, &outer)
                    .unwrap()
            })
        });
        let start = enc.encap(&mut buf, HEADROOM..end, &outer).unwrap();
        g.bench_with_input(BenchmarkId::new("vxlan_decap", len), &len, |b, _| {
            b.iter(|| dec.decap(black_box(&mut buf[start..])).unwrap())
        });
        let mut buf = buffer_with_inner(len);
        g.bench_with_input(
            BenchmarkId::new("vxlan_encap_payload", len),
            &len,
            |b, _| {
                b.iter(|| {
                    enc.encap_payload(black_box(&mut buf), HEADROOM..end)
                        .unwrap()
                })
            },
        );
        let start = enc.encap_payload(&mut buf, HEADROOM..end).unwrap();
        g.bench_with_input(
            BenchmarkId::new("vxlan_decap_payload", len),
            &len,
            |b, _| {
                b.iter(|| {
                    dec.decap_payload(black_box(&mut buf[start..]), Ecn::Ect0)
                        .unwrap()
                })
            },
        );
        let mut buf = buffer_with_inner(len);
        g.bench_with_input(BenchmarkId::new("ipip_encap", len), &len, |b, _| {
            b.iter(|| ipip::encap(black_box(&mut buf), HEADROOM..end, &outer).unwrap())
        });
        let start = ipip::encap(&mut buf, HEADROOM..end, &outer).unwrap();
        g.bench_with_input(BenchmarkId::new("ipip_decap", len), &len, |b, _| {
            b.iter(|| ipip::decap(black_box(&mut buf[start..])).unwrap())
        });
    }
    g.finish();
}

/// A 64 KiB-class TCP super-packet (IPv4, 20-byte TCP header).
fn super_packet() -> Vec<u8> {
    let payload = 1400 * 46;
    let mut p = vec![0u8; 40 + payload];
    encap::ipv4::Ipv4Header {
        src: [10, 244, 0, 2].into(),
        dst: [10, 244, 1, 2].into(),
        protocol: 6,
        tos: 0,
        ttl: 63,
        ident: 1,
        dont_frag: true,
        payload_len: 20 + payload,
    }
    .write(&mut p)
    .unwrap();
    p[32] = 5 << 4;
    p[33] = 0x10;
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn segmentation(c: &mut Criterion) {
    let pkt = super_packet();
    let layout = Layout {
        headroom: 50,
        stride: 50 + 1500,
    };
    let mut out = vec![0u8; 64 * layout.stride];
    let mut lens = [0usize; 64];
    let mut g = c.benchmark_group("tcp");
    g.throughput(Throughput::Bytes(pkt.len() as u64));
    g.bench_function("split_64k_mss1400", |b| {
        b.iter(|| split_tcp(black_box(&pkt), 1400, &mut out, layout, &mut lens).unwrap())
    });
    let hdr_layout = Layout {
        headroom: 22,
        stride: 22 + 64,
    };
    let mut hdrs = vec![0u8; 64 * hdr_layout.stride];
    g.bench_function("split_64k_mss1400_headers_only", |b| {
        b.iter(|| {
            split_tcp_headers(black_box(&pkt), 1400, &mut hdrs, hdr_layout, &mut lens).unwrap()
        })
    });
    let n = split_tcp(&pkt, 1400, &mut out, layout, &mut lens).unwrap();
    let segs: Vec<&[u8]> = (0..n)
        .map(|i| &out[i * layout.stride + 50..i * layout.stride + 50 + lens[i]])
        .collect();
    let mut merged = vec![0u8; 70_000];
    for (name, verify) in [
        ("coalesce_46x1400_verified", true),
        ("coalesce_46x1400_unverified", false),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut c = TcpCoalescer::start(&mut merged, segs[0], verify).unwrap();
                for s in &segs[1..] {
                    c.push(s).unwrap();
                }
                c.finish(ChecksumFill::Partial)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tunnel, segmentation);
criterion_main!(benches);
