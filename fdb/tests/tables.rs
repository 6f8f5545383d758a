//! Behaviour of the forwarding tables: LPM against a brute-force reference,
//! conflict resolution, expiry, errors that change nothing, node removal,
//! subscriptions, and snapshot consistency under concurrent writers.

use fdb::*;
use ipnet::{IpNet, Ipv4Net};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn gossip(v: u64) -> Meta {
    Meta::new(Source::Gossip, v)
}

fn node(mac_last: u8) -> NodeRecord {
    NodeRecord {
        vtep_mac: Mac([2, 0, 0, 0, 0, mac_last]),
        ..NodeRecord::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Tables with `peers` nodes named n1..=peers (local is n0).
fn with_peers(peers: u8) -> (Fdb, Vec<NodeId>) {
    let fdb = Fdb::new(NodeId::new("n0"), node(0));
    let ids: Vec<NodeId> = (1..=peers).map(|i| NodeId::new(&format!("n{i}"))).collect();
    fdb.update(|t| {
        for (i, id) in ids.iter().enumerate() {
            t.upsert_node(id.clone(), node(i as u8 + 1), gossip(1))?;
        }
        Ok(())
    })
    .unwrap();
    (fdb, ids)
}

proptest! {
    #[test]
    fn lpm_matches_brute_force(
        prefixes in proptest::collection::vec((any::<u32>(), prop_oneof![Just(0u8), 8u8..=32, Just(26u8), Just(24u8)], 0u8..4), 1..60),
        removals in proptest::collection::vec(any::<proptest::sample::Index>(), 0..20),
        probes in proptest::collection::vec(any::<u32>(), 1..100),
    ) {
        let (fdb, ids) = with_peers(4);
        let mut reference: Vec<(Ipv4Net, u8)> = Vec::new();
        fdb.update(|t| {
            for (i, (addr, len, owner)) in prefixes.iter().enumerate() {
                let p = Ipv4Net::new(Ipv4Addr::from(*addr), *len).unwrap().trunc();
                // Higher version each time so the last write wins, as in the reference.
                t.upsert_block(IpNet::V4(p), ids[*owner as usize].clone(), gossip(i as u64 + 1))?;
                reference.retain(|(q, _)| *q != p);
                reference.push((p, *owner));
            }
            Ok(())
        }).unwrap();
        for r in removals {
            if reference.is_empty() { break; }
            let (p, _) = reference.remove(r.index(reference.len()));
            fdb.update(|t| t.remove_block(IpNet::V4(p), gossip(u64::MAX))).unwrap();
        }
        let snap = fdb.snapshot();
        for probe in probes.iter().copied().chain(reference.iter().map(|(p, _)| u32::from(p.network()) | 1)) {
            let a = Ipv4Addr::from(probe);
            let want = reference.iter().filter(|(p, _)| p.contains(&a)).max_by_key(|(p, _)| p.prefix_len());
            let got = snap.block_for(IpAddr::V4(a));
            match (want, got) {
                (None, None) => {}
                (Some((p, o)), Some((gp, e))) => {
                    prop_assert_eq!(IpNet::V4(*p), gp);
                    prop_assert_eq!(&e.value.node, &ids[*o as usize]);
                }
                (w, g) => prop_assert!(false, "{a}: want {w:?}, got {g:?}"),
            }
        }
        prop_assert_eq!(snap.counts().blocks, reference.len());
    }

    #[test]
    fn equal_versions_resolve_the_same_in_any_order(order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle()) {
        // Six updates of one endpoint: two versions, three values each.
        let updates: Vec<(u64, u8)> = vec![(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (2, 2)];
        let (fdb, ids) = with_peers(1);
        for i in order {
            let (v, m) = updates[i];
            fdb.update(|t| t.upsert_endpoint(ip("10.244.1.5"), Endpoint { mac: Mac([2, 0, 0, 0, 9, m]), node: ids[0].clone(), local_port: None }, gossip(v))).unwrap();
        }
        let snap = fdb.snapshot();
        let e = snap.endpoint(ip("10.244.1.5")).unwrap();
        prop_assert_eq!(e.meta.version, 2);
        prop_assert_eq!(e.value.mac, Mac([2, 0, 0, 0, 9, 3]));
    }
}

#[test]
fn versions_and_sources() {
    let (fdb, ids) = with_peers(2);
    let b = net("10.244.1.0/26");
    fdb.update(|t| t.upsert_block(b, ids[0].clone(), gossip(5)))
        .unwrap();
    assert_eq!(
        fdb.update(|t| t.upsert_block(b, ids[1].clone(), gossip(4))),
        Ok(Outcome::Stale)
    );
    assert_eq!(
        fdb.update(|t| t.upsert_block(b, ids[0].clone(), gossip(5))),
        Ok(Outcome::Unchanged)
    );
    assert_eq!(
        fdb.update(|t| t.upsert_block(b, ids[1].clone(), gossip(6))),
        Ok(Outcome::Replaced)
    );
    // A static entry beats gossip whatever the version, and gossip cannot remove it.
    assert_eq!(
        fdb.update(|t| t.upsert_block(b, ids[0].clone(), Meta::new(Source::Static, 1))),
        Ok(Outcome::Replaced)
    );
    assert_eq!(
        fdb.update(|t| t.upsert_block(b, ids[1].clone(), gossip(100))),
        Ok(Outcome::Stale)
    );
    assert_eq!(
        fdb.update(|t| t.remove_block(b, gossip(100))),
        Ok(Outcome::Stale)
    );
    assert_eq!(fdb.snapshot().block(b).unwrap().value.node, ids[0]);
    assert_eq!(
        fdb.update(|t| t.remove_block(b, Meta::new(Source::Static, 1))),
        Ok(Outcome::Removed)
    );
    assert_eq!(
        fdb.update(|t| t.remove_block(b, Meta::new(Source::Static, 1))),
        Ok(Outcome::Absent)
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (fdb, ids) = with_peers(1);
    let before = fdb.snapshot();
    let err = fdb
        .update(|t| t.upsert_block(net("10.244.1.5/26"), ids[0].clone(), gossip(1)))
        .unwrap_err();
    assert_eq!(
        err,
        Error::HostBitsSet {
            prefix: net("10.244.1.5/26")
        }
    );
    assert!(err.to_string().contains("10.244.1.0/26"), "{err}");
    let ghost = NodeId::new("ghost");
    assert_eq!(
        fdb.update(|t| t.upsert_block(net("10.244.2.0/26"), ghost.clone(), gossip(1))),
        Err(Error::UnknownNode {
            node: ghost.clone()
        })
    );
    assert!(fdb
        .update(|t| t.upsert_endpoint(
            ip("10.244.2.1"),
            Endpoint {
                mac: Mac::default(),
                node: ghost.clone(),
                local_port: None
            },
            gossip(1)
        ))
        .is_err());
    // A transaction that fails half-way leaves nothing behind.
    let r = fdb.update(|t| {
        t.upsert_block(net("10.244.3.0/26"), ids[0].clone(), gossip(1))?;
        t.upsert_block(net("fd00:244::5/122"), ids[0].clone(), gossip(1))
    });
    assert!(matches!(r, Err(Error::HostBitsSet { .. })));
    let after = fdb.snapshot();
    assert_eq!(after.seq(), before.seq());
    assert_eq!(after.counts(), before.counts());
    assert!(after.block(net("10.244.3.0/26")).is_none());
    assert_eq!(
        fdb.update(|t| t.remove_node(&NodeId::new("n0"))),
        Err(Error::LocalNode)
    );
}

#[test]
fn capacity_limits() {
    let limits = Limits {
        blocks: 2,
        nodes: 2,
        endpoints: 1,
        neighbours: 1,
    };
    let fdb = Fdb::with_limits(NodeId::new("n0"), node(0), limits);
    let n1 = NodeId::new("n1");
    fdb.update(|t| t.upsert_node(n1.clone(), node(1), gossip(1)))
        .unwrap();
    assert_eq!(
        fdb.update(|t| t.upsert_node(NodeId::new("n2"), node(2), gossip(1))),
        Err(Error::Full {
            table: "node",
            limit: 2
        })
    );
    fdb.update(|t| t.upsert_block(net("10.0.0.0/26"), n1.clone(), gossip(1)))
        .unwrap();
    fdb.update(|t| t.upsert_block(net("fd00::/122"), n1.clone(), gossip(1)))
        .unwrap();
    assert!(matches!(
        fdb.update(|t| t.upsert_block(net("10.0.1.0/26"), n1.clone(), gossip(1))),
        Err(Error::Full { .. })
    ));
    // Replacing an existing entry is allowed at capacity.
    assert_eq!(
        fdb.update(|t| t.upsert_block(net("10.0.0.0/26"), n1.clone(), gossip(2))),
        Ok(Outcome::Replaced)
    );
    let ep = Endpoint {
        mac: Mac::default(),
        node: n1.clone(),
        local_port: None,
    };
    fdb.update(|t| t.upsert_endpoint(ip("10.0.0.1"), ep.clone(), gossip(1)))
        .unwrap();
    assert!(matches!(
        fdb.update(|t| t.upsert_endpoint(ip("10.0.0.2"), ep.clone(), gossip(1))),
        Err(Error::Full { .. })
    ));
    fdb.update(|t| t.upsert_neighbour(ip("10.0.0.1"), Mac::default(), gossip(1)))
        .unwrap();
    assert!(matches!(
        fdb.update(|t| t.upsert_neighbour(ip("10.0.0.2"), Mac::default(), gossip(1))),
        Err(Error::Full { .. })
    ));
}

#[test]
fn routes_local_remote_and_cross_family() {
    let (fdb, ids) = with_peers(1);
    fdb.update(|t| {
        t.upsert_block(
            net("10.244.0.0/26"),
            NodeId::new("n0"),
            Meta::new(Source::Static, 1),
        )?;
        t.upsert_block(net("10.244.0.64/26"), ids[0].clone(), gossip(1))?;
        t.upsert_block(net("fd00:244::40/122"), ids[0].clone(), gossip(1))
    })
    .unwrap();
    let mut r = fdb.reader();
    let s = r.load();
    assert_eq!(
        s.route(ip("10.244.0.9")),
        Route::Local {
            block: net("10.244.0.0/26")
        }
    );
    match s.route(ip("10.244.0.70")) {
        Route::Remote {
            block,
            node,
            record,
        } => {
            assert_eq!(block, net("10.244.0.64/26"));
            assert_eq!(node, &ids[0]);
            assert_eq!(record.vtep_mac, Mac([2, 0, 0, 0, 0, 1]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.route(ip("fd00:244::41")), Route::Remote { .. }));
    assert_eq!(s.route(ip("fd00:244::1")), Route::NoRoute);
    assert_eq!(s.route(ip("10.244.0.200")), Route::NoRoute);
    assert_eq!(s.owner_of(ip("10.244.0.70")), Some(&ids[0]));
}

#[test]
fn learned_entries_expire_and_refresh() {
    let (fdb, ids) = with_peers(1);
    let ep = |m| Endpoint {
        mac: Mac([2, 0, 0, 0, 0, m]),
        node: ids[0].clone(),
        local_port: None,
    };
    fdb.update(|t| {
        t.upsert_endpoint(ip("10.244.1.1"), ep(1), Meta::learned(1, 1_000))?;
        t.upsert_endpoint(ip("10.244.1.2"), ep(2), Meta::learned(1, 1_000))?;
        t.upsert_endpoint(ip("10.244.1.3"), ep(3), gossip(1))?;
        t.upsert_neighbour(
            ip("10.244.1.4"),
            Mac([2, 0, 0, 0, 0, 4]),
            Meta::learned(1, 500),
        )
    })
    .unwrap();
    // Refresh .2 before it expires: same entry, later expiry.
    assert_eq!(
        fdb.update(|t| t.upsert_endpoint(ip("10.244.1.2"), ep(2), Meta::learned(1, 5_000))),
        Ok(Outcome::Unchanged)
    );
    assert_eq!(fdb.expire(499), 0);
    assert_eq!(fdb.expire(500), 1);
    assert_eq!(fdb.snapshot().neighbour(ip("10.244.1.4")), None);
    assert_eq!(fdb.expire(1_000), 1);
    let s = fdb.snapshot();
    assert!(s.endpoint(ip("10.244.1.1")).is_none());
    assert!(
        s.endpoint(ip("10.244.1.2")).is_some(),
        "refreshed entry kept"
    );
    assert!(
        s.endpoint(ip("10.244.1.3")).is_some(),
        "gossip entries never expire"
    );
    // The endpoint's MAC answers ARP for it.
    assert_eq!(s.neighbour(ip("10.244.1.3")), Some(Mac([2, 0, 0, 0, 0, 3])));
    assert_eq!(fdb.expire(5_000), 1);
    assert!(fdb.snapshot().endpoint(ip("10.244.1.2")).is_none());
}

#[test]
fn removing_a_node_withdraws_its_blocks_and_endpoints() {
    let (fdb, ids) = with_peers(2);
    fdb.update(|t| {
        t.upsert_block(net("10.244.1.0/26"), ids[0].clone(), gossip(1))?;
        t.upsert_block(net("fd00:244::40/122"), ids[0].clone(), gossip(1))?;
        t.upsert_block(net("10.244.2.0/26"), ids[1].clone(), gossip(1))?;
        t.upsert_endpoint(
            ip("10.244.1.5"),
            Endpoint {
                mac: Mac::default(),
                node: ids[0].clone(),
                local_port: None,
            },
            gossip(1),
        )
    })
    .unwrap();
    let mut sub = fdb.subscribe(100);
    assert_eq!(fdb.update(|t| t.remove_node(&ids[0])), Ok(Outcome::Removed));
    let s = fdb.snapshot();
    assert_eq!(s.counts().blocks, 1);
    assert_eq!(s.counts().endpoints, 0);
    assert!(s.node(&ids[0]).is_none());
    let mut seen = Vec::new();
    while let Some(Event::Change(c)) = sub.try_next() {
        seen.push(c.what);
    }
    assert_eq!(
        seen.len(),
        4,
        "two blocks, one endpoint, the node: {seen:?}"
    );
    assert!(matches!(seen.last(), Some(What::Node { record: None, .. })));
}

/// Applies a change to a map of "key → debug value", to rebuild state from a stream.
fn apply(state: &mut std::collections::BTreeMap<String, String>, what: &What) {
    let (k, v) = match what {
        What::Block { prefix, owner } => (
            format!("b {prefix}"),
            owner.as_ref().map(|e| format!("{e:?}")),
        ),
        What::Node { id, record } => (format!("n {id}"), record.as_ref().map(|e| format!("{e:?}"))),
        What::Endpoint { ip, endpoint } => (
            format!("e {ip}"),
            endpoint.as_ref().map(|e| format!("{e:?}")),
        ),
        What::Neighbour { ip, mac } => (format!("h {ip}"), mac.as_ref().map(|e| format!("{e:?}"))),
    };
    match v {
        Some(v) => state.insert(k, v),
        None => state.remove(&k),
    };
}

fn state_of(s: &Snapshot) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    for (p, e) in s.blocks() {
        m.insert(format!("b {p}"), format!("{e:?}"));
    }
    for (id, e) in s.nodes() {
        m.insert(format!("n {id}"), format!("{e:?}"));
    }
    for (ip, e) in s.endpoints() {
        m.insert(format!("e {ip}"), format!("{e:?}"));
    }
    for (ip, e) in s.neighbours() {
        m.insert(format!("h {ip}"), format!("{e:?}"));
    }
    m
}

#[test]
fn concurrent_writers_readers_and_subscribers_stay_consistent() {
    let (fdb, ids) = with_peers(4);
    let a = net("10.244.1.0/26");
    let b = net("fd00:244::40/122");
    fdb.update(|t| {
        t.upsert_block(a, ids[0].clone(), gossip(0))?;
        t.upsert_block(b, ids[0].clone(), gossip(0))
    })
    .unwrap();
    let mut sub = fdb.subscribe(1 << 20);
    let mut state = state_of(sub.start());
    let stop = Arc::new(AtomicBool::new(false));
    // Readers: the two blocks always have the same owner and version, since
    // every transaction moves both.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut r = fdb.reader();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = r.load();
                    let x = s.block(a).unwrap();
                    let y = s.block(b).unwrap();
                    assert_eq!(x, y, "torn snapshot at seq {}", s.seq());
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let fdb = fdb.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                for i in 0..2000u64 {
                    let v = i * 3 + w + 1;
                    let owner = ids[(v % 4) as usize].clone();
                    fdb.update(|t| {
                        t.upsert_block(a, owner.clone(), gossip(v))?;
                        t.upsert_block(b, owner.clone(), gossip(v))?;
                        t.upsert_endpoint(
                            IpAddr::V4(Ipv4Addr::from(0x0af4_0100 + (v % 50) as u32)),
                            Endpoint {
                                mac: Mac([0, 0, 0, 0, 0, w as u8]),
                                node: owner.clone(),
                                local_port: None,
                            },
                            gossip(v),
                        )
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // The subscriber saw every change once, in order, with no gaps, and
    // replaying them over its start snapshot gives the final tables.
    let mut last = sub.start().seq();
    while let Some(ev) = sub.next_timeout(Duration::from_millis(100)) {
        match ev {
            Event::Change(c) => {
                assert_eq!(c.seq, last + 1);
                last = c.seq;
                apply(&mut state, &c.what);
            }
            Event::Resync(_) => panic!("queue was large enough"),
        }
    }
    let end = fdb.snapshot();
    assert_eq!(last, end.seq());
    assert_eq!(state, state_of(&end));
}

#[test]
fn a_lagging_subscriber_is_told_to_resync() {
    let (fdb, ids) = with_peers(1);
    let mut sub = fdb.subscribe(2);
    for v in 1..=5 {
        fdb.update(|t| t.upsert_block(net("10.244.1.0/26"), ids[0].clone(), gossip(v)))
            .unwrap();
    }
    match sub.try_next() {
        Some(Event::Resync(s)) => assert_eq!(s.seq(), fdb.snapshot().seq()),
        other => panic!("expected a resync, got {other:?}"),
    }
    fdb.update(|t| t.upsert_block(net("10.244.1.0/26"), ids[0].clone(), gossip(9)))
        .unwrap();
    match sub.try_next() {
        Some(Event::Change(c)) => assert_eq!(c.seq, fdb.snapshot().seq()),
        other => panic!("expected the next change, got {other:?}"),
    }
    assert!(sub.try_next().is_none());
}

#[test]
fn a_nodes_own_addresses_route_to_it_and_may_be_its_inner_sources() {
    let (fdb, ids) = with_peers(2);
    let with_addrs = |mac: u8, v4: &str, v6: Option<&str>| NodeRecord {
        underlay_v4: Some(v4.parse().unwrap()),
        underlay_v6: v6.map(|a| a.parse().unwrap()),
        ..node(mac)
    };
    fdb.update(|t| {
        t.upsert_node(
            ids[0].clone(),
            with_addrs(1, "10.99.0.2", Some("fd00:99::2")),
            gossip(2),
        )?;
        t.upsert_node(ids[1].clone(), with_addrs(2, "10.99.0.3", None), gossip(2))?;
        t.upsert_block(net("10.244.0.64/26"), ids[0].clone(), gossip(1))
    })
    .unwrap();
    let s = fdb.snapshot();
    assert_eq!(s.node_at(ip("10.99.0.2")), Some(&ids[0]));
    assert_eq!(s.node_at(ip("::ffff:10.99.0.3")), Some(&ids[1]));
    assert_eq!(s.node_at(ip("fd00:99::2")), Some(&ids[0]));
    match s.route(ip("fd00:99::2")) {
        Route::Host { node, .. } => assert_eq!(node, &ids[0]),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.route(ip("10.99.0.9")), Route::NoRoute);
    // Anti-spoofing: a node's blocks and its own addresses, nothing else.
    assert!(s.may_send_from(&ids[0], ip("10.244.0.70")));
    assert!(s.may_send_from(&ids[0], ip("10.99.0.2")));
    assert!(!s.may_send_from(&ids[0], ip("10.99.0.3")));
    assert!(!s.may_send_from(&ids[1], ip("10.244.0.70")));
    assert!(!s.may_send_from(&ids[1], ip("10.99.0.9")));
    // A changed address moves the index; a removed node leaves it.
    fdb.update(|t| t.upsert_node(ids[0].clone(), with_addrs(1, "10.99.0.7", None), gossip(3)))
        .unwrap();
    let s = fdb.snapshot();
    assert_eq!(s.node_at(ip("10.99.0.2")), None);
    assert_eq!(s.node_at(ip("fd00:99::2")), None);
    assert_eq!(s.node_at(ip("10.99.0.7")), Some(&ids[0]));
    fdb.update(|t| t.remove_node(&ids[0])).unwrap();
    assert_eq!(fdb.snapshot().node_at(ip("10.99.0.7")), None);
}
