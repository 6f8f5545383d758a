//! A copy-on-write hash map cut into shards, so that an immutable snapshot
//! can be updated by copying one shard instead of the whole table.
//!
//! Why by hand: the data path reads snapshots without any lock or reference
//! count write (see `Fdb`), so every published version must be immutable.
//! Persistent maps (imbl's HAMT) give that, but a lookup walks several nodes
//! (tens of ns); a flat `[Arc<HashMap>; 256]` gives one hash, one pointer and
//! one probe per lookup, and an update copies ~1/256 of the entries. No crate
//! packages exactly this two-level layout.

use rustc_hash::FxHasher;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// Number of shards (a power of two).
pub const SHARDS: usize = 256;

type Shard<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A sharded, copy-on-write hash map. Cloning is O(1); the first write to a
/// shard after a clone copies that shard (and the 256-pointer shard array).
#[derive(Debug)]
pub struct ShardedMap<K, V> {
    shards: Arc<Vec<Arc<Shard<K, V>>>>,
    len: usize,
}

impl<K, V> Clone for ShardedMap<K, V> {
    fn clone(&self) -> Self {
        ShardedMap {
            shards: Arc::clone(&self.shards),
            len: self.len,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn shard_index<K: Hash>(key: &K) -> usize {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    // Fx mixes into the high bits; take the shard from the top.
    (h.finish() >> 56) as usize & (SHARDS - 1)
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        ShardedMap {
            shards: Arc::new((0..SHARDS).map(|_| Arc::new(Shard::default())).collect()),
            len: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value for `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[shard_index(key)].get(key)
    }

    fn shard_mut(&mut self, key: &K) -> &mut Shard<K, V> {
        let i = shard_index(key);
        Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[i])
    }

    /// Inserts, returning the previous value.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.shard_mut(&key).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes, returning the previous value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = shard_index(key);
        if !self.shards[i].contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Heap bytes used, approximately (buckets and shard overhead; not what
    /// the values point to).
    pub fn approx_heap_bytes(&self) -> usize {
        let per = core::mem::size_of::<(K, V)>() + 1;
        self.shards
            .iter()
            .map(|s| s.capacity() * per + 64)
            .sum::<usize>()
            + SHARDS * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_is_a_snapshot() {
        let mut a: ShardedMap<u32, u32> = ShardedMap::new();
        for i in 0..1000 {
            a.insert(i, i);
        }
        let snap = a.clone();
        a.insert(5, 50);
        a.remove(&6);
        a.insert(2000, 1);
        assert_eq!(snap.get(&5), Some(&5));
        assert_eq!(snap.get(&6), Some(&6));
        assert_eq!(snap.get(&2000), None);
        assert_eq!(snap.len(), 1000);
        assert_eq!(a.get(&5), Some(&50));
        assert_eq!(a.get(&6), None);
        assert_eq!(a.len(), 1000);
        assert_eq!(a.iter().count(), 1000);
        assert_eq!(a.remove(&6), None);
        assert!(a.approx_heap_bytes() > 1000 * 8);
    }
}
