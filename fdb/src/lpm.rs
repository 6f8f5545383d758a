//! Longest-prefix match for one address family.
//!
//! Pod blocks come in very few prefix lengths (a /26 or /122 per node, maybe
//! a few static routes), so the table is a hash map per (prefix, length) and
//! a bitmap of the lengths present: a lookup probes the present lengths from
//! the longest down and stops at the first hit. With one block size that is
//! one hash probe, whatever the number of blocks.

use crate::sharded::ShardedMap;
use std::hash::Hash;
use std::sync::Arc;

/// An address as an unsigned integer (IPv4: u32, IPv6: u128).
pub trait Addr: Copy + Eq + Hash + core::fmt::Debug {
    /// Bits in the address.
    const BITS: u8;
    /// The address with the bits past `len` cleared.
    fn masked(self, len: u8) -> Self;
}

impl Addr for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len.min(32))))
        }
    }
}

impl Addr for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len.min(128))))
        }
    }
}

/// A longest-prefix-match table from prefixes of `A` to `V`. Clone is O(1)
/// and gives an immutable snapshot (see `ShardedMap`).
#[derive(Debug)]
pub struct Lpm<A, V> {
    map: ShardedMap<(A, u8), V>,
    /// Bit `len` set when some prefix of that length is present.
    lengths: [u64; 3],
    /// Prefixes per length (writers only).
    counts: Arc<Vec<u32>>,
}

impl<A, V> Clone for Lpm<A, V> {
    fn clone(&self) -> Self {
        Lpm {
            map: self.map.clone(),
            lengths: self.lengths,
            counts: Arc::clone(&self.counts),
        }
    }
}

impl<A: Addr, V: Clone> Default for Lpm<A, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Addr, V: Clone> Lpm<A, V> {
    /// An empty table.
    pub fn new() -> Self {
        Lpm {
            map: ShardedMap::new(),
            lengths: [0; 3],
            counts: Arc::new(vec![0; 129]),
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The longest prefix containing `addr`: its length and value.
    #[inline]
    pub fn lookup(&self, addr: A) -> Option<(A, u8, &V)> {
        for w in (0..3).rev() {
            let mut bits = self.lengths[w];
            while bits != 0 {
                let top = 63 - bits.leading_zeros() as u8;
                bits &= !(1u64 << top);
                let len = w as u8 * 64 + top;
                let net = addr.masked(len);
                if let Some(v) = self.map.get(&(net, len)) {
                    return Some((net, len, v));
                }
            }
        }
        None
    }

    /// The value stored for exactly this prefix.
    pub fn get(&self, net: A, len: u8) -> Option<&V> {
        self.map.get(&(net, len))
    }

    /// Inserts `net/len` (the caller ensures no host bits and len <= BITS).
    pub fn insert(&mut self, net: A, len: u8, value: V) -> Option<V> {
        debug_assert!(len <= A::BITS && net.masked(len) == net);
        let old = self.map.insert((net, len), value);
        if old.is_none() {
            Arc::make_mut(&mut self.counts)[usize::from(len)] += 1;
            self.lengths[usize::from(len / 64)] |= 1 << (len % 64);
        }
        old
    }

    /// Removes exactly `net/len`.
    pub fn remove(&mut self, net: A, len: u8) -> Option<V> {
        let old = self.map.remove(&(net, len));
        if old.is_some() {
            let counts = Arc::make_mut(&mut self.counts);
            counts[usize::from(len)] -= 1;
            if counts[usize::from(len)] == 0 {
                self.lengths[usize::from(len / 64)] &= !(1 << (len % 64));
            }
        }
        old
    }

    /// All prefixes, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (A, u8, &V)> {
        self.map.iter().map(|((a, l), v)| (*a, *l, v))
    }

    /// Approximate heap bytes.
    pub fn approx_heap_bytes(&self) -> usize {
        self.map.approx_heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_wins_and_lengths_track_removals() {
        let mut t: Lpm<u32, &str> = Lpm::new();
        t.insert(0x0a00_0000, 8, "ten");
        t.insert(0x0af4_0000, 16, "pool");
        t.insert(0x0af4_0140, 26, "block");
        t.insert(0, 0, "default");
        assert_eq!(t.lookup(0x0af4_0141).map(|x| *x.2), Some("block"));
        assert_eq!(t.lookup(0x0af4_0181).map(|x| *x.2), Some("pool"));
        assert_eq!(t.lookup(0x0a01_0101).map(|x| *x.2), Some("ten"));
        assert_eq!(
            t.lookup(0x0b00_0001).map(|x| (x.1, *x.2)),
            Some((0, "default"))
        );
        assert_eq!(t.remove(0x0af4_0140, 26), Some("block"));
        assert_eq!(t.remove(0x0af4_0140, 26), None);
        assert_eq!(t.lookup(0x0af4_0141).map(|x| *x.2), Some("pool"));
        assert_eq!(t.lengths[0] & (1 << 26), 0);
        let mut v6: Lpm<u128, u8> = Lpm::new();
        v6.insert(u128::MAX, 128, 1);
        v6.insert(u128::MAX.masked(64), 64, 2);
        assert_eq!(v6.lookup(u128::MAX).map(|x| *x.2), Some(1));
        assert_eq!(v6.lookup(u128::MAX - 1).map(|x| *x.2), Some(2));
        assert_eq!(v6.len(), 2);
    }
}
