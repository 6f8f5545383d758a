//! The writer side: transactions that validate, apply and publish a new
//! snapshot atomically, expiry of learned entries, and subscriptions.
//!
//! Readers never take a lock: they load the published `Arc<Snapshot>`
//! through an `arc_swap::Cache` (one atomic load when nothing changed).
//! Writers serialise on a mutex that readers never touch; a commit copies
//! only the shards it changed and swaps one pointer.

use crate::change::{Change, SubscriberTx, Subscription, What};
use crate::error::{Error, Result};
use crate::sharded::ShardedMap;
use crate::snapshot::Snapshot;
use crate::types::{BlockOwner, Endpoint, Entry, Mac, Meta, NodeId, NodeRecord, Source};
use arc_swap::{ArcSwap, Cache};
use core::net::IpAddr;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

/// Capacity of each table; an insert past it fails with [`Error::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Blocks (both families).
    pub blocks: usize,
    /// Node records.
    pub nodes: usize,
    /// Endpoints.
    pub endpoints: usize,
    /// Neighbour answers.
    pub neighbours: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            blocks: 1 << 20,
            nodes: 1 << 16,
            endpoints: 1 << 20,
            neighbours: 1 << 20,
        }
    }
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new entry.
    Inserted,
    /// An existing entry was replaced.
    Replaced,
    /// The same entry was already there (a learned entry's expiry may have
    /// been extended).
    Unchanged,
    /// The update lost to the entry present (lower source or version).
    Stale,
    /// The entry was removed.
    Removed,
    /// There was nothing to remove.
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expiring {
    Endpoint(IpAddr),
    Neighbour(IpAddr),
}

struct Writer {
    current: Snapshot,
    subscribers: Vec<SubscriberTx>,
    expiry: BTreeSet<(u64, Expiring)>,
    limits: Limits,
}

struct Shared {
    published: Arc<ArcSwap<Snapshot>>,
    writer: Mutex<Writer>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave a half-applied
        // snapshot (work happens on a copy), so a poisoned lock is usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The forwarding tables: one writer side, any number of lock-free readers.
#[derive(Clone)]
pub struct Fdb {
    shared: Arc<Shared>,
}

/// A data-path thread's handle: `load()` costs one atomic load when nothing
/// changed since the last call.
pub struct Reader {
    cache: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
}

impl Reader {
    /// The newest published snapshot.
    #[inline]
    pub fn load(&mut self) -> &Arc<Snapshot> {
        self.cache.load()
    }
}

impl Fdb {
    /// Tables for node `local`, holding its own record.
    pub fn new(local: NodeId, record: NodeRecord) -> Self {
        Self::with_limits(local, record, Limits::default())
    }

    /// As [`Fdb::new`], with table capacities.
    pub fn with_limits(local: NodeId, record: NodeRecord, limits: Limits) -> Self {
        let mut snap = Snapshot::empty(local.clone());
        for a in underlay_addrs(&record) {
            snap.hosts.insert(a, local.clone());
        }
        snap.nodes.insert(
            local,
            Entry {
                value: record,
                meta: Meta::new(Source::Static, 0),
            },
        );
        Fdb {
            shared: Arc::new(Shared {
                published: Arc::new(ArcSwap::from_pointee(snap.clone())),
                writer: Mutex::new(Writer {
                    current: snap,
                    subscribers: Vec::new(),
                    expiry: BTreeSet::new(),
                    limits,
                }),
            }),
        }
    }

    /// A reader for one data-path thread.
    pub fn reader(&self) -> Reader {
        Reader {
            cache: Cache::new(Arc::clone(&self.shared.published)),
        }
    }

    /// The newest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.published.load_full()
    }

    /// Runs `f` on a working copy of the tables; if it returns Ok, publishes
    /// the result as one new snapshot and notifies subscribers of each
    /// change; if it returns Err, nothing changes.
    pub fn update<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let mut w = self.shared.lock();
        let limits = w.limits;
        let mut txn = Txn {
            work: w.current.clone(),
            changes: Vec::new(),
            expiring: Vec::new(),
            limits: &limits,
        };
        let out = f(&mut txn)?;
        let Txn {
            mut work,
            changes,
            expiring,
            ..
        } = txn;
        if changes.is_empty() && expiring.is_empty() {
            return Ok(out);
        }
        let first = w.current.seq + 1;
        work.seq = w.current.seq + changes.len() as u64;
        w.expiry.extend(expiring);
        w.current = work.clone();
        self.shared.published.store(Arc::new(work));
        let changes: Vec<Change> = changes
            .into_iter()
            .enumerate()
            .map(|(i, what)| Change {
                seq: first + i as u64,
                what,
            })
            .collect();
        w.subscribers.retain(|s| changes.iter().all(|c| s.offer(c)));
        Ok(out)
    }

    /// Removes learned entries whose expiry is at or before `now_ms`.
    /// Returns how many were removed.
    pub fn expire(&self, now_ms: u64) -> usize {
        let due: Vec<(u64, Expiring)> = {
            let mut w = self.shared.lock();
            let later = w.expiry.split_off(&(
                now_ms.saturating_add(1),
                Expiring::Endpoint(IpAddr::from([0u8; 4])),
            ));
            let due = std::mem::replace(&mut w.expiry, later);
            due.into_iter().collect()
        };
        if due.is_empty() {
            return 0;
        }
        self.update(|t| {
            let mut n = 0;
            for (at, what) in due {
                let still_due =
                    |m: &Meta| m.source == Source::Learned && m.expires_at_ms == Some(at);
                match what {
                    Expiring::Endpoint(ip) => {
                        if t.work
                            .endpoints
                            .get(&ip)
                            .is_some_and(|e| still_due(&e.meta))
                        {
                            t.work.endpoints.remove(&ip);
                            t.changes.push(What::Endpoint { ip, endpoint: None });
                            n += 1;
                        }
                    }
                    Expiring::Neighbour(ip) => {
                        if t.work
                            .neighbours
                            .get(&ip)
                            .is_some_and(|e| still_due(&e.meta))
                        {
                            t.work.neighbours.remove(&ip);
                            t.changes.push(What::Neighbour { ip, mac: None });
                            n += 1;
                        }
                    }
                }
            }
            Ok(n)
        })
        .unwrap_or(0)
    }

    /// Subscribes to changes. The subscription starts from the current
    /// snapshot; up to `queue` changes wait for it before it must resync.
    pub fn subscribe(&self, queue: usize) -> Subscription {
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut w = self.shared.lock();
        let start = Arc::new(w.current.clone());
        w.subscribers.push(SubscriberTx {
            tx,
            lagged: Arc::clone(&lagged),
        });
        drop(w);
        let shared = Arc::clone(&self.shared);
        Subscription {
            start,
            rx,
            lagged,
            resync: Arc::new(move |rx| {
                // Under the writer lock no change is in flight: drain what was
                // queued and take the state that includes all of it.
                let w = shared.lock();
                while rx.try_recv().is_ok() {}
                Arc::new(w.current.clone())
            }),
        }
    }
}

/// A transaction: reads see its own writes; nothing is visible to readers
/// until it commits.
pub struct Txn<'a> {
    work: Snapshot,
    changes: Vec<What>,
    expiring: Vec<(u64, Expiring)>,
    limits: &'a Limits,
}

fn check_prefix(prefix: IpNet) -> Result<()> {
    if prefix.trunc() != prefix {
        return Err(Error::HostBitsSet { prefix });
    }
    Ok(())
}

/// The common upsert rule: insert, replace if the new entry beats the old,
/// extend a learned entry's expiry when the entry is otherwise the same.
fn decide<V: Ord + Clone>(old: Option<&Entry<V>>, new: &Entry<V>) -> Outcome {
    match old {
        None => Outcome::Inserted,
        Some(old) if new.beats(old) => Outcome::Replaced,
        Some(old)
            if old.value == new.value
                && old.meta.source == new.meta.source
                && old.meta.version == new.meta.version =>
        {
            Outcome::Unchanged
        }
        Some(_) => Outcome::Stale,
    }
}

/// A removal wins over an entry from the same or a lower source with the
/// same or a lower version.
fn may_remove(old: &Meta, by: &Meta) -> bool {
    (old.source, old.version) <= (by.source, by.version)
}

impl Txn<'_> {
    /// The tables as this transaction sees them.
    pub fn view(&self) -> &Snapshot {
        &self.work
    }

    /// Inserts or replaces a node record.
    pub fn upsert_node(&mut self, id: NodeId, record: NodeRecord, meta: Meta) -> Result<Outcome> {
        let new = Entry {
            value: record,
            meta,
        };
        let outcome = decide(self.work.nodes.get(&id), &new);
        match outcome {
            Outcome::Inserted if self.work.nodes.len() >= self.limits.nodes => {
                return Err(Error::Full {
                    table: "node",
                    limit: self.limits.nodes,
                })
            }
            Outcome::Inserted | Outcome::Replaced => {
                if let Some(old) = self.work.nodes.get(&id) {
                    let old = old.value.clone();
                    self.forget_hosts(&id, &old);
                }
                for a in underlay_addrs(&new.value) {
                    self.work.hosts.insert(a, id.clone());
                }
                self.work.nodes.insert(id.clone(), new.clone());
                self.changes.push(What::Node {
                    id,
                    record: Some(new),
                });
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Removes a node record with every block and endpoint it owns (a node
    /// that left takes its routes with it).
    pub fn remove_node(&mut self, id: &NodeId) -> Result<Outcome> {
        if *id == self.work.local {
            return Err(Error::LocalNode);
        }
        let Some(old) = self.work.nodes.remove(id) else {
            return Ok(Outcome::Absent);
        };
        self.forget_hosts(id, &old.value);
        let blocks: Vec<IpNet> = self
            .work
            .blocks()
            .filter(|(_, e)| e.value.node == *id)
            .map(|(p, _)| p)
            .collect();
        for prefix in blocks {
            self.remove_block_unchecked(prefix);
        }
        let eps: Vec<IpAddr> = self
            .work
            .endpoints()
            .filter(|(_, e)| e.value.node == *id)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in eps {
            self.work.endpoints.remove(&ip);
            self.changes.push(What::Endpoint { ip, endpoint: None });
        }
        self.changes.push(What::Node {
            id: id.clone(),
            record: None,
        });
        Ok(Outcome::Removed)
    }

    /// Drops `record`'s addresses from the host index where they still
    /// name `id` (another node may have taken an address over).
    fn forget_hosts(&mut self, id: &NodeId, record: &NodeRecord) {
        for a in underlay_addrs(record) {
            if self.work.hosts.get(&a) == Some(id) {
                self.work.hosts.remove(&a);
            }
        }
    }

    fn require_node(&self, node: &NodeId) -> Result<()> {
        if self.work.nodes.get(node).is_none() {
            return Err(Error::UnknownNode { node: node.clone() });
        }
        Ok(())
    }

    /// Sets the owner of a block. The prefix must have no host bits; the
    /// node must be known.
    pub fn upsert_block(&mut self, prefix: IpNet, node: NodeId, meta: Meta) -> Result<Outcome> {
        check_prefix(prefix)?;
        self.require_node(&node)?;
        let new = Entry {
            value: BlockOwner { node },
            meta,
        };
        let outcome = decide(self.work.block(prefix), &new);
        match outcome {
            Outcome::Inserted if self.work.counts().blocks >= self.limits.blocks => {
                return Err(Error::Full {
                    table: "block",
                    limit: self.limits.blocks,
                })
            }
            Outcome::Inserted | Outcome::Replaced => {
                match prefix {
                    IpNet::V4(n) => {
                        self.work.blocks_v4.insert(
                            u32::from(n.network()),
                            n.prefix_len(),
                            new.clone(),
                        );
                    }
                    IpNet::V6(n) => {
                        self.work.blocks_v6.insert(
                            u128::from(n.network()),
                            n.prefix_len(),
                            new.clone(),
                        );
                    }
                }
                self.changes.push(What::Block {
                    prefix,
                    owner: Some(new),
                });
            }
            _ => {}
        }
        Ok(outcome)
    }

    fn remove_block_unchecked(&mut self, prefix: IpNet) {
        match prefix {
            IpNet::V4(n) => self
                .work
                .blocks_v4
                .remove(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self
                .work
                .blocks_v6
                .remove(u128::from(n.network()), n.prefix_len()),
        };
        self.changes.push(What::Block {
            prefix,
            owner: None,
        });
    }

    /// Removes a block, if `by` may (see [`Outcome::Stale`]).
    pub fn remove_block(&mut self, prefix: IpNet, by: Meta) -> Result<Outcome> {
        check_prefix(prefix)?;
        match self.work.block(prefix) {
            None => Ok(Outcome::Absent),
            Some(e) if !may_remove(&e.meta, &by) => Ok(Outcome::Stale),
            Some(_) => {
                self.remove_block_unchecked(prefix);
                Ok(Outcome::Removed)
            }
        }
    }

    /// Inserts or replaces an endpoint; its node must be known.
    pub fn upsert_endpoint(
        &mut self,
        ip: IpAddr,
        endpoint: Endpoint,
        meta: Meta,
    ) -> Result<Outcome> {
        self.require_node(&endpoint.node)?;
        let table = IpTable {
            name: "endpoint",
            limit: self.limits.endpoints,
            what: |ip, endpoint| What::Endpoint { ip, endpoint },
            expiring: Expiring::Endpoint,
        };
        table.upsert(
            &mut self.work.endpoints,
            &mut self.changes,
            &mut self.expiring,
            ip,
            Entry {
                value: endpoint,
                meta,
            },
        )
    }

    /// Removes an endpoint, if `by` may.
    pub fn remove_endpoint(&mut self, ip: IpAddr, by: Meta) -> Result<Outcome> {
        Ok(remove_ip_entry(
            &mut self.work.endpoints,
            &mut self.changes,
            ip,
            by,
            |ip| What::Endpoint { ip, endpoint: None },
        ))
    }

    /// Inserts or replaces the MAC that answers ARP/ND for `ip`.
    pub fn upsert_neighbour(&mut self, ip: IpAddr, mac: Mac, meta: Meta) -> Result<Outcome> {
        let table = IpTable {
            name: "neighbour",
            limit: self.limits.neighbours,
            what: |ip, mac| What::Neighbour { ip, mac },
            expiring: Expiring::Neighbour,
        };
        table.upsert(
            &mut self.work.neighbours,
            &mut self.changes,
            &mut self.expiring,
            ip,
            Entry { value: mac, meta },
        )
    }

    /// Removes a neighbour answer, if `by` may.
    pub fn remove_neighbour(&mut self, ip: IpAddr, by: Meta) -> Result<Outcome> {
        Ok(remove_ip_entry(
            &mut self.work.neighbours,
            &mut self.changes,
            ip,
            by,
            |ip| What::Neighbour { ip, mac: None },
        ))
    }
}

/// What differs between the IP-keyed tables (endpoints, neighbours).
struct IpTable<V> {
    name: &'static str,
    limit: usize,
    what: fn(IpAddr, Option<Entry<V>>) -> What,
    expiring: fn(IpAddr) -> Expiring,
}

impl<V: Ord + Clone> IpTable<V> {
    /// Insert or replace by the common rule; a learned entry that is the same
    /// but for a later expiry is refreshed without a change event.
    fn upsert(
        &self,
        map: &mut ShardedMap<IpAddr, Entry<V>>,
        changes: &mut Vec<What>,
        expiring: &mut Vec<(u64, Expiring)>,
        ip: IpAddr,
        new: Entry<V>,
    ) -> Result<Outcome> {
        let old = map.get(&ip);
        let outcome = decide(old, &new);
        let meta = new.meta;
        match outcome {
            Outcome::Inserted if map.len() >= self.limit => {
                return Err(Error::Full {
                    table: self.name,
                    limit: self.limit,
                })
            }
            Outcome::Inserted | Outcome::Replaced => {
                map.insert(ip, new.clone());
                changes.push((self.what)(ip, Some(new)));
            }
            Outcome::Unchanged if meta.expires_at_ms > old.and_then(|e| e.meta.expires_at_ms) => {
                map.insert(ip, new);
            }
            _ => return Ok(outcome),
        }
        if let Some(at) = meta
            .expires_at_ms
            .filter(|_| meta.source == Source::Learned)
        {
            expiring.push((at, (self.expiring)(ip)));
        }
        Ok(outcome)
    }
}

/// Removal from an IP-keyed table, if `by` may.
fn remove_ip_entry<V: Clone>(
    map: &mut ShardedMap<IpAddr, Entry<V>>,
    changes: &mut Vec<What>,
    ip: IpAddr,
    by: Meta,
    removed: fn(IpAddr) -> What,
) -> Outcome {
    match map.get(&ip) {
        None => Outcome::Absent,
        Some(e) if !may_remove(&e.meta, &by) => Outcome::Stale,
        Some(_) => {
            map.remove(&ip);
            changes.push(removed(ip));
            Outcome::Removed
        }
    }
}

/// A node record's underlay addresses.
fn underlay_addrs(r: &NodeRecord) -> impl Iterator<Item = IpAddr> {
    r.underlay_v4
        .map(IpAddr::V4)
        .into_iter()
        .chain(r.underlay_v6.map(IpAddr::V6))
}
