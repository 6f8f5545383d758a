//! The large cluster the `memory` and `join` examples build: node `n`
//! (`node-N`) has a node record, a claim on one /25 and 100 endpoints in it.

use control::identity::NodeKey;
use control::record::{Key, NodeInfo, Record, Signed, Value, Version};
use std::net::{IpAddr, Ipv4Addr};

/// Pods (endpoint records) per node.
pub const PER_NODE: u32 = 100;

/// Node `n`'s key.
pub fn key(n: u32) -> NodeKey {
    let mut secret = [7u8; 32];
    secret[..4].copy_from_slice(&n.to_be_bytes());
    NodeKey::from_secret(secret)
}

/// Every record of node `n`, signed with `signer` if given.
pub fn records_of(n: u32, signer: Option<&NodeKey>) -> Vec<Signed> {
    let owner = format!("node-{n}");
    let rec = |key, value, counter| {
        let r = Record {
            key,
            version: Version { epoch: 1, counter },
            value,
        };
        match signer {
            Some(k) => k.sign(r),
            None => Signed::from(r),
        }
    };
    let underlay = IpAddr::V4(Ipv4Addr::from(0x0a63_0000 + n));
    let node = Value::Node(NodeInfo {
        underlay: vec![underlay],
        vtep_mac: [2, 0, 0, 0, (n >> 8) as u8, n as u8],
        vxlan: true,
        ipip: false,
        gossip: (underlay, 7947).into(),
        boot: 1,
    });
    let mut out = vec![rec(
        Key::Node {
            owner: owner.clone(),
        },
        node,
        1,
    )];
    // One /25 per node: 10.<n/256+1>.<n%256>.0/25 holds its 100 pods.
    let base = 0x0a00_0000 + ((n + 256) << 8);
    let block = ipnet::IpNet::new(IpAddr::V4(Ipv4Addr::from(base)), 25).expect("net");
    let claim = Key::Claim {
        owner: owner.clone(),
        block,
    };
    out.push(rec(claim, Value::Claim { claimed_at: 1 }, 2));
    for p in 0..PER_NODE {
        let endpoint = Key::Endpoint {
            owner: owner.clone(),
            ip: IpAddr::V4(Ipv4Addr::from(base + 1 + p)),
        };
        out.push(rec(
            endpoint,
            Value::Endpoint { mac: [2; 6] },
            3 + u64::from(p),
        ));
    }
    out
}
