//! Runs the control-plane simulator for one cluster size and loss rate and
//! prints one markdown table row (see README "Control plane at scale").
//!
//! cargo run -p weft-control --release --example gossip_sim -- --nodes 1000 --loss 0.1
//!
//! With `--claims [--want N]`: the blocks-on-demand scenario instead
//! (`Sim::claims_on_demand_scenario`: 10 % loss, a partition and its heal).

use control::sim::{Sim, SimConfig};
use std::time::Instant;

fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = arg(&args, "--nodes", "100").parse().expect("--nodes N");
    let loss: f64 = arg(&args, "--loss", "0").parse().expect("--loss P");
    let seed: u64 = arg(&args, "--seed", "1").parse().expect("--seed S");
    let trials: usize = arg(&args, "--trials", "5").parse().expect("--trials T");
    if args.iter().any(|a| a == "--claims") {
        // Blocks on demand (README "Blocks on demand at scale").
        let want: usize = arg(&args, "--want", "4").parse().expect("--want N");
        let wall = Instant::now();
        match Sim::claims_on_demand_scenario(nodes, want, seed) {
            Ok(r) => println!(
                "| {nodes} | {want} | {:.1} | {} | {} | {:.1} | {:.1} | 0 | 0 | {} | {} |",
                r.second_block_ms as f64 / 1000.0,
                r.no_quorum,
                r.minority_claims,
                r.after_heal_ms as f64 / 1000.0,
                r.agreed_ms as f64 / 1000.0,
                r.blocks,
                wall.elapsed().as_secs()
            ),
            Err(e) => {
                eprintln!("claims scenario failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if args.iter().any(|a| a == "--header") {
        println!("| nodes | loss | join (s) | endpoint → 99.9 % (ms, median/max) | endpoint → 100 % (ms, median/max) | failure detected by all (s) | false positives | bytes/s per node | wall time (s) |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        return;
    }
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        nodes,
        loss,
        seed,
        stagger_ms: (2_000 / nodes as u64).max(1),
        // Every record and datagram signed with the node's key, and
        // verified by every receiver.
        node_keys: args.iter().any(|a| a == "--node-keys"),
        ..SimConfig::default()
    });
    let joined = sim.run_until_converged(600_000);
    let converged_at = sim.now();
    // Steady state: bytes per node per second over 20 s, after 30 s for
    // the join's own traffic to die down.
    sim.run_until(converged_at + 30_000);
    let before: u64 = sim.bytes.iter().sum();
    let kinds = |sim: &mut Sim| {
        let mut k = [0u64; 4];
        for i in 0..nodes {
            let c = sim.agent(i).expect("runs").counters();
            for (sum, b) in k.iter_mut().zip(c.bytes_by_kind) {
                *sum += b;
            }
        }
        k
    };
    let k0 = kinds(&mut sim);
    sim.run_until(converged_at + 50_000);
    if std::env::var_os("SIM_DEBUG").is_some() {
        let k1 = kinds(&mut sim);
        let per = |j: usize| (k1[j] - k0[j]) / nodes as u64 / 20;
        eprintln!(
            "steady B/s per node: swim {} digest {} records {} summary {}",
            per(0),
            per(1),
            per(2),
            per(3)
        );
    }
    let bytes_per_node = (sim.bytes.iter().sum::<u64>() - before) / nodes as u64 / 20;
    if std::env::var_os("SIM_DEBUG").is_some() {
        let c = sim.agent(0).expect("runs").counters();
        eprintln!("node 0: {c:?}");
        let s0 = sim.agent(0).expect("runs").summary();
        let same = (0..nodes)
            .filter(|i| sim.agent(*i).expect("runs").summary() == s0)
            .count();
        eprintln!("{same} of {nodes} nodes have node 0's summary");
    }
    // Dissemination of new endpoints from random nodes.
    let (mut p999, mut all) = (Vec::new(), Vec::new());
    let mut missed = 0;
    for t in 0..trials {
        let origin = (t * 7919 + 13) % nodes;
        let ip = format!("10.{}.{}.{}", 100 + (origin >> 8), origin & 255, 10 + t)
            .parse()
            .expect("valid ip");
        let s = sim.disseminate(origin, ip, 10, 60_000);
        match (s.p999_ms, s.all_ms) {
            (Some(a), Some(b)) => {
                p999.push(a);
                all.push(b);
            }
            _ => missed += 1,
        }
        let t = sim.now();
        sim.run_until(t + 1_000);
    }
    // Failure detection: kill one node, wait for every live node to see it.
    let victim = nodes / 2;
    sim.kill(victim);
    let killed_at = sim.now();
    sim.run_until(killed_at + 60_000);
    let mut observers = std::collections::BTreeMap::new();
    for (at, o, s) in &sim.downs {
        if *s == victim && *at >= killed_at {
            observers.entry(*o).or_insert(*at);
        }
    }
    let detected = (observers.len() == nodes - 1)
        .then(|| observers.values().max().copied().unwrap_or(0) - killed_at);
    let false_positives = sim.downs.iter().filter(|(_, _, s)| *s != victim).count();
    let fmt_s =
        |ms: Option<u64>| ms.map_or("never".to_string(), |m| format!("{:.1}", m as f64 / 1000.0));
    let spread = |v: &mut Vec<u64>| {
        if v.is_empty() {
            "never".to_string()
        } else {
            let max = *v.iter().max().expect("non-empty");
            format!("{} / {}", median(v), max)
        }
    };
    println!(
        "| {nodes} | {:.0} % | {} | {} | {}{} | {} | {false_positives} | {bytes_per_node} | {:.0} |",
        loss * 100.0,
        fmt_s(joined),
        spread(&mut p999),
        spread(&mut all),
        if missed > 0 { format!(" ({missed} missed)") } else { String::new() },
        fmt_s(detected),
        wall.elapsed().as_secs_f64(),
    );
}
