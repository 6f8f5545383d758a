//! Forwarding-table lookups at 1k, 10k and 100k entries, alone and with a
//! concurrent writer doing 10k updates/s.
//!
//! Run: `cargo bench --bench fdb`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fdb::{Endpoint, Fdb, Mac, Meta, NodeId, NodeRecord, Source};
use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const NODES: usize = 64;

/// `n` /26 blocks and `n` endpoints spread over 64 peers.
fn populated(n: usize) -> Fdb {
    let fdb = Fdb::new(NodeId::new("local"), NodeRecord::default());
    let nodes: Vec<NodeId> = (0..NODES)
        .map(|i| NodeId::new(&format!("node-{i}")))
        .collect();
    fdb.update(|t| {
        for id in &nodes {
            t.upsert_node(
                id.clone(),
                NodeRecord::default(),
                Meta::new(Source::Gossip, 1),
            )?;
        }
        for i in 0..n {
            let block = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i as u32) * 64), 26).unwrap();
            t.upsert_block(
                IpNet::V4(block),
                nodes[i % NODES].clone(),
                Meta::new(Source::Gossip, 1),
            )?;
            let ep = Endpoint {
                mac: Mac([2, 0, 0, 0, 0, 1]),
                node: nodes[i % NODES].clone(),
                local_port: None,
            };
            t.upsert_endpoint(endpoint_ip(i), ep, Meta::new(Source::Gossip, 1))?;
        }
        Ok(())
    })
    .unwrap();
    fdb
}

fn endpoint_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i as u32) * 64 + 5))
}

/// Probe addresses in a scrambled order, so lookups do not walk memory in sequence.
fn probes(n: usize) -> Vec<IpAddr> {
    (0..4096usize)
        .map(|k| endpoint_ip(k.wrapping_mul(2_654_435_761) % n))
        .collect()
}

/// A writer thread doing `rate` single-entry updates per second until stopped.
fn writer(
    fdb: Fdb,
    n: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let node = NodeId::new("node-1");
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            }
            let ip = endpoint_ip((i as usize * 7919) % n);
            let ep = Endpoint {
                mac: Mac([2, 0, 0, 0, 0, (i % 250) as u8]),
                node: node.clone(),
                local_port: None,
            };
            fdb.update(|t| t.upsert_endpoint(ip, ep, Meta::new(Source::Gossip, 2 + i)))
                .unwrap();
            i += 1;
            done.store(i, Ordering::Relaxed);
        }
    })
}

fn lookups(c: &mut Criterion, with_writer: bool) {
    let name = if with_writer {
        "fdb_lookup_with_writer_10k_per_s"
    } else {
        "fdb_lookup"
    };
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let fdb = populated(n);
        let probes = probes(n);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let w = with_writer
            .then(|| writer(fdb.clone(), n, 10_000, Arc::clone(&stop), Arc::clone(&done)));
        let mut reader = fdb.reader();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("block_owner", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 4095;
                let snap = reader.load();
                black_box(snap.owner_of(black_box(probes[k])).is_some())
            })
        });
        g.bench_with_input(BenchmarkId::new("route", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 4095;
                let snap = reader.load();
                black_box(matches!(
                    snap.route(black_box(probes[k])),
                    fdb::Route::Remote { .. }
                ))
            })
        });
        g.bench_with_input(BenchmarkId::new("endpoint", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 4095;
                let snap = reader.load();
                black_box(snap.endpoint(black_box(probes[k])).is_some())
            })
        });
        stop.store(true, Ordering::Relaxed);
        if let Some(w) = w {
            w.join().unwrap();
            eprintln!(
                "{name}/{n}: writer made {} updates",
                done.load(Ordering::Relaxed)
            );
        }
    }
    g.finish();
}

fn alone(c: &mut Criterion) {
    lookups(c, false);
}

fn with_writer(c: &mut Criterion) {
    lookups(c, true);
}

criterion_group!(benches, alone, with_writer);
criterion_main!(benches);
