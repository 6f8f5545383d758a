//! Heap used by the tables: 100,000 endpoints, then 100,000 blocks, counted
//! by a global allocator that tracks live bytes.
//!
//! Run: `cargo run --release -p weft-fdb --example memory`

use fdb::{Endpoint, Fdb, Mac, Meta, NodeId, NodeRecord, Source};
use ipnet::{IpNet, Ipv4Net};
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

fn main() {
    const N: u32 = 100_000;
    let fdb = Fdb::new(NodeId::new("local"), NodeRecord::default());
    let nodes: Vec<NodeId> = (0..64).map(|i| NodeId::new(&format!("node-{i}"))).collect();
    fdb.update(|t| {
        for id in &nodes {
            t.upsert_node(
                id.clone(),
                NodeRecord::default(),
                Meta::new(Source::Gossip, 1),
            )?;
        }
        Ok(())
    })
    .unwrap();
    let base = LIVE.load(Ordering::Relaxed);
    fdb.update(|t| {
        for i in 0..N {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let ep = Endpoint {
                mac: Mac([2, 0, 0, 0, 0, 1]),
                node: nodes[i as usize % 64].clone(),
                local_port: None,
            };
            t.upsert_endpoint(ip, ep, Meta::new(Source::Gossip, 1))?;
        }
        Ok(())
    })
    .unwrap();
    let eps = LIVE.load(Ordering::Relaxed) - base;
    fdb.update(|t| {
        for i in 0..N {
            let block = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i * 64), 26).unwrap();
            t.upsert_block(
                IpNet::V4(block),
                nodes[i as usize % 64].clone(),
                Meta::new(Source::Gossip, 1),
            )?;
        }
        Ok(())
    })
    .unwrap();
    let blocks = LIVE.load(Ordering::Relaxed) - base - eps;
    println!(
        "100000 endpoints: {:.1} MiB ({} bytes per endpoint)",
        eps as f64 / 1048576.0,
        eps / N as isize
    );
    println!(
        "100000 blocks:    {:.1} MiB ({} bytes per block)",
        blocks as f64 / 1048576.0,
        blocks / N as isize
    );
    println!(
        "snapshot estimate: {:.1} MiB",
        fdb.snapshot().approx_heap_bytes() as f64 / 1048576.0
    );
}
