//! Heap used by the control plane's replicated state at 1,000 nodes and
//! 100,000 pod endpoints (100 per node), and by the fdb view built from
//! it, counted by a global allocator that tracks live bytes. With
//! `--signed`, every node has a node key, every record is signed and
//! verified on the way in (and the trusted-nodes file lists all 1,000).
//!
//! With `--signed` it also measures what a node joining such a cluster
//! spends merging the state it is sent: the same records packed into
//! datagrams as anti-entropy sends them (sealed with the cluster key and
//! signed by the sender's node key) and opened and merged in bursts of 64
//! datagrams, their datagram and record signatures checked in one batch
//! each per burst (what weftd does), against each datagram alone, and
//! against merging the records one by one, each verified alone;
//! interleaved, three rounds each, medians.
//!
//! Run: `cargo run --release -p weft-control --example memory [-- --signed]`

#[path = "shared/cluster.rs"]
mod cluster;

use control::identity::{NodeKey, TrustedNodes};
use control::record::Signed;
use control::state::{Rules, State};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Tracking;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Tracking = Tracking;

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    const NODES: u32 = 1_000;
    let signed = std::env::args().any(|a| a == "--signed");
    let keys: Vec<NodeKey> = if signed {
        (0..NODES).map(cluster::key).collect()
    } else {
        Vec::new()
    };
    let before_trust = LIVE.load(Ordering::Relaxed);
    let trusted = signed.then(|| {
        let file: String = keys
            .iter()
            .enumerate()
            .map(|(n, k)| format!("node-{n} {}\n", k.public_hex()))
            .collect();
        std::sync::Arc::new(TrustedNodes::parse(&file).expect("parses"))
    });
    let trust_bytes = LIVE.load(Ordering::Relaxed) - before_trust;
    let base = LIVE.load(Ordering::Relaxed);
    let mut state = State::new(Rules {
        pools: vec!["10.0.0.0/8".parse().expect("net")],
        trusted,
        ..Rules::default()
    });
    let mut apply_time = std::time::Duration::ZERO;
    for n in 0..NODES {
        for s in cluster::records_of(n, keys.get(n as usize)) {
            let t = std::time::Instant::now();
            state.apply(s, 0).expect("admitted");
            apply_time += t.elapsed();
        }
    }
    let state_bytes = LIVE.load(Ordering::Relaxed) - base;
    let (owners, records) = state.size();
    let t0 = std::time::Instant::now();
    let view = state.view(|_| Some(0), |_| true);
    let took = t0.elapsed();
    let view_bytes = LIVE.load(Ordering::Relaxed) - base - state_bytes;
    println!(
        "control state{}: {owners} nodes, {records} records: {:.1} MiB ({:.0} bytes per record); merged in {:.2} s",
        if signed { " (signed, verified)" } else { "" },
        mib(state_bytes),
        state_bytes as f64 / records as f64,
        apply_time.as_secs_f64()
    );
    if signed {
        println!("trusted-nodes file in memory: {:.2} MiB", mib(trust_bytes));
        // The records as a joining node receives them (copied after the
        // memory was counted).
        let all: Vec<Signed> = state
            .owner_names()
            .flat_map(|o| state.records_of(o).collect::<Vec<_>>())
            .collect();
        join_cost(&state, all, &keys[0]);
    }
    println!(
        "view for fdb: {} nodes, {} blocks, {} endpoints: {:.1} MiB, computed in {:.1} ms",
        view.nodes.len(),
        view.blocks.len(),
        view.endpoints.len(),
        mib(view_bytes),
        took.as_secs_f64() * 1000.0
    );
}

/// A joining node's merge of `records` (every record of `full`, signed):
/// one by one, and as datagrams sealed by `sender` (node-0) opened and
/// merged one at a time and in bursts of 64; interleaved, medians of three.
fn join_cost(full: &State, records: Vec<Signed>, sender: &NodeKey) {
    let rules = || Rules {
        pools: vec!["10.0.0.0/8".parse().expect("net")],
        trusted: full.rules().trusted.clone(),
        ..Rules::default()
    };
    let trusted = full.rules().trusted.clone().expect("signed");
    let ring = || control::Keyring::new(&[(1, [3; 32])]).expect("a key");
    let mut sealer = control::auth::Sealer::new(ring(), control::state::fnv(b"node-0"), 1, false)
        .with_signer(sender.signing_key());
    let sealed: Vec<Vec<u8>> = control::wire::pack_records(records.clone())
        .iter()
        .map(|body| {
            let mut out = Vec::new();
            sealer.seal(body, &mut out);
            out
        })
        .collect();
    let (mut alone, mut per_datagram, mut batched) = (Vec::new(), Vec::new(), Vec::new());
    let mut batched_cpu = Vec::new();
    for _ in 0..3 {
        let mut joiner = State::new(rules());
        let t = std::time::Instant::now();
        for s in records.iter().cloned() {
            joiner.apply(s, 0).expect("admitted");
        }
        alone.push(t.elapsed().as_secs_f64());
        for (burst, took) in [(1, &mut per_datagram), (64, &mut batched)] {
            let mut joiner = State::new(rules());
            let mut opener = control::auth::Opener::new(ring(), 16);
            opener.set_signers(Some(trusted.datagram_signers()));
            let mut datagrams = sealed.clone();
            let (t, cpu) = (std::time::Instant::now(), cpu_seconds());
            for burst in datagrams.chunks_mut(burst) {
                let mut views: Vec<&mut [u8]> = burst.iter_mut().map(Vec::as_mut_slice).collect();
                let opened = opener.open_all(&mut views);
                let mut records = Vec::new();
                for (d, opened) in views.iter().zip(opened) {
                    let (_, body) = opened.expect("sealed by a trusted sender");
                    match control::wire::Body::decode(&d[body]) {
                        Ok(control::wire::Body::Records(r)) => records.extend(r),
                        _ => unreachable!("pack_records makes record bodies"),
                    }
                }
                let merged = joiner.apply_all(records, 0);
                assert!(
                    merged.iter().all(|r| r == &Ok(true)),
                    "every record is new and verifies"
                );
            }
            took.push(t.elapsed().as_secs_f64());
            if burst > 1 {
                batched_cpu.push(cpu_seconds() - cpu);
            }
            assert_eq!(
                joiner.digests(),
                full.digests(),
                "the joiner holds the same state"
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "joining: {} records in {} signed datagrams ({:.1} per datagram): records one by one \
         (no datagrams) {:.2} s, datagrams one by one {:.2} s, bursts of 64 datagrams together \
         {:.2} s ({:.2} s of CPU: batches split over the cores) (medians of 3, interleaved)",
        records.len(),
        sealed.len(),
        records.len() as f64 / sealed.len() as f64,
        median(&mut alone),
        median(&mut per_datagram),
        median(&mut batched),
        median(&mut batched_cpu)
    );
}

/// CPU time this process has used (user and system, all threads), from
/// /proc (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces): utime is the 12th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}
