//! The replicated state: every record this node knows, merged; per-owner
//! digests for anti-entropy; and the effective view (who owns which block,
//! which endpoints count) that is written into fdb.

use crate::identity::TrustedNodes;
use crate::record::{Key, NodeInfo, OwnerSig, Record, RecordError, Signed, Value, Version};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// What the cluster accepts, and how much of it.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Pod pools claims must lie in (empty: any block).
    pub pools: Vec<IpNet>,
    /// Most owners (nodes) kept.
    pub max_owners: usize,
    /// Most records per owner (its node record, claims, endpoints).
    pub max_records_per_owner: usize,
    /// How long a tombstone is kept, in ms.
    pub tombstone_ttl_ms: u64,
    /// Shortest IPv4 claim prefix (a claim may not be larger than a block).
    pub min_prefix_v4: u8,
    /// Shortest IPv6 claim prefix.
    pub min_prefix_v6: u8,
    /// Node keys: when set, a record changes the state only if its owner is
    /// listed, its signature verifies and it lies in the owner's allowed
    /// ranges ([`TrustedNodes::verify`]).
    pub trusted: Option<Arc<TrustedNodes>>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            pools: Vec::new(),
            max_owners: 10_000,
            max_records_per_owner: 4_096,
            tombstone_ttl_ms: 10 * 60 * 1000,
            min_prefix_v4: 16,
            min_prefix_v6: 64,
            trusted: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    version: Version,
    value: Value,
    /// The owner's signature, passed on with the record (boxed: 8 bytes
    /// per record in a cluster without node keys, not 65).
    sig: Option<Box<OwnerSig>>,
    /// Local time it was stored (for tombstone expiry).
    stored_ms: u64,
}

impl Stored {
    /// The record stored under `key`, with its signature.
    fn signed(&self, key: &Key) -> Signed {
        Signed {
            record: Record {
                key: key.clone(),
                version: self.version,
                value: self.value.clone(),
            },
            sig: self.sig.as_deref().copied(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Owner {
    records: BTreeMap<Key, Stored>,
    digest: u64,
}

/// FNV-1a over bytes: stable across nodes and builds (digests and owner
/// hashes travel on the wire).
pub use fdb::fnv1a as fnv;

/// The entries of `map` whose block overlaps `block` (inside it, equal, or
/// containing it), in O(log n + prefix length) instead of a pass over the
/// map. Keys must be networks (no host bits), as claim keys are.
fn overlapping<V>(map: &BTreeMap<IpNet, V>, block: IpNet) -> impl Iterator<Item = (&IpNet, &V)> {
    let (lo, hi) = match block {
        IpNet::V4(b) => (
            IpNet::V4(ipnet::Ipv4Net::new_assert(b.network(), 0)),
            IpNet::V4(ipnet::Ipv4Net::new_assert(b.broadcast(), 32)),
        ),
        IpNet::V6(b) => (
            IpNet::V6(ipnet::Ipv6Net::new_assert(b.network(), 0)),
            IpNet::V6(ipnet::Ipv6Net::new_assert(b.broadcast(), 128)),
        ),
    };
    // Inside it (or equal): their addresses lie in its range.
    let inside = map.range(lo..=hi).filter(move |(b, _)| block.contains(*b));
    // Containing it: one candidate per shorter prefix length.
    let containing = (0..block.prefix_len()).filter_map(move |len| {
        let sup = IpNet::new(block.addr(), len).ok()?.trunc();
        map.get_key_value(&sup)
    });
    inside.chain(containing)
}

/// Takes `owner` out of the claim index entry of `block`.
fn unindex(index: &mut BTreeMap<IpNet, BTreeSet<String>>, block: IpNet, owner: &str) {
    if let Some(owners) = index.get_mut(&block) {
        owners.remove(owner);
        if owners.is_empty() {
            index.remove(&block);
        }
    }
}

fn entry_hash(key: &Key, version: Version, value: &Value) -> u64 {
    let bytes = postcard::to_allocvec(&(key, version, value)).expect("serialises");
    // Mix so that XOR-ing many of them does not cancel structure.
    let h = fnv(&bytes);
    h ^ (h >> 29).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// log2 of the number of anti-entropy buckets.
pub const BUCKET_BITS: u32 = 6;
/// Number of anti-entropy buckets.
pub const BUCKETS: usize = 1 << BUCKET_BITS;

/// The owner-hash range of bucket `i`.
pub fn bucket_range(i: usize) -> (u64, u64) {
    let lo = (i as u64) << (64 - BUCKET_BITS);
    (lo, lo | (u64::MAX >> BUCKET_BITS))
}

/// Who owns which block, which nodes and endpoints count: what fdb gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Live nodes with a node record.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Blocks whose winning claim belongs to a live node.
    pub blocks: BTreeMap<IpNet, String>,
    /// Endpoints of live nodes that lie in their blocks: IP → (node, MAC).
    pub endpoints: BTreeMap<IpAddr, (String, [u8; 6])>,
    /// Multicast groups with members on live nodes: group → (node →
    /// member pods there).
    pub groups: BTreeMap<IpAddr, BTreeMap<String, u32>>,
}

/// Every record this node knows.
#[derive(Debug, Clone, Default)]
pub struct State {
    rules: Rules,
    owners: BTreeMap<String, Owner>,
    /// Blocks from this node's own configuration: this node never gives
    /// them up, whatever the records say.
    pinned: Option<(String, Vec<IpNet>)>,
    /// Grows whenever a claim record (or trust) changes: callers cache
    /// [`Self::winning_claims`] against it.
    claims_seq: u64,
    /// Every live claim (a claim record whose value is a claim, of any
    /// owner): block → owners. Answers "who else claims this block" without
    /// a pass over all records (a claim check asks it of every node).
    claim_index: BTreeMap<IpNet, BTreeSet<String>>,
}

impl State {
    /// An empty state under `rules`.
    pub fn new(rules: Rules) -> Self {
        State {
            rules,
            owners: BTreeMap::new(),
            pinned: None,
            claims_seq: 0,
            claim_index: BTreeMap::new(),
        }
    }

    /// Pins `blocks` to `owner` (this node and its configured blocks): they
    /// are accepted first in [`Self::winning_claims`]. A conflicting claim
    /// elsewhere is a misconfiguration or an attack; either way this node
    /// keeps routing its own pods.
    pub fn pin(&mut self, owner: &str, blocks: &[IpNet]) {
        self.pinned = Some((owner.to_string(), blocks.to_vec()));
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The rules, to change (tests).
    #[cfg(test)]
    pub(crate) fn rules_mut(&mut self) -> &mut Rules {
        &mut self.rules
    }

    /// Checks a record against the rules (shape, pools).
    pub fn admit(&self, r: &Record) -> Result<(), RecordError> {
        r.check_shape()?;
        if let Key::Claim { block, .. } = &r.key {
            if !self.rules.pools.is_empty() && !self.rules.pools.iter().any(|p| p.contains(block)) {
                return Err(RecordError::BadBlock);
            }
            let min = match block {
                IpNet::V4(_) => self.rules.min_prefix_v4,
                IpNet::V6(_) => self.rules.min_prefix_v6,
            };
            if block.prefix_len() < min {
                return Err(RecordError::BadBlock);
            }
        }
        Ok(())
    }

    /// Checks `s` against the trusted-nodes file, if the cluster uses node
    /// keys (otherwise every record passes).
    pub fn verify(&self, s: &Signed) -> Result<(), RecordError> {
        match &self.rules.trusted {
            Some(t) => t.verify(s),
            None => Ok(()),
        }
    }

    /// Merges one record. `Ok(true)` if it changed the state (new
    /// information, worth passing on), `Ok(false)` if it was stale or known.
    /// Signatures are checked only for records that would change the state:
    /// re-sent known records cost no verification.
    pub fn apply(&mut self, s: impl Into<Signed>, now_ms: u64) -> Result<bool, RecordError> {
        let s: Signed = s.into();
        self.admit(&s.record)?;
        if self.is_known(&s.record) {
            return Ok(false);
        }
        self.verify(&s)?;
        self.insert(s, now_ms)
    }

    /// [`apply`](Self::apply) for many records, one result per record, in
    /// order, as if applied one after another; the signatures of those that
    /// would change the state are checked together
    /// ([`TrustedNodes::verify_all`]), which is what makes a node joining a
    /// large cluster affordable.
    pub fn apply_all(
        &mut self,
        records: Vec<Signed>,
        now_ms: u64,
    ) -> Vec<Result<bool, RecordError>> {
        let mut results: Vec<Result<bool, RecordError>> = Vec::with_capacity(records.len());
        let mut new = Vec::new();
        for (i, s) in records.iter().enumerate() {
            results.push(self.admit(&s.record).map(|()| false));
            if results[i].is_ok() && !self.is_known(&s.record) {
                new.push(i);
            }
        }
        if let Some(t) = &self.rules.trusted {
            let refs: Vec<&Signed> = new.iter().map(|&i| &records[i]).collect();
            for (&i, checked) in new.iter().zip(t.verify_all(&refs)) {
                if let Err(e) = checked {
                    results[i] = Err(e);
                }
            }
        }
        for (i, s) in records.into_iter().enumerate() {
            if results[i].is_ok() && new.binary_search(&i).is_ok() {
                results[i] = self.insert(s, now_ms);
            }
        }
        results
    }

    /// True if the state holds this record's version and value, or newer.
    fn is_known(&self, r: &Record) -> bool {
        self.owners
            .get(r.key.owner())
            .and_then(|o| o.records.get(&r.key))
            .is_some_and(|old| (old.version, &old.value) >= (r.version, &r.value))
    }

    /// Stores an admitted, verified record (unless a record merged since
    /// made it stale).
    fn insert(&mut self, s: Signed, now_ms: u64) -> Result<bool, RecordError> {
        if self.is_known(&s.record) {
            return Ok(false);
        }
        let Signed { record: r, sig } = s;
        let owner_name = r.key.owner();
        if !self.owners.contains_key(owner_name) && self.owners.len() >= self.rules.max_owners {
            return Err(RecordError::LimitReached);
        }
        let max_records = self.rules.max_records_per_owner;
        let owner = self.owners.entry(owner_name.to_string()).or_default();
        match owner.records.get(&r.key) {
            Some(old) => owner.digest ^= entry_hash(&r.key, old.version, &old.value),
            None if owner.records.len() >= max_records => {
                let empty = owner.records.is_empty();
                if empty {
                    self.owners.remove(owner_name);
                }
                return Err(RecordError::LimitReached);
            }
            None => {}
        }
        owner.digest ^= entry_hash(&r.key, r.version, &r.value);
        if let Key::Claim { owner: name, block } = &r.key {
            self.claims_seq += 1;
            if matches!(r.value, Value::Claim { .. }) {
                self.claim_index
                    .entry(*block)
                    .or_default()
                    .insert(name.clone());
            } else {
                unindex(&mut self.claim_index, *block, name);
            }
        }
        owner.records.insert(
            r.key,
            Stored {
                version: r.version,
                value: r.value,
                sig: sig.map(Box::new),
                stored_ms: now_ms,
            },
        );
        Ok(true)
    }

    /// The live claims overlapping `block` (containing it, inside it or
    /// equal), of every owner: `(owner, block, claimed_at)`.
    pub fn claims_overlapping(&self, block: IpNet) -> Vec<(String, IpNet, u64)> {
        let mut out = Vec::new();
        for (b, owners) in overlapping(&self.claim_index, block) {
            for o in owners {
                if let Some(Value::Claim { claimed_at }) = self.value(&Key::Claim {
                    owner: o.clone(),
                    block: *b,
                }) {
                    out.push((o.clone(), *b, *claimed_at));
                }
            }
        }
        out
    }

    /// The stored record under `key`, with its owner's signature.
    pub fn signed(&self, key: &Key) -> Option<Signed> {
        self.owners
            .get(key.owner())
            .and_then(|o| o.records.get(key))
            .map(|s| s.signed(key))
    }

    /// A number that grows whenever a claim record or the trust changes.
    pub fn claims_seq(&self) -> u64 {
        self.claims_seq
    }

    /// The stored version of `key`.
    pub fn version(&self, key: &Key) -> Option<Version> {
        self.owners
            .get(key.owner())
            .and_then(|o| o.records.get(key))
            .map(|s| s.version)
    }

    /// The stored value of `key`.
    pub fn value(&self, key: &Key) -> Option<&Value> {
        self.owners
            .get(key.owner())
            .and_then(|o| o.records.get(key))
            .map(|s| &s.value)
    }

    /// Drops tombstones older than the TTL; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let ttl = self.rules.tombstone_ttl_ms;
        self.retain_records(|_, s| {
            !(s.value == Value::Deleted && now_ms.saturating_sub(s.stored_ms) > ttl)
        })
    }

    /// Replaces the trusted-nodes file (reloaded by the operator) and drops
    /// every record that no longer verifies under it: a node taken out of
    /// the file loses its routes everywhere, a rotated key or a narrowed
    /// range takes effect at once. Returns how many records were dropped.
    /// Records refused before and now trusted come back through
    /// anti-entropy (the owners' digests differ).
    pub fn set_trusted(&mut self, trusted: Option<Arc<TrustedNodes>>) -> usize {
        self.rules.trusted = trusted;
        self.claims_seq += 1;
        let Some(t) = self.rules.trusted.clone() else {
            return 0;
        };
        self.retain_records(|k, s| t.verify(&s.signed(k)).is_ok())
    }

    /// Keeps the records `keep` accepts, keeping digests right and dropping
    /// owners left with none; returns how many records went.
    fn retain_records(&mut self, mut keep: impl FnMut(&Key, &Stored) -> bool) -> usize {
        let mut n = 0;
        let index = &mut self.claim_index;
        self.owners.retain(|_, o| {
            let before = o.records.len();
            let mut digest = o.digest;
            o.records.retain(|k, s| {
                let kept = keep(k, s);
                if !kept {
                    digest ^= entry_hash(k, s.version, &s.value);
                    if let Key::Claim { owner, block } = k {
                        unindex(index, *block, owner);
                    }
                }
                kept
            });
            o.digest = digest;
            n += before - o.records.len();
            !o.records.is_empty()
        });
        n
    }

    /// All records of `owner`.
    pub fn records_of<'a>(&'a self, owner: &str) -> impl Iterator<Item = Signed> + 'a {
        self.owners
            .get(owner)
            .into_iter()
            .flat_map(|o| o.records.iter())
            .map(|(k, s)| s.signed(k))
    }

    /// Every owner's `(hash of its name, digest of its records)`, sorted by
    /// the name hash: what anti-entropy compares.
    pub fn digests(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .owners
            .iter()
            .map(|(name, o)| (fnv(name.as_bytes()), o.digest))
            .collect();
        v.sort_unstable();
        v
    }

    /// The digests folded into [`BUCKETS`] buckets by the top bits of the
    /// owner hash: one small message tells whether two states differ, and
    /// where.
    pub fn bucket_digests(&self) -> Vec<u64> {
        let mut b = vec![0u64; BUCKETS];
        for (h, d) in self.digests() {
            let i = (h >> (64 - BUCKET_BITS)) as usize;
            b[i] ^= d.rotate_left((h & 63) as u32) ^ h;
        }
        b
    }

    /// Owners whose name hash lies in `lo..=hi`.
    pub fn owners_in(&self, lo: u64, hi: u64) -> impl Iterator<Item = (&str, u64)> {
        self.owners.iter().filter_map(move |(name, o)| {
            let h = fnv(name.as_bytes());
            (lo..=hi).contains(&h).then_some((name.as_str(), o.digest))
        })
    }

    /// Number of owners and records.
    pub fn size(&self) -> (usize, usize) {
        (
            self.owners.len(),
            self.owners.values().map(|o| o.records.len()).sum(),
        )
    }

    /// Known owner names.
    pub fn owner_names(&self) -> impl Iterator<Item = &str> {
        self.owners.keys().map(|s| s.as_str())
    }

    /// The winning claims among owners for which `may_claim` holds: every
    /// live claim, earliest `claimed_at` first (then owner name, then
    /// block), is accepted unless it overlaps one accepted before. The same
    /// state gives the same answer on every node.
    pub fn winning_claims(&self, may_claim: impl Fn(&str) -> bool) -> BTreeMap<IpNet, String> {
        let mut claims: Vec<(u64, &str, IpNet)> = Vec::new();
        for (name, o) in &self.owners {
            if !may_claim(name) {
                continue;
            }
            for (k, s) in &o.records {
                if let (Key::Claim { block, .. }, Value::Claim { claimed_at }) = (k, &s.value) {
                    claims.push((*claimed_at, name, *block));
                }
            }
        }
        claims.sort();
        let mut won: BTreeMap<IpNet, String> = BTreeMap::new();
        if let Some((owner, blocks)) = &self.pinned {
            for b in blocks {
                won.insert(*b, owner.clone());
            }
        }
        for (_, owner, block) in claims {
            if overlapping(&won, block).next().is_some() {
                continue;
            }
            // (A pinned block is already in; its own claim record lands here
            // and is skipped as overlapping itself.)
            won.insert(block, owner.to_string());
        }
        won
    }

    /// The effective view: nodes `live` names (with the epoch of the start
    /// they are live in), blocks won by owners for which `may_claim` holds
    /// (routed only if live), their endpoints that lie inside their won
    /// blocks, and their groups published in that start.
    pub fn view(
        &self,
        live: impl Fn(&str) -> Option<u64>,
        may_claim: impl Fn(&str) -> bool,
    ) -> View {
        let mut view = View::default();
        let mut live_since: BTreeMap<&str, u64> = BTreeMap::new();
        for (name, o) in &self.owners {
            let Some(boot) = live(name) else {
                continue;
            };
            live_since.insert(name.as_str(), boot);
            let key = Key::Node {
                owner: name.clone(),
            };
            if let Some(Stored {
                value: Value::Node(info),
                ..
            }) = o.records.get(&key)
            {
                view.nodes.insert(name.clone(), info.clone());
            }
        }
        let won = self.winning_claims(may_claim);
        for (block, owner) in &won {
            if view.nodes.contains_key(owner) {
                view.blocks.insert(*block, owner.clone());
            }
        }
        // Each owner's won blocks, so an endpoint is checked against its
        // owner's few blocks, not every block of the cluster.
        let mut blocks_of: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        for (b, owner) in &view.blocks {
            blocks_of.entry(owner.as_str()).or_default().push(*b);
        }
        for (name, o) in &self.owners {
            if !view.nodes.contains_key(name) {
                continue;
            }
            let Some(mine) = blocks_of.get(name.as_str()) else {
                continue;
            };
            for (k, s) in &o.records {
                if let (Key::Endpoint { ip, .. }, Value::Endpoint { mac }) = (k, &s.value) {
                    let inside = mine.iter().any(|b| b.contains(ip));
                    if inside {
                        view.endpoints.insert(*ip, (name.clone(), *mac));
                    }
                }
            }
        }
        // Groups need no block: a live node with pods in the group. Only
        // what the node published in its latest start counts (the later of
        // the start it is live in and its node record's epoch): a restarted
        // node relearns its pods' groups, and until it has, copies sent on
        // its old records would find no member there (it deletes the
        // records it no longer holds when it hears them, which takes a
        // round trip).
        for (name, o) in &self.owners {
            if !view.nodes.contains_key(name) {
                continue;
            }
            let started = o
                .records
                .get(&Key::Node {
                    owner: name.clone(),
                })
                .map_or(0, |n| n.version.epoch)
                .max(live_since.get(name.as_str()).copied().unwrap_or(0));
            for (k, s) in &o.records {
                if s.version.epoch < started {
                    continue;
                }
                if let (Key::Group { group, .. }, Value::Members { pods }) = (k, &s.value) {
                    view.groups
                        .entry(*group)
                        .or_default()
                        .insert(name.clone(), *pods);
                }
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(epoch: u64, counter: u64) -> Version {
        Version { epoch, counter }
    }

    fn claim(owner: &str, block: &str, at: u64, ver: Version) -> Record {
        Record {
            key: Key::Claim {
                owner: owner.into(),
                block: block.parse().unwrap(),
            },
            version: ver,
            value: Value::Claim { claimed_at: at },
        }
    }

    fn node(owner: &str, ver: Version) -> Record {
        Record {
            key: Key::Node {
                owner: owner.into(),
            },
            version: ver,
            value: Value::Node(NodeInfo {
                underlay: vec!["10.99.0.1".parse().unwrap()],
                vtep_mac: [2; 6],
                vxlan: true,
                ipip: false,
                gossip: "10.99.0.1:7947".parse().unwrap(),
                boot: 1,
            }),
        }
    }

    fn endpoint(owner: &str, ip: &str, ver: Version) -> Record {
        Record {
            key: Key::Endpoint {
                owner: owner.into(),
                ip: ip.parse().unwrap(),
            },
            version: ver,
            value: Value::Endpoint { mac: [7; 6] },
        }
    }

    #[test]
    fn newer_versions_win_and_stale_ones_change_nothing() {
        let mut s = State::default();
        assert!(s.apply(node("a", v(1, 1)), 0).unwrap());
        assert!(!s.apply(node("a", v(1, 1)), 0).unwrap());
        assert!(s.apply(node("a", v(1, 2)), 0).unwrap());
        assert!(!s.apply(node("a", v(1, 1)), 0).unwrap());
        // A restart (new epoch) beats any counter of the old epoch.
        assert!(s.apply(node("a", v(2, 0)), 0).unwrap());
        assert_eq!(s.version(&node("a", v(0, 0)).key), Some(v(2, 0)));
    }

    #[test]
    fn earliest_claim_wins_and_overlaps_lose() {
        let mut s = State::default();
        s.apply(claim("b", "10.244.0.0/26", 100, v(1, 1)), 0)
            .unwrap();
        s.apply(claim("a", "10.244.0.0/26", 200, v(1, 1)), 0)
            .unwrap();
        s.apply(claim("c", "10.244.0.0/24", 150, v(1, 1)), 0)
            .unwrap();
        s.apply(claim("c", "10.244.1.0/26", 150, v(1, 2)), 0)
            .unwrap();
        let won = s.winning_claims(|_| true);
        assert_eq!(won.get(&"10.244.0.0/26".parse().unwrap()).unwrap(), "b");
        assert!(!won.contains_key(&"10.244.0.0/24".parse().unwrap()));
        assert_eq!(won.get(&"10.244.1.0/26".parse().unwrap()).unwrap(), "c");
        // Same time: the smaller name wins, on every node.
        let mut t = State::default();
        t.apply(claim("z", "10.244.2.0/26", 5, v(1, 1)), 0).unwrap();
        t.apply(claim("y", "10.244.2.0/26", 5, v(1, 1)), 0).unwrap();
        assert_eq!(t.winning_claims(|_| true).values().next().unwrap(), "y");
        // An owner that may no longer claim (dead past its grace) loses it.
        // (Then c's earlier /24 beats a's later /26 inside it.)
        let won = s.winning_claims(|o| o != "b");
        assert_eq!(won.get(&"10.244.0.0/24".parse().unwrap()).unwrap(), "c");
        assert!(!won.contains_key(&"10.244.0.0/26".parse().unwrap()));
        let won = s.winning_claims(|o| o != "b" && o != "c");
        assert_eq!(won.get(&"10.244.0.0/26".parse().unwrap()).unwrap(), "a");
    }

    #[test]
    fn pinned_blocks_stay_and_oversized_claims_are_refused() {
        let mut s = State::default();
        s.pin("me", &["10.244.0.0/26".parse().unwrap()]);
        // An earlier (time 0) claim by a smaller name of a block around mine.
        s.apply(claim("a", "10.244.0.0/25", 0, v(1, 1)), 0).unwrap();
        s.apply(claim("me", "10.244.0.0/26", 0, v(1, 1)), 0)
            .unwrap();
        let won = s.winning_claims(|_| true);
        assert_eq!(won.get(&"10.244.0.0/26".parse().unwrap()).unwrap(), "me");
        assert_eq!(won.len(), 1);
        // A claim larger than the rules allow is refused outright.
        assert_eq!(
            s.apply(claim("a", "10.0.0.0/8", 0, v(1, 2)), 0),
            Err(RecordError::BadBlock)
        );
    }

    #[test]
    fn view_keeps_only_endpoints_inside_their_owners_blocks() {
        let mut s = State::default();
        for r in [
            node("a", v(1, 1)),
            node("b", v(1, 1)),
            claim("a", "10.244.0.0/26", 1, v(1, 2)),
            claim("b", "10.244.1.0/26", 1, v(1, 2)),
            endpoint("a", "10.244.0.5", v(1, 3)),
            // b announces an address in a's block: not believed.
            endpoint("b", "10.244.0.9", v(1, 3)),
            endpoint("b", "10.244.1.9", v(1, 4)),
        ] {
            s.apply(r, 0).unwrap();
        }
        let view = s.view(|_| Some(0), |_| true);
        assert_eq!(view.nodes.len(), 2);
        assert_eq!(view.blocks.len(), 2);
        let ips: Vec<String> = view.endpoints.keys().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.244.0.5", "10.244.1.9"]);
        // b dead (but within its grace): its block is kept, not routed.
        let view = s.view(|o| (o != "b").then_some(0), |_| true);
        assert_eq!(view.blocks.len(), 1);
        assert_eq!(view.endpoints.len(), 1);
    }

    #[test]
    fn limits_and_pools_are_enforced() {
        let mut s = State::new(Rules {
            pools: vec!["10.244.0.0/16".parse().unwrap()],
            max_owners: 2,
            max_records_per_owner: 2,
            tombstone_ttl_ms: 10,
            ..Rules::default()
        });
        assert_eq!(
            s.apply(claim("a", "10.9.0.0/26", 1, v(1, 1)), 0),
            Err(RecordError::BadBlock)
        );
        s.apply(node("a", v(1, 1)), 0).unwrap();
        s.apply(node("b", v(1, 1)), 0).unwrap();
        assert_eq!(
            s.apply(node("c", v(1, 1)), 0),
            Err(RecordError::LimitReached)
        );
        s.apply(endpoint("a", "10.244.0.1", v(1, 2)), 0).unwrap();
        assert_eq!(
            s.apply(endpoint("a", "10.244.0.2", v(1, 3)), 0),
            Err(RecordError::LimitReached)
        );
        assert_eq!(s.size(), (2, 3));
    }

    #[test]
    fn winning_claims_match_a_pass_over_every_pair() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for _ in 0..20 {
            let mut s = State::default();
            let mut all: Vec<(u64, String, IpNet)> = Vec::new();
            for i in 0..300u64 {
                let len = rng.random_range(22..=28u8);
                let addr = 0x0a00_0000u32 | (rng.random_range(0..1u32 << 12) << 8);
                let block = IpNet::V4(ipnet::Ipv4Net::new_assert(addr.into(), len)).trunc();
                let (at, owner) = (rng.random_range(0..50u64), format!("n{}", i % 40));
                let c = claim(&owner, &block.to_string(), at, v(1, i + 1));
                if s.apply(c, 0).is_ok() {
                    all.retain(|(_, o, b)| !(o == &owner && *b == block));
                    all.push((at, owner, block));
                }
            }
            // The reference: earliest first, each kept unless it overlaps
            // one kept before.
            all.sort();
            let mut want: Vec<(IpNet, String)> = Vec::new();
            for (_, o, b) in all {
                if !want.iter().any(|(w, _)| w.contains(&b) || b.contains(w)) {
                    want.push((b, o));
                }
            }
            want.sort();
            let got: Vec<(IpNet, String)> = s.winning_claims(|_| true).into_iter().collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn overlapping_claims_are_found_through_the_index() {
        let mut s = State::default();
        let net = |t: &str| t.parse::<IpNet>().unwrap();
        s.apply(claim("a", "10.244.0.0/26", 1, v(1, 1)), 0).unwrap();
        s.apply(claim("b", "10.244.0.0/24", 2, v(1, 1)), 0).unwrap();
        s.apply(claim("c", "10.244.0.32/27", 3, v(1, 1)), 0)
            .unwrap();
        s.apply(claim("d", "10.244.0.64/26", 4, v(1, 1)), 0)
            .unwrap();
        s.apply(claim("e", "fd00::/120", 5, v(1, 1)), 0).unwrap();
        let mut found = s.claims_overlapping(net("10.244.0.0/26"));
        found.sort();
        assert_eq!(
            found,
            vec![
                ("a".into(), net("10.244.0.0/26"), 1),
                ("b".into(), net("10.244.0.0/24"), 2),
                ("c".into(), net("10.244.0.32/27"), 3),
            ]
        );
        // Withdrawn: gone from the index.
        let mut gone = claim("a", "10.244.0.0/26", 1, v(1, 2));
        gone.value = Value::Deleted;
        s.apply(gone, 0).unwrap();
        let owners: Vec<String> = s
            .claims_overlapping(net("10.244.0.0/25"))
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(owners, ["c", "d", "b"]);
        assert_eq!(s.claims_overlapping(net("fd00::80/121")).len(), 1);
        assert!(s.claims_overlapping(net("10.245.0.0/26")).is_empty());
        // A claim key that is not its block's network is refused.
        assert_eq!(
            s.apply(claim("f", "10.244.9.5/26", 1, v(1, 1)), 0),
            Err(RecordError::BadBlock)
        );
    }

    #[test]
    fn tombstones_expire_and_digests_follow() {
        let mut s = State::default();
        s.apply(endpoint("a", "10.244.0.1", v(1, 1)), 0).unwrap();
        let mut gone = endpoint("a", "10.244.0.1", v(1, 2));
        gone.value = Value::Deleted;
        s.apply(gone, 1000).unwrap();
        s.apply(node("a", v(1, 3)), 1000).unwrap();
        let before = s.digests();
        assert_eq!(s.expire(1000 + s.rules().tombstone_ttl_ms), 0);
        assert_eq!(s.expire(1001 + s.rules().tombstone_ttl_ms), 1);
        assert_ne!(s.digests(), before);
        // The digest equals that of a state that never saw the endpoint.
        let mut fresh = State::default();
        fresh.apply(node("a", v(1, 3)), 0).unwrap();
        assert_eq!(s.digests(), fresh.digests());
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        let owner = prop::sample::select(vec!["a", "b", "c"]);
        let ver = (0u64..3, 0u64..4).prop_map(|(e, c)| v(e, c));
        (owner, ver, 0u8..4, 0u8..4, any::<bool>()).prop_map(|(o, ver, kind, n, deleted)| {
            let mut r = match kind {
                0 => node(o, ver),
                1 => claim(o, &format!("10.244.{n}.0/26"), u64::from(n), ver),
                _ => endpoint(o, &format!("10.244.{n}.{}", kind), ver),
            };
            if let Value::Endpoint { mac } = &mut r.value {
                mac[0] = n;
            }
            if deleted {
                r.value = Value::Deleted;
            }
            r
        })
    }

    fn snapshot(s: &State) -> Vec<Record> {
        s.owner_names()
            .flat_map(|o| s.records_of(o).map(|s| s.record).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn with_node_keys_only_owners_signed_records_change_the_state() {
        use crate::identity::{NodeKey, TrustedNodes};
        let (a, b) = (NodeKey::from_secret([1; 32]), NodeKey::from_secret([2; 32]));
        let file = format!("a {} 10.244.0.0/24\nb {}\n", a.public_hex(), b.public_hex());
        let mut s = State::new(Rules {
            trusted: Some(Arc::new(TrustedNodes::parse(&file).unwrap())),
            ..Rules::default()
        });
        let mine = a.sign(claim("a", "10.244.0.0/26", 100, v(1, 1)));
        assert_eq!(s.apply(mine.clone(), 0), Ok(true));
        // b writing a (backdated) claim in a's name; then the same with no
        // signature; then a claiming outside the range the file gives it.
        let forged = b.sign(claim("a", "10.244.0.64/26", 0, v(9, 9)));
        assert_eq!(s.apply(forged, 0), Err(RecordError::BadSignature));
        assert_eq!(
            s.apply(claim("a", "10.244.0.128/26", 0, v(9, 9)), 0),
            Err(RecordError::Unsigned)
        );
        let outside = a.sign(claim("a", "10.244.1.0/26", 0, v(1, 2)));
        assert_eq!(s.apply(outside, 0), Err(RecordError::NotAllowed));
        // Refusals leave no trace: no new owner, no changed digest.
        assert_eq!(s.size(), (1, 1));
        let digests = s.digests();
        let c = NodeKey::from_secret([3; 32]);
        assert_eq!(
            s.apply(c.sign(node("c", v(1, 1))), 0),
            Err(RecordError::UnknownOwner)
        );
        assert_eq!(s.digests(), digests);
        // Known records are not verified again (the stale check comes
        // first), and the signature is kept to be passed on.
        assert_eq!(s.apply(mine.clone(), 0), Ok(false));
        assert_eq!(s.records_of("a").collect::<Vec<_>>(), vec![mine]);

        // The operator reloads the file: b added and a's range narrowed.
        assert_eq!(s.apply(b.sign(node("b", v(1, 1))), 0), Ok(true));
        let file = format!(
            "a {} 10.244.0.128/25\nb {}\n",
            a.public_hex(),
            b.public_hex()
        );
        let before_reload = s.digests()[..].to_vec();
        let dropped = s.set_trusted(Some(Arc::new(TrustedNodes::parse(&file).unwrap())));
        assert_eq!(dropped, 1, "a's claim is outside its new range");
        assert_eq!(s.size(), (1, 1));
        assert_ne!(s.digests(), before_reload);
        // b is taken out of the file: its records go.
        let file = format!("a {} 10.244.0.0/24\n", a.public_hex());
        assert_eq!(
            s.set_trusted(Some(Arc::new(TrustedNodes::parse(&file).unwrap()))),
            1
        );
        assert_eq!(s.size(), (0, 0));
        // The digest of an emptied state is that of a fresh one.
        assert_eq!(s.digests(), State::default().digests());
    }

    #[test]
    fn merging_together_is_merging_one_after_another() {
        use crate::identity::{NodeKey, TrustedNodes};
        let (a, b) = (NodeKey::from_secret([1; 32]), NodeKey::from_secret([2; 32]));
        let file = format!("a {} 10.244.0.0/24\nb {}\n", a.public_hex(), b.public_hex());
        let rules = || Rules {
            trusted: Some(Arc::new(TrustedNodes::parse(&file).unwrap())),
            ..Rules::default()
        };
        let batch = vec![
            a.sign(node("a", v(1, 1))),
            a.sign(claim("a", "10.244.0.0/26", 100, v(1, 3))),
            // An older version of the same key later in the batch: stale.
            a.sign(claim("a", "10.244.0.0/26", 100, v(1, 2))),
            b.sign(claim("a", "10.244.0.64/26", 0, v(1, 4))), // forged
            a.sign(claim("a", "10.244.1.0/26", 0, v(1, 5))),  // outside a's range
            claim("b", "10.9.0.0/26", 0, v(1, 1)).into(),     // unsigned
            b.sign(node("b", v(1, 1))),
            // A newer version of a key already in the batch: it wins.
            b.sign(node("b", v(1, 2))),
            a.sign(claim("a", "10.0.0.0/8", 0, v(1, 6))), // not admitted (too large)
        ];
        let mut one_by_one = State::new(rules());
        let alone: Vec<_> = batch
            .iter()
            .map(|s| one_by_one.apply(s.clone(), 0))
            .collect();
        let mut together = State::new(rules());
        assert_eq!(together.apply_all(batch.clone(), 0), alone);
        assert_eq!(
            alone,
            vec![
                Ok(true),
                Ok(true),
                Ok(false),
                Err(RecordError::BadSignature),
                Err(RecordError::NotAllowed),
                Err(RecordError::Unsigned),
                Ok(true),
                Ok(true),
                Err(RecordError::BadBlock),
            ]
        );
        assert_eq!(snapshot(&together), snapshot(&one_by_one));
        assert_eq!(together.digests(), one_by_one.digests());
        // Again: everything is known, nothing changes, nothing is verified.
        let again = together.apply_all(batch, 0);
        assert_eq!(again.iter().filter(|r| r == &&Ok(true)).count(), 0);
    }

    proptest! {
        /// Merge is order-independent (commutative + associative) and
        /// idempotent: any permutation, with duplicates, gives the same
        /// state and the same digests.
        #[test]
        fn merge_is_order_independent_and_idempotent(
            records in prop::collection::vec(arb_record(), 0..40),
            seed in any::<u64>(),
        ) {
            let mut a = State::default();
            for r in &records {
                a.apply(r.clone(), 0).unwrap();
            }
            let mut shuffled = records.clone();
            // A deterministic shuffle from the seed, plus every record twice.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            shuffled.extend(records.iter().cloned());
            let mut b = State::default();
            for r in shuffled {
                b.apply(r, 0).unwrap();
            }
            prop_assert_eq!(snapshot(&a), snapshot(&b));
            prop_assert_eq!(a.digests(), b.digests());
            prop_assert_eq!(a.view(|_| Some(0), |_| true), b.view(|_| Some(0), |_| true));
        }

        /// Merging two states either way gives the same state (what
        /// anti-entropy relies on).
        #[test]
        fn merging_states_commutes(
            left in prop::collection::vec(arb_record(), 0..20),
            right in prop::collection::vec(arb_record(), 0..20),
        ) {
            let build = |rs: &[Record]| {
                let mut s = State::default();
                for r in rs { s.apply(r.clone(), 0).unwrap(); }
                s
            };
            let (l, r) = (build(&left), build(&right));
            let mut lr = l.clone();
            for rec in snapshot(&r) { lr.apply(rec, 0).unwrap(); }
            let mut rl = r.clone();
            for rec in snapshot(&l) { rl.apply(rec, 0).unwrap(); }
            prop_assert_eq!(snapshot(&lr), snapshot(&rl));
            prop_assert_eq!(lr.digests(), rl.digests());
        }
    }

    #[test]
    fn the_view_names_the_live_nodes_with_members_of_each_group() {
        let mut st = State::new(Rules::default());
        for n in ["a", "b", "c"] {
            st.apply(node(n, v(1, 1)), 0).unwrap();
        }
        let group = |owner: &str, g: &str, pods: u32, c: u64| Record {
            key: Key::Group {
                owner: owner.into(),
                group: g.parse().unwrap(),
            },
            version: v(1, c),
            value: if pods == 0 {
                Value::Deleted
            } else {
                Value::Members { pods }
            },
        };
        st.apply(group("a", "239.1.1.1", 2, 2), 0).unwrap();
        st.apply(group("b", "239.1.1.1", 1, 2), 0).unwrap();
        st.apply(group("c", "ff05::1", 1, 2), 0).unwrap();
        let view = st.view(|o| (o != "c").then_some(0), |_| true);
        let g: IpAddr = "239.1.1.1".parse().unwrap();
        assert_eq!(
            view.groups[&g]
                .iter()
                .map(|(n, p)| (n.as_str(), *p))
                .collect::<Vec<_>>(),
            [("a", 2), ("b", 1)]
        );
        // c is not live: its group is not carried.
        assert_eq!(view.groups.len(), 1);
        // b leaves.
        st.apply(group("b", "239.1.1.1", 0, 3), 0).unwrap();
        let view = st.view(|_| Some(0), |_| true);
        assert_eq!(view.groups[&g].len(), 1);
        assert_eq!(view.groups.len(), 2);
        // a is seen up again in a later start (SWIM) before its new node
        // record arrives: its group from the earlier start no longer counts.
        let view = st.view(|o| Some(if o == "a" { 2 } else { 0 }), |_| true);
        assert!(!view.groups.contains_key(&g), "{:?}", view.groups);
        // Nor once its node record of that start has arrived, until it
        // publishes the group again.
        st.apply(node("a", v(2, 1)), 0).unwrap();
        let view = st.view(|_| Some(0), |_| true);
        assert!(!view.groups.contains_key(&g), "{:?}", view.groups);
        let again = Record {
            version: v(2, 2),
            ..group("a", "239.1.1.1", 2, 0)
        };
        st.apply(again, 0).unwrap();
        let view = st.view(|_| Some(0), |_| true);
        assert_eq!(view.groups[&g].len(), 1);
    }
}
