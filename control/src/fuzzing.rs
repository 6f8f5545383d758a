//! Checks the fuzz targets run (fuzz/fuzz_targets/gossip.rs), also replayed
//! on stable by control/tests/corpus.rs. Not part of the public API.

use crate::agent::{Agent, AgentConfig};
use crate::auth::{Keyring, Opener, Sealer};
use crate::counters::Counters;
use crate::record::{NodeInfo, Record};
use crate::wire::Body;

/// The key the simulator uses, so captured datagrams authenticate.
pub const SIM_KEY: [u8; 32] = [0x42; 32];

fn agent(node_keys: bool) -> Agent {
    let ring = Keyring::new(&[(1, SIM_KEY)]).expect("one key");
    let info = NodeInfo {
        underlay: vec!["10.0.0.200".parse().expect("ip")],
        vtep_mac: [2; 6],
        vxlan: true,
        ipip: false,
        gossip: "10.0.0.200:7947".parse().expect("addr"),
        boot: 0,
    };
    let mut cfg = AgentConfig::new("fuzz-node", info.gossip, info, ring);
    cfg.rules.pools = vec!["10.200.0.0/16".parse().expect("net")];
    cfg.rules.min_prefix_v4 = 24;
    cfg.static_blocks = vec!["10.200.0.0/24".parse().expect("net")];
    if node_keys {
        let me = crate::identity::NodeKey::from_secret([1; 32]);
        let other = crate::identity::NodeKey::from_secret([2; 32]);
        let file = format!(
            "fuzz-node {} 10.200.0.0/24\nnode-1 {} 10.200.1.0/24\n",
            me.public_hex(),
            other.public_hex()
        );
        let trusted = crate::identity::TrustedNodes::parse(&file).expect("parses");
        cfg.rules.trusted = Some(std::sync::Arc::new(trusted));
        cfg.node_key = Some(me);
    }
    Agent::new(cfg, 0, 1, 7)
}

/// One control datagram from outside, arbitrary bytes. The first byte
/// picks the layer: 0 = the raw datagram into an agent (only datagrams
/// sealed with [`SIM_KEY`] get past authentication, as captured ones are);
/// 1 = the rest sealed with the right key first, so any body reaches the
/// decoders, foca and the merge (bit 0x40: with node keys, so records also
/// meet signature checks, and the datagram is signed by a trusted member); 2 = the body and record decoders alone.
/// Nothing may panic, and the agent must keep working afterwards. Returns
/// the agent's counters (modes 0 and 1), for tests of the seeds.
pub fn gossip_datagram(data: &[u8]) -> Option<Counters> {
    let (&mode, rest) = data.split_first()?;
    let from = "10.0.0.1:7947".parse().expect("addr");
    match mode % 3 {
        0 => {
            let mut a = agent(false);
            a.handle_datagram(from, &mut rest.to_vec(), 10);
            a.tick(5_000);
            let _ = a.view(5_000);
            let _ = a.drain_output();
            Some(a.counters())
        }
        1 => {
            let mut a = agent(mode & 0x40 != 0);
            let ring = Keyring::new(&[(1, SIM_KEY)]).expect("one key");
            let mut sealed = Vec::new();
            let mut sealer = Sealer::new(ring, 99, 1, mode & 0x80 != 0);
            if mode & 0x40 != 0 {
                // With node keys only signed datagrams get in: seal as
                // "node-1", a trusted member, so the body is reached.
                let node_1 = crate::identity::NodeKey::from_secret([2; 32]);
                sealer = Sealer::new(
                    Keyring::new(&[(1, SIM_KEY)]).expect("one key"),
                    crate::state::fnv(b"node-1"),
                    1,
                    mode & 0x80 != 0,
                )
                .with_signer(node_1.signing_key());
            }
            sealer.seal(rest, &mut sealed);
            a.handle_datagram(from, &mut sealed, 10);
            a.tick(5_000);
            let view = a.view(5_000);
            // Our own block is never taken by what a datagram says.
            assert_eq!(
                view.blocks
                    .get(&"10.200.0.0/24".parse().expect("net"))
                    .map(String::as_str),
                Some("fuzz-node")
            );
            let _ = a.drain_output();
            Some(a.counters())
        }
        _ => {
            let _ = Body::decode(rest);
            let _ = Record::decode(rest);
            let _ = crate::record::Signed::decode(rest);
            let mut o = Opener::new(Keyring::new(&[(1, SIM_KEY)]).expect("one key"), 4);
            let _ = o.open(&mut rest.to_vec());
            // And as a node with node keys opens them.
            let node_1 = crate::identity::NodeKey::from_secret([2; 32]);
            let signers = [(crate::state::fnv(b"node-1"), node_1.verifying_key())];
            o.set_signers(Some(signers.into_iter().collect()));
            let _ = o.open(&mut rest.to_vec());
            None
        }
    }
}
