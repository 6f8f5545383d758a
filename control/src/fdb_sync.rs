//! Writing the control plane's view into fdb.
//!
//! Only entries whose source is [`Source::Gossip`] are touched: static
//! peers from the configuration and this node's own CNI entries stay as
//! they are (and outrank gossip for the same key). Every pass carries a
//! larger version than the last, so a newer view always replaces an older
//! one. One pass is one fdb transaction: readers see the old tables or the
//! new ones, never half of a change.

use crate::state::View;
use fdb::{EncapSet, Endpoint, Fdb, Mac, Meta, NodeId, NodeRecord, Source};
use ipnet::IpNet;
use std::net::IpAddr;

/// What one pass changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Entries added or replaced.
    pub upserted: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries refused by fdb (limits, unknown node).
    pub refused: usize,
}

/// The fdb record for a node of the view.
pub fn node_record(info: &crate::record::NodeInfo) -> NodeRecord {
    NodeRecord {
        underlay_v4: info.underlay.iter().find_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            IpAddr::V6(_) => None,
        }),
        underlay_v6: info.underlay.iter().find_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            IpAddr::V4(_) => None,
        }),
        vtep_mac: Mac(info.vtep_mac),
        encaps: EncapSet {
            vxlan: info.vxlan,
            ipip: info.ipip,
        },
        same_subnet: false,
        // The underlay address comes first (`NodeInfo::underlay`).
        tunnel_v6: matches!(info.underlay.first(), Some(IpAddr::V6(_))),
    }
}

/// Makes fdb's gossip entries equal to `view`, with version `version`
/// (strictly larger on every call).
pub fn sync(fdb: &Fdb, view: &View, version: u64) -> fdb::Result<SyncStats> {
    let meta = Meta::new(Source::Gossip, version);
    fdb.update(|t| {
        let mut st = SyncStats::default();
        let snap = t.view().clone();
        let local = snap.local_node().clone();
        let count = |st: &mut SyncStats, r: fdb::Result<fdb::Outcome>| match r {
            Ok(fdb::Outcome::Inserted | fdb::Outcome::Replaced) => st.upserted += 1,
            Ok(fdb::Outcome::Removed) => st.removed += 1,
            Ok(_) => {}
            Err(_) => st.refused += 1,
        };
        // Removals first (a node going takes its blocks and endpoints).
        for (id, e) in snap.nodes() {
            if *id != local
                && e.meta.source == Source::Gossip
                && !view.nodes.contains_key(id.as_str())
            {
                count(&mut st, t.remove_node(id));
            }
        }
        for (prefix, e) in snap.blocks() {
            let keep = view
                .blocks
                .get(&prefix)
                .is_some_and(|o| o == e.value.node.as_str());
            if e.meta.source == Source::Gossip && !keep {
                count(&mut st, t.remove_block(prefix, meta));
            }
        }
        for (ip, e) in snap.endpoints() {
            let keep = view
                .endpoints
                .get(ip)
                .is_some_and(|(o, m)| o == e.value.node.as_str() && Mac(*m) == e.value.mac);
            if e.meta.source == Source::Gossip && !keep {
                count(&mut st, t.remove_endpoint(*ip, meta));
                count(&mut st, t.remove_neighbour(*ip, meta));
            }
        }
        // Then additions and changes, only where something differs.
        for (name, info) in &view.nodes {
            let id = NodeId::new(name);
            if id == local {
                continue;
            }
            let rec = node_record(info);
            if snap.node(&id).is_some_and(|e| e.value == rec) {
                continue;
            }
            count(&mut st, t.upsert_node(id, rec, meta));
        }
        for (block, owner) in &view.blocks {
            let block: IpNet = *block;
            if snap
                .block(block)
                .is_some_and(|e| e.value.node.as_str() == owner)
            {
                continue;
            }
            count(&mut st, t.upsert_block(block, NodeId::new(owner), meta));
        }
        for (ip, (owner, mac)) in &view.endpoints {
            if owner == local.as_str() {
                continue;
            }
            if snap
                .endpoint(*ip)
                .is_some_and(|e| e.value.node.as_str() == owner && e.value.mac == Mac(*mac))
            {
                continue;
            }
            let ep = Endpoint {
                mac: Mac(*mac),
                node: NodeId::new(owner),
                local_port: None,
            };
            count(&mut st, t.upsert_endpoint(*ip, ep, meta));
            count(&mut st, t.upsert_neighbour(*ip, Mac(*mac), meta));
        }
        Ok(st)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NodeInfo;

    fn info(last: u8) -> NodeInfo {
        NodeInfo {
            underlay: vec![IpAddr::from([10, 99, 0, last])],
            vtep_mac: [0xee, 0, 0, 0, 0, last],
            vxlan: true,
            ipip: false,
            gossip: "10.99.0.1:7947".parse().unwrap(),
            boot: 1,
        }
    }

    #[test]
    fn view_lands_in_fdb_and_leaves_static_entries_alone() {
        let fdb = Fdb::new(NodeId::new("n1"), NodeRecord::default());
        let stat = Meta::new(Source::Static, 1);
        fdb.update(|t| {
            t.upsert_node(NodeId::new("static"), node_record(&info(9)), stat)?;
            t.upsert_block(
                "10.244.9.0/26".parse().unwrap(),
                NodeId::new("static"),
                stat,
            )
        })
        .unwrap();
        let mut view = View::default();
        view.nodes.insert("n1".into(), info(1));
        view.nodes.insert("n2".into(), info(2));
        view.blocks
            .insert("10.244.1.0/26".parse().unwrap(), "n2".into());
        view.blocks
            .insert("10.244.0.0/26".parse().unwrap(), "n1".into());
        view.endpoints
            .insert("10.244.1.5".parse().unwrap(), ("n2".into(), [2; 6]));
        let st = sync(&fdb, &view, 1).unwrap();
        assert_eq!(st.refused, 0);
        let snap = fdb.snapshot();
        assert_eq!(
            snap.owner_of("10.244.1.7".parse().unwrap())
                .unwrap()
                .as_str(),
            "n2"
        );
        assert!(matches!(
            snap.route("10.244.0.7".parse().unwrap()),
            fdb::Route::Local { .. }
        ));
        assert_eq!(
            snap.neighbour("10.244.1.5".parse().unwrap()),
            Some(Mac([2; 6]))
        );
        // The same view again changes nothing.
        assert_eq!(sync(&fdb, &view, 2).unwrap(), SyncStats::default());
        // n2 gone: its node, block and endpoint go; the static peer stays.
        view.nodes.remove("n2");
        view.blocks.remove(&"10.244.1.0/26".parse().unwrap());
        view.endpoints.clear();
        let st = sync(&fdb, &view, 3).unwrap();
        assert!(st.removed >= 1);
        let snap = fdb.snapshot();
        assert!(snap.owner_of("10.244.1.7".parse().unwrap()).is_none());
        assert!(snap.neighbour("10.244.1.5".parse().unwrap()).is_none());
        assert_eq!(
            snap.owner_of("10.244.9.1".parse().unwrap())
                .unwrap()
                .as_str(),
            "static"
        );
    }
}
