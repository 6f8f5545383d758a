//! The gossip control plane with real weftd processes, through the lab
//! (`netns-lab/lab.sh`, the same code path as the demo): five nodes joined
//! through one seed converge and every pod reaches every pod; a killed
//! weftd has its routes withdrawn everywhere and takes its block back on
//! restart; a partition heals; forged, replayed, unsigned and
//! impersonating datagrams and hijacking records change nothing and are
//! counted, and so do records a member (holding the cluster key and its own
//! node key) writes in another node's name; a node struck from the
//! trusted-nodes file is shut out (records and membership) and comes back
//! when restored.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.
//! The lab gets a unique prefix and state directory, and a Drop guard runs
//! `lab.sh down`, on failure too.

mod support;

use control::auth::{Keyring, Sealer};
use control::identity::NodeKey;
use control::record::{Key, Record, Signed, Value, Version};
use control::wire::Body;
use serde_json::Value as Json;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Seals `body` with `sealer` (`None`: sends `again` as it is) and sends it
/// from node 1's namespace to node 2's gossip port; returns the datagram.
fn send_to_node2(
    lab: &support::lab::Lab,
    sealer: Option<&mut Sealer>,
    body: &[u8],
    again: Option<&[u8]>,
) -> Vec<u8> {
    let mut datagram = Vec::new();
    match (sealer, again) {
        (Some(s), _) => s.seal(body, &mut datagram),
        (None, d) => datagram.extend_from_slice(d.expect("a datagram to send again")),
    }
    let mut enter = support::enter(&lab.ns(1));
    let d = datagram.clone();
    std::thread::spawn(move || {
        enter().unwrap();
        let s = UdpSocket::bind("10.99.0.1:0").unwrap();
        s.send_to(&d, "10.99.0.2:7947").unwrap();
    })
    .join()
    .unwrap();
    datagram
}

fn records_body(records: Vec<Signed>) -> Vec<u8> {
    let mut b = Vec::new();
    Body::Records(records).encode(&mut b);
    b
}

#[test]
fn five_nodes_converge_survive_failures_and_refuse_forgeries() {
    let Some(lab) = support::lab::lab("wg") else {
        return;
    };
    let t0 = Instant::now();
    lab.run(&["up", "--nodes", "5", "--pods", "1"]);
    let converged = lab.run(&["wait", "60"]);
    eprintln!(
        "lab up and converged in {:?} (wait: {} s)",
        t0.elapsed(),
        converged.trim()
    );
    for k in 1..=5 {
        assert_eq!(lab.routes(k).len(), 5, "n{k}: {:?}", lab.routes(k));
    }
    // The gossip socket can hold a large cluster's state at once (16 MiB
    // asked, which the kernel doubles), not the default ~208 KiB.
    let ss = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(1),
            "ss",
            "-uamnH",
            "sport",
            "=",
            ":7947",
        ])
        .output()
        .expect("ss runs");
    let ss = String::from_utf8_lossy(&ss.stdout);
    let rb: u64 = ss
        .split(['(', ','])
        .find_map(|f| f.strip_prefix("rb")?.parse().ok())
        .unwrap_or_else(|| panic!("no receive buffer in {ss:?}"));
    assert!(rb >= 16 << 20, "gossip receive buffer {rb} bytes");
    // Five distinct blocks, one per node.
    let blocks: std::collections::BTreeSet<String> = (1..=5).map(|k| lab.block_of(k)).collect();
    assert_eq!(blocks.len(), 5);
    lab.all_pods_reach_all_pods();
    // Every node knows every pod: the CNI plugin told its weftd, gossip
    // told the others (5 pods; records: node, claim, endpoint per node).
    lab.until("endpoints everywhere", Duration::from_secs(20), || {
        (1..=5).all(|k| {
            let g = lab.gossip_stats(k);
            g["endpoints"] == 5 && g["records"] == 15
        })
    });

    // kill -9 one weftd: its block's routes go everywhere else.
    let dead_block = lab.block_of(5);
    lab.run(&["kill", "5"]);
    let took = lab.until("routes to n5 withdrawn", Duration::from_secs(30), || {
        (1..=4).all(|k| !lab.routes(k).iter().any(|r| r.starts_with(&dead_block)))
    });
    eprintln!("n5's routes withdrawn everywhere {took:?} after kill -9");
    // Restart: it rejoins and takes its own block back (its pod keeps its
    // address).
    lab.run(&["start", "5"]);
    lab.run(&["wait", "60"]);
    assert_eq!(lab.block_of(5), dead_block);
    lab.all_pods_reach_all_pods();
    // Its pod is still published (taken back from the cluster's records).
    lab.until("n5's endpoint kept", Duration::from_secs(20), || {
        (1..=5).all(|k| lab.gossip_stats(k)["endpoints"] == 5)
    });

    // Partition {1,2} from {3,4,5}: each side withdraws the other's routes.
    lab.run(&["partition", "1", "2", "--", "3", "4", "5"]);
    let b3 = lab.block_of(3);
    let b1 = lab.block_of(1);
    lab.until("partition seen", Duration::from_secs(30), || {
        !lab.routes(1).iter().any(|r| r.starts_with(&b3))
            && !lab.routes(4).iter().any(|r| r.starts_with(&b1))
    });
    lab.run(&["heal"]);
    let took = lab.until("healed", Duration::from_secs(60), || {
        (1..=5).all(|k| lab.routes(k).len() == 5)
    });
    eprintln!("converged again {took:?} after the partition healed");
    lab.all_pods_reach_all_pods();

    // Forgeries. The real key is in the lab's state; a wrong one is not.
    let real =
        Keyring::parse(&std::fs::read_to_string(lab.state.join("cluster.key")).unwrap()).unwrap();
    let wrong = Keyring::new(&[(1, [0x66; 32])]).unwrap();
    let sender = |name: &str| control::state::fnv(name.as_bytes());
    // The lab runs with node keys, so only datagrams signed by a trusted
    // node get in. The test joins the trusted-nodes file as "t1" (replaced
    // atomically, as a ConfigMap update is) to send as a member would.
    let trusted_file = lab.state.join("trusted-nodes");
    let replace = |text: &str| {
        let tmp = lab.state.join("trusted-nodes.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &trusted_file).unwrap();
    };
    let t1 = NodeKey::generate();
    let lab_file = std::fs::read_to_string(&trusted_file).unwrap();
    replace(&format!(
        "{}\nt1 {}\n",
        lab_file.trim_end(),
        t1.public_hex()
    ));
    lab.until("t1 trusted", Duration::from_secs(10), || {
        (1..=5).all(|k| lab.gossip_stats(k)["trusted_nodes"] == 6)
    });
    let mut as_t1 = Sealer::new(real.clone(), sender("t1"), 1, false).with_signer(t1.signing_key());
    let routes_before = lab.routes(2);
    let before = lab.gossip_stats(2);
    // A record hijacking n3's block for a node "n9", signed with the wrong
    // key, and one (signed right) with a claim later than n3's.
    let hijack = Record {
        key: Key::Claim {
            owner: "n9".into(),
            block: b3.parse().unwrap(),
        },
        version: Version {
            epoch: u64::MAX / 2,
            counter: 1,
        },
        value: Value::Claim {
            claimed_at: u64::MAX / 2,
        },
    };
    let node9 = Record {
        key: Key::Node { owner: "n9".into() },
        version: Version {
            epoch: u64::MAX / 2,
            counter: 2,
        },
        value: Value::Node(control::NodeInfo {
            underlay: vec!["10.99.0.9".parse().unwrap()],
            vtep_mac: [2, 0, 0, 0, 0, 9],
            vxlan: true,
            ipip: true,
            gossip: "10.99.0.9:7947".parse().unwrap(),
            boot: 1,
        }),
    };
    let body = records_body(vec![node9.clone().into(), hijack.clone().into()]);
    // Wrong cluster key; right key but no node signature.
    let mut wrong_key = Sealer::new(wrong, sender("t1"), 2, false).with_signer(t1.signing_key());
    send_to_node2(&lab, Some(&mut wrong_key), &body, None);
    let mut unsigned = Sealer::new(real.clone(), sender("n9"), 1, false);
    send_to_node2(&lab, Some(&mut unsigned), &body, None);
    // From a member: in, and its records checked (n9 is no trusted node);
    // sent again, a replay.
    let signed = send_to_node2(&lab, Some(&mut as_t1), &body, None);
    send_to_node2(&lab, None, &body, Some(&signed));
    let count = |v: &Json, r: &str| v["drops"][r].as_u64().unwrap_or(0);
    // An insider: n1 holds the cluster key and its own node key, and
    // writes in n3's name a node record sending n3's traffic to n1, and an
    // endpoint in n3's block. The lab runs with node keys, so n2 refuses
    // them (and the unsigned n9 records above: n9 is no trusted node).
    let insider =
        NodeKey::parse(&std::fs::read_to_string(lab.state.join("node-n1.key")).unwrap()).unwrap();
    // n1 speaking as n3, with an epoch that would silence n3 (its replay
    // window pushed ahead) if it were believed.
    let mut as_n3 = Sealer::new(real.clone(), sender("n3"), u64::MAX / 2, false)
        .with_signer(insider.signing_key());
    send_to_node2(&lab, Some(&mut as_n3), &body, None);
    let far = Version {
        epoch: u64::MAX / 2,
        counter: 3,
    };
    let mut redirect = match node9.value.clone() {
        Value::Node(n) => n,
        _ => unreachable!(),
    };
    redirect.underlay = vec!["10.99.0.1".parse().unwrap()];
    redirect.gossip = "10.99.0.3:7947".parse().unwrap();
    let in_b3 = b3
        .split('/')
        .next()
        .unwrap()
        .parse::<std::net::Ipv4Addr>()
        .unwrap();
    let pod_ip = std::net::Ipv4Addr::from(u32::from(in_b3) + 9);
    let as_n3 = vec![
        insider.sign(Record {
            key: Key::Node { owner: "n3".into() },
            version: far,
            value: Value::Node(redirect),
        }),
        insider.sign(Record {
            key: Key::Endpoint {
                owner: "n3".into(),
                ip: pod_ip.into(),
            },
            version: far,
            value: Value::Endpoint {
                mac: [2, 0, 0, 0, 0, 1],
            },
        }),
    ];
    // Relayed by a member (as foca and anti-entropy relay records).
    send_to_node2(&lab, Some(&mut as_t1), &records_body(as_n3), None);
    let counted = |after: &Json| {
        count(after, "auth_bad_tag") == count(&before, "auth_bad_tag") + 1
            && count(after, "auth_unsigned") == count(&before, "auth_unsigned") + 1
            && count(after, "auth_bad_signature") == count(&before, "auth_bad_signature") + 1
            && count(after, "auth_replayed") == count(&before, "auth_replayed") + 1
            && count(after, "record_unknown_owner") >= count(&before, "record_unknown_owner") + 2
            && count(after, "record_bad_signature") >= count(&before, "record_bad_signature") + 2
    };
    lab.until(
        "forged and replayed datagrams counted",
        Duration::from_secs(10),
        || counted(&lab.gossip_stats(2)),
    );
    // The forged endpoint is not in n2's view (one endpoint per pod).
    assert_eq!(lab.gossip_stats(2)["endpoints"], before["endpoints"]);
    // No route was hijacked: n3's block still goes to the TUN for n3 (and
    // n9, which is no member, owns nothing routed).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.routes(2), routes_before);
    lab.all_pods_reach_all_pods();

    // The operator revokes n3: its line leaves the trusted-nodes file.
    // Every other node reloads the file, drops n3's records and refuses
    // its datagrams (membership too), so its routes go; n3 keeps the trust
    // it had (the file no longer lists it: logged, not applied).
    let full = std::fs::read_to_string(&trusted_file).unwrap();
    let without_n3: String = full
        .lines()
        .filter(|l| !l.starts_with("n3 "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(without_n3.lines().count(), 5, "{full}");
    let refused_before = count(&lab.gossip_stats(2), "auth_unknown_sender");
    replace(&without_n3);
    let took = lab.until("n3 revoked everywhere", Duration::from_secs(20), || {
        [1, 2, 4, 5]
            .iter()
            .all(|&k| !lab.routes(k).iter().any(|r| r.starts_with(&b3)))
    });
    eprintln!("n3's routes withdrawn {took:?} after its key was revoked");
    lab.until("n3's datagrams refused", Duration::from_secs(10), || {
        count(&lab.gossip_stats(2), "auth_unknown_sender") > refused_before
    });
    // Trusted again: its records come back through anti-entropy.
    replace(&full);
    let took = lab.until("n3 trusted again", Duration::from_secs(30), || {
        (1..=5).all(|k| lab.routes(k).len() == 5)
    });
    eprintln!("n3's routes back {took:?} after its key was restored");
    lab.all_pods_reach_all_pods();
}
