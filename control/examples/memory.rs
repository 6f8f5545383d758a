//! Heap used by the control plane's replicated state at 1,000 nodes and
//! 100,000 pod endpoints (100 per node), and by the fdb view built from
//! it, counted by a global allocator that tracks live bytes.
//!
//! Run: `cargo run --release -p weft-control --example memory`

use control::record::{Key, NodeInfo, Record, Value, Version};
use control::state::{Rules, State};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
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
    const PER_NODE: u32 = 100;
    let base = LIVE.load(Ordering::Relaxed);
    let mut state = State::new(Rules {
        pools: vec!["10.0.0.0/8".parse().expect("net")],
        ..Rules::default()
    });
    let v = |c| Version {
        epoch: 1,
        counter: c,
    };
    for n in 0..NODES {
        let owner = format!("node-{n}");
        let underlay = IpAddr::V4(Ipv4Addr::from(0x0a63_0000 + n));
        let rec = |key, value, c| Record {
            key,
            version: v(c),
            value,
        };
        state
            .apply(
                rec(
                    Key::Node {
                        owner: owner.clone(),
                    },
                    Value::Node(NodeInfo {
                        underlay: vec![underlay],
                        vtep_mac: [2, 0, 0, 0, (n >> 8) as u8, n as u8],
                        vxlan: true,
                        ipip: false,
                        gossip: (underlay, 7947).into(),
                        boot: 1,
                    }),
                    1,
                ),
                0,
            )
            .expect("admitted");
        // One /25 per node: 10.<n/256+1>.<n%256>.0/25 holds its 100 pods.
        let block_base = 0x0a00_0000 + ((n + 256) << 8);
        let block = ipnet::IpNet::new(IpAddr::V4(Ipv4Addr::from(block_base)), 25).expect("net");
        state
            .apply(
                rec(
                    Key::Claim {
                        owner: owner.clone(),
                        block,
                    },
                    Value::Claim { claimed_at: 1 },
                    2,
                ),
                0,
            )
            .expect("admitted");
        for p in 0..PER_NODE {
            let ip = IpAddr::V4(Ipv4Addr::from(block_base + 1 + p));
            state
                .apply(
                    rec(
                        Key::Endpoint {
                            owner: owner.clone(),
                            ip,
                        },
                        Value::Endpoint { mac: [2; 6] },
                        3 + u64::from(p),
                    ),
                    0,
                )
                .expect("admitted");
        }
    }
    let state_bytes = LIVE.load(Ordering::Relaxed) - base;
    let (owners, records) = state.size();
    let t0 = std::time::Instant::now();
    let view = state.view(|_| true, |_| true);
    let took = t0.elapsed();
    let view_bytes = LIVE.load(Ordering::Relaxed) - base - state_bytes;
    println!(
        "control state: {owners} nodes, {records} records: {:.1} MiB ({:.0} bytes per record)",
        mib(state_bytes),
        state_bytes as f64 / records as f64
    );
    println!(
        "view for fdb: {} nodes, {} blocks, {} endpoints: {:.1} MiB, computed in {:.1} ms",
        view.nodes.len(),
        view.blocks.len(),
        view.endpoints.len(),
        mib(view_bytes),
        took.as_secs_f64() * 1000.0
    );
}
