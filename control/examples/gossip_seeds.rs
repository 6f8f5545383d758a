//! Writes fuzzing seeds for the `gossip` target: datagrams captured from a
//! small simulated cluster (they authenticate under the simulator's key),
//! one file per kind of body, in modes 0 (sealed) and 1 (body only); and
//! `seed-signed-records`: records signed with the key the fuzzing agent
//! trusts for "node-1", in mode 1 with node keys (0x40), which pass every
//! check (tested in control/tests/corpus.rs); `seed-status`, a status
//! body in mode 1.
//!
//! cargo run -p weft-control --example gossip_seeds -- fuzz/corpus/gossip

use control::identity::NodeKey;
use control::record::{Key, NodeInfo, Record, Value, Version};
use control::sim::{Sim, SimConfig};
use control::wire::Body;
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
    std::fs::write(format!("{dir}/seed-signed-records"), signed_records()).expect("write");
    // A status body (its kind came after the captures above were chosen).
    let mut status = vec![1u8];
    let mut body = Vec::new();
    Body::Status(control::wire::NodeStatus {
        path: "kernel".into(),
    })
    .encode(&mut body);
    status.extend_from_slice(&body);
    std::fs::write(format!("{dir}/seed-status"), status).expect("write");
    println!("{} seeds", picked.len() * 2 + 2);
}

fn signed_records() -> Vec<u8> {
    let key = NodeKey::from_secret([2; 32]);
    let owner = || "node-1".to_string();
    let version = |counter| Version { epoch: 5, counter };
    let info = NodeInfo {
        underlay: vec!["10.0.0.1".parse().expect("ip")],
        vtep_mac: [2; 6],
        vxlan: true,
        ipip: false,
        gossip: "10.0.0.1:7947".parse().expect("addr"),
        boot: 5,
    };
    let records = vec![
        Record {
            key: Key::Node { owner: owner() },
            version: version(1),
            value: Value::Node(info),
        },
        Record {
            key: Key::Claim {
                owner: owner(),
                block: "10.200.1.0/24".parse().expect("net"),
            },
            version: version(2),
            value: Value::Claim { claimed_at: 0 },
        },
        Record {
            key: Key::Endpoint {
                owner: owner(),
                ip: "10.200.1.5".parse().expect("ip"),
            },
            version: version(3),
            value: Value::Endpoint { mac: [2; 6] },
        },
    ];
    let mut body = Vec::new();
    Body::Records(records.into_iter().map(|r| key.sign(r)).collect()).encode(&mut body);
    let mut out = vec![0x40];
    out.extend(body);
    out
}
