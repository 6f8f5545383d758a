//! Writes fuzzing seeds for the `gossip` target: datagrams captured from a
//! small simulated cluster (they authenticate under the simulator's key),
//! one file per kind of body, in modes 0 (sealed) and 1 (body only).
//!
//! cargo run -p weft-control --example gossip_seeds -- fuzz/corpus/gossip

use control::sim::{Sim, SimConfig};
use std::collections::BTreeMap;

fn main() {
    let dir = std::env::args().nth(1).expect("output directory");
    std::fs::create_dir_all(&dir).expect("create the directory");
    let mut sim = Sim::new(SimConfig {
        nodes: 4,
        auto_claim: Some(("10.244.0.0/16".parse().expect("net"), 26)),
        ..SimConfig::default()
    });
    sim.capture = Some(Vec::new());
    sim.run_until(8_000);
    let _ = sim.disseminate(1, "10.244.0.9".parse().expect("ip"), 10, 2_000);
    let captured = sim.capture.take().expect("capturing");
    // A few datagrams per body kind and length class.
    let mut picked: BTreeMap<(u8, usize), Vec<u8>> = BTreeMap::new();
    for d in captured {
        let kind = d[29];
        picked.entry((kind, d.len() / 200)).or_insert(d);
    }
    for (i, ((kind, _), d)) in picked.iter().enumerate() {
        let mut sealed = vec![0u8];
        sealed.extend_from_slice(d);
        std::fs::write(format!("{dir}/sealed-{kind}-{i}"), &sealed).expect("write");
        let mut body = vec![1u8];
        body.extend_from_slice(&d[29..d.len() - 16]);
        std::fs::write(format!("{dir}/body-{kind}-{i}"), &body).expect("write");
    }
    println!("{} seeds", picked.len() * 2);
}
