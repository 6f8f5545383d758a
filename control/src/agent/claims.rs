//! Block claims of one node: the automatic blocks it takes from the pools,
//! one per pool at start and more on demand, and their release.
//!
//! Each claim lives in a slot. The first `auto_blocks.len()` slots are the
//! node's base blocks (one per pool, claimed at start and never released);
//! slots after them are claimed on demand ([`Agent::claim_another`]) when
//! the node's pods fill its blocks, and given back when empty
//! ([`Agent::release_block`]). A slot's claim is written, stays pending
//! for `claim_settle_ms` (an earlier claim of the same block seen
//! meanwhile wins and the slot picks another), and is then held: pods may
//! use it. A held block that an earlier claim later shows up for is lost.
//!
//! A claim settles only after two anti-entropy exchanges begun after it
//! were answered (unless the node knows no other): what the peers know,
//! such as a conflicting claim from nodes starting at the same moment or
//! from across a partition that just healed, has had its chance to arrive.
//! On-demand claims also need a quorum, at the claim and again when it
//! settles: the node sees more than half of the nodes it knows (itself
//! included, the dead still within their grace) as up, and more than half
//! of its last 16 reachability probes (one a second to a random known
//! node, up or not, each tried three times) were answered. A partition's
//! minority side fails the second test within seconds, long before SWIM
//! declares the other side down (minutes, for some nodes of a large
//! cluster); it waits for the heal, and the majority
//! side's settle time resolves races within it. This narrows, but cannot
//! close, the window in which both sides of a fresh partition claim the
//! same block: gossip is not consensus. Should it happen, the earlier
//! claim wins and the other node gets [`Event::BlockLost`].

use super::{Agent, AutoBlock, Event};
use crate::record::{Key, Value};
use crate::state::fnv;
use ipnet::IpNet;
use rand::Rng;
use std::net::IpAddr;
use std::net::SocketAddr;

/// The state of one claim slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Claim {
    /// Looking for a free block.
    Idle,
    /// Claimed, waiting to settle. `fresh`: claimed by this start (an
    /// adopted block from before a restart may replace it).
    Pending {
        block: IpNet,
        since: u64,
        fresh: bool,
    },
    /// Settled: pods may use it.
    Held { block: IpNet },
}

/// One claim slot: which automatic pool it takes from, and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) auto: usize,
    pub(super) claim: Claim,
}

/// Why a node cannot claim another block now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoBlock {
    /// No pool of that family is configured for automatic blocks (blocks
    /// are configured statically, or the family is not used).
    NoPool,
    /// Every block of the pools of that family is claimed.
    Exhausted,
    /// This node sees too few members up to claim safely (a partition's
    /// minority side); it may claim once it sees a majority again.
    NoQuorum,
}

impl std::fmt::Display for NoBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoBlock::NoPool => "no pool of that family to claim blocks from",
            NoBlock::Exhausted => "every block of the pool is claimed",
            NoBlock::NoQuorum => {
                "this node sees fewer than half of the cluster's nodes up; it claims no new block until it does"
            }
        })
    }
}

/// What [`Agent::claim_another`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claiming {
    /// A claim of that family was already under way.
    AlreadyUnderWay,
    /// A new claim was started.
    Started,
}

impl Agent {
    /// The base slots: one per automatic pool, idle.
    pub(super) fn base_slots(n: usize) -> Vec<Slot> {
        (0..n)
            .map(|auto| Slot {
                auto,
                claim: Claim::Idle,
            })
            .collect()
    }

    /// Takes back a block this node claimed before a restart (learned from
    /// the cluster or from its own blocks file), with its original claim
    /// time: into an idle slot of its pool, or in place of a fresh pending
    /// claim there, or into a new slot. Its pods keep their addresses.
    /// False if the block is no automatic block of this node's pools, or
    /// held already.
    pub(super) fn adopt(&mut self, block: IpNet, claimed_at: u64, now: u64) -> bool {
        let Some(auto) = self
            .cfg
            .auto_blocks
            .iter()
            .position(|a| a.pool.contains(&block) && block.prefix_len() == a.len)
        else {
            return false;
        };
        let same = |c: &Claim| match c {
            Claim::Held { block: b } => *b == block,
            Claim::Pending { block: b, .. } => *b == block,
            Claim::Idle => false,
        };
        let slot = match self.claims.iter().position(|s| same(&s.claim)) {
            Some(i) if matches!(self.claims[i].claim, Claim::Held { .. }) => return false,
            Some(i) => i,
            None => {
                let of_pool =
                    |s: &Slot, want: &dyn Fn(&Claim) -> bool| s.auto == auto && want(&s.claim);
                let idle = self
                    .claims
                    .iter()
                    .position(|s| of_pool(s, &|c| *c == Claim::Idle));
                let fresh = self
                    .claims
                    .iter()
                    .position(|s| of_pool(s, &|c| matches!(c, Claim::Pending { fresh: true, .. })));
                match idle.or(fresh) {
                    Some(i) => {
                        if let Claim::Pending { block: other, .. } = self.claims[i].claim {
                            self.release(other, now);
                        }
                        i
                    }
                    None => {
                        self.claims.push(Slot {
                            auto,
                            claim: Claim::Idle,
                        });
                        self.claims.len() - 1
                    }
                }
            }
        };
        let key = Key::Claim {
            owner: self.cfg.name.clone(),
            block,
        };
        self.write(key, Value::Claim { claimed_at }, now);
        self.claims[slot].claim = Claim::Pending {
            block,
            since: now,
            fresh: false,
        };
        true
    }

    /// Starts claiming one more block of the family of `v4` (IPv4 if true)
    /// because this node's blocks of that family are full. The claim
    /// settles like any other (watch for [`Event::BlockClaimed`]). At most
    /// one on-demand claim per family is under way at a time.
    pub fn claim_another(&mut self, v4: bool, now_ms: u64) -> Result<Claiming, NoBlock> {
        let autos: Vec<usize> = (0..self.cfg.auto_blocks.len())
            .filter(|&i| self.cfg.auto_blocks[i].pool.addr().is_ipv4() == v4)
            .collect();
        if autos.is_empty() {
            return Err(NoBlock::NoPool);
        }
        let under_way = self
            .claims
            .iter()
            .any(|s| autos.contains(&s.auto) && !matches!(s.claim, Claim::Held { .. }));
        self.expect_claims(now_ms);
        if under_way {
            return Ok(Claiming::AlreadyUnderWay);
        }
        // Refused only when the probes say so; with too few answers yet
        // the claim waits in its slot for the quorum to show.
        let (_, resolved) = self.reachability();
        if resolved >= 8 && !self.has_quorum(now_ms) {
            return Err(NoBlock::NoQuorum);
        }
        let auto = autos
            .into_iter()
            .find(|&i| {
                let a = self.cfg.auto_blocks[i].clone();
                self.free_block(&a, now_ms).is_some()
            })
            .ok_or(NoBlock::Exhausted)?;
        self.claims.push(Slot {
            auto,
            claim: Claim::Idle,
        });
        self.run_claims(now_ms);
        self.flush();
        Ok(Claiming::Started)
    }

    /// Gives back a held block this node claimed automatically (its pods
    /// are gone; the caller made sure nothing allocates from it any more).
    /// The last block of a pool is kept: false then, and for a block this
    /// node does not hold.
    pub fn release_block(&mut self, block: IpNet, now_ms: u64) -> bool {
        let Some((i, other)) = self.release_pair(block) else {
            return false;
        };
        self.release(block, now_ms);
        let base = self.cfg.auto_blocks.len();
        if i < base {
            // A base slot stays at its place: another held block of the
            // pool (necessarily an extra slot) takes it.
            let moved = self.claims.remove(other);
            self.claims[i] = moved;
        } else {
            self.claims.remove(i);
        }
        self.mark_changed();
        self.flush();
        true
    }

    /// Whether [`Agent::release_block`] would give `block` back: held, and
    /// not the last held block of its pool.
    pub fn releasable(&self, block: IpNet) -> bool {
        self.release_pair(block).is_some()
    }

    /// The slot holding `block` and another slot holding a block of the
    /// same pool.
    fn release_pair(&self, block: IpNet) -> Option<(usize, usize)> {
        let i = self
            .claims
            .iter()
            .position(|s| s.claim == Claim::Held { block })?;
        let auto = self.claims[i].auto;
        let other = self.claims.iter().enumerate().rposition(|(j, s)| {
            j != i && s.auto == auto && matches!(s.claim, Claim::Held { .. })
        })?;
        Some((i, other))
    }

    /// The nodes this node counts for its claim quorum: `(up, known)`,
    /// itself included in both, the members down but within their grace
    /// in `known`.
    pub fn quorum_count(&self, now_ms: u64) -> (usize, usize) {
        let (mut known, mut up) = (1usize, 1usize);
        for p in self.peers.values() {
            if p.up {
                known += 1;
                up += 1;
            } else if now_ms.saturating_sub(p.since) < self.cfg.dead_grace_ms {
                known += 1;
            }
        }
        (up, known)
    }

    /// More than half of the nodes this node knows are up, and more than
    /// half of its last reachability probes (to random known nodes, up or
    /// not, each tried three times) were answered, with at least 8 of them
    /// resolved.
    fn has_quorum(&self, now: u64) -> bool {
        let (up, known) = self.quorum_count(now);
        if known == 1 {
            return true; // alone: nobody to disagree with
        }
        let (answered, resolved) = self.reachability();
        2 * up > known && resolved >= 8 && 2 * answered > resolved
    }

    /// Anti-entropy exchanges started at or after `since` whose probe was
    /// answered: a claim settles only after two, so that what the peers
    /// know (a conflicting claim made at the same moment, or across a
    /// partition that just healed) has had its chance to arrive.
    fn synced_since(&self, since: u64) -> usize {
        self.sync_answers
            .iter()
            .filter(|a| a.2 && a.1 >= since)
            .count()
    }

    /// Of the last reachability probes, those answered or given up on
    /// (three tries): `(answered, resolved)`.
    pub fn reachability(&self) -> (usize, usize) {
        let (mut answered, mut n) = (0, 0);
        for q in self
            .quorum_probes
            .iter()
            .filter(|q| q.answered || q.tries >= 3)
        {
            n += 1;
            answered += usize::from(q.answered);
        }
        (answered, n)
    }

    /// Starts (or extends for 2 minutes) the reachability probing a claim
    /// quorum needs: weftd calls it when a family's free addresses run low,
    /// so the quorum is known when the claim comes.
    pub fn expect_claims(&mut self, now_ms: u64) {
        self.claims_wanted_until = now_ms + 120_000;
    }

    /// Retries unanswered reachability probes (every 500 ms, three tries
    /// in all) and, once a second, probes one more random node it knows
    /// (up, or down within its grace): a small datagram a second, only
    /// while a claim is under way or expected ([`Agent::expect_claims`]). A node on a
    /// partition's minority side hears from fewer than half of them, long
    /// before SWIM declares the other side down.
    pub(super) fn quorum_probing(&mut self, now: u64) {
        let claiming = self
            .claims
            .iter()
            .any(|s| !matches!(s.claim, Claim::Held { .. }));
        if now >= self.claims_wanted_until && !claiming {
            return;
        }
        let mut send = Vec::new();
        for q in self.quorum_probes.iter_mut() {
            if !q.answered && q.tries < 3 && now >= q.sent_ms + 500 * u64::from(q.tries) {
                q.tries += 1;
                if q.tries < 3 {
                    send.push(q.to);
                }
            }
        }
        let due = self
            .quorum_probes
            .back()
            .is_none_or(|q| now >= q.sent_ms + 1_000);
        if due {
            let grace = self.cfg.dead_grace_ms;
            let known: Vec<SocketAddr> = self
                .peers
                .values()
                .filter(|p| p.up || now.saturating_sub(p.since) < grace)
                .map(|p| p.member.addr)
                .collect();
            if !known.is_empty() {
                let to = known[self.rng.random_range(0..known.len())];
                if self.quorum_probes.len() == 16 {
                    self.quorum_probes.pop_front();
                }
                self.quorum_probes.push_back(super::QuorumProbe {
                    to,
                    sent_ms: now,
                    tries: 1,
                    answered: false,
                });
                send.push(to);
            }
        }
        for to in send {
            let mut probe = Vec::new();
            crate::wire::Body::Probe(self.clock_us(now)).encode(&mut probe);
            self.bodies.push((to, probe));
        }
    }

    pub(super) fn run_claims(&mut self, now: u64) {
        let ready = now >= self.started_ms + self.cfg.claim_settle_ms
            && (self.joined
                || self.cfg.seeds.iter().all(|s| *s == self.cfg.gossip_addr)
                || now >= self.started_ms + 4 * self.cfg.claim_settle_ms);
        if !ready {
            return;
        }
        // Nothing to decide: every slot held, no claim record changed and
        // no member state changed since the last pass (checked anyway every
        // 5 s, as grace periods run out with time alone).
        let stamp = (
            self.shared.lock().expect("not poisoned").state.claims_seq(),
            self.peers.values().filter(|p| p.up).count(),
        );
        let settled = self
            .claims
            .iter()
            .all(|s| matches!(s.claim, Claim::Held { .. }));
        if settled && self.claims_stamp == Some(stamp) && now < self.claims_checked_ms + 5_000 {
            return;
        }
        self.claims_stamp = Some(stamp);
        self.claims_checked_ms = now;
        let base = self.cfg.auto_blocks.len();
        // Once per pass (a pass over all records): the claims this pass
        // writes are new and pending, so they cannot change its verdicts.
        let won = {
            let sh = self.shared.lock().expect("not poisoned");
            sh.state.winning_claims(|o| self.may_claim(o, now))
        };
        let me = self.cfg.name.clone();
        let mine = |b: &IpNet| won.get(b).is_some_and(|o| *o == me);
        let mut i = 0;
        while i < self.claims.len() {
            match self.claims[i].claim.clone() {
                Claim::Idle => {
                    let auto = self.cfg.auto_blocks[self.claims[i].auto].clone();
                    let extra = i >= base;
                    if extra && !self.has_quorum(now) {
                        // Waits: it may claim again once the partition heals.
                    } else if let Some(block) = self.free_block(&auto, now) {
                        self.claims[i].claim = Claim::Pending {
                            block,
                            since: now,
                            fresh: true,
                        };
                        let key = Key::Claim {
                            owner: self.cfg.name.clone(),
                            block,
                        };
                        let claimed_at = now + self.cfg.wall_clock_offset_ms;
                        self.write(key, Value::Claim { claimed_at }, now);
                    } else if extra {
                        // The pool filled up meanwhile: nothing to wait for.
                        self.claims.remove(i);
                        continue;
                    }
                }
                Claim::Pending { block, since, .. } => {
                    if !mine(&block) {
                        self.release(block, now);
                        self.claims[i].claim = Claim::Idle;
                    } else if now >= since + self.cfg.claim_settle_ms
                        && (self.peers.is_empty() || self.synced_since(since) >= 2)
                        && (i < base || self.has_quorum(now))
                    {
                        self.claims[i].claim = Claim::Held { block };
                        self.events.push(Event::BlockClaimed(block));
                        self.mark_changed();
                    }
                }
                Claim::Held { block } => {
                    if !mine(&block) {
                        self.release(block, now);
                        self.claims[i].claim = Claim::Idle;
                        self.events.push(Event::BlockLost(block));
                        self.mark_changed();
                    }
                }
            }
            i += 1;
        }
    }

    pub(super) fn release(&mut self, block: IpNet, now: u64) {
        let key = Key::Claim {
            owner: self.cfg.name.clone(),
            block,
        };
        self.write(key, Value::Deleted, now);
    }

    /// A block of the pool that no claim overlaps, searched from an offset
    /// derived from the node name so that nodes joining together rarely
    /// pick the same one. With allowed ranges for this node in the
    /// trusted-nodes file, only inside them (other nodes refuse claims
    /// outside). Blocks this node has pending count as taken.
    fn free_block(&self, auto: &AutoBlock, now: u64) -> Option<IpNet> {
        let sh = self.shared.lock().expect("not poisoned");
        let mut taken: Vec<IpNet> = sh
            .state
            .winning_claims(|o| self.may_claim(o, now))
            .into_keys()
            .collect();
        taken.extend(self.claims.iter().filter_map(|s| match s.claim {
            Claim::Pending { block, .. } | Claim::Held { block } => Some(block),
            Claim::Idle => None,
        }));
        let allowed = sh
            .state
            .rules()
            .trusted
            .as_ref()
            .and_then(|t| t.get(&self.cfg.name))
            .map(|me| me.allowed.clone())
            .unwrap_or_default();
        drop(sh);
        if allowed.is_empty() {
            return self.free_block_in(auto.pool, auto.len, &taken);
        }
        // Each allowed range narrows the pool (or is narrowed by it).
        allowed
            .iter()
            .filter_map(|a| {
                if auto.pool.contains(a) {
                    Some(*a)
                } else if a.contains(&auto.pool) {
                    Some(auto.pool)
                } else {
                    None
                }
            })
            .find_map(|space| self.free_block_in(space, auto.len, &taken))
    }

    /// A block of prefix length `len` in `space` that no block of `taken`
    /// overlaps.
    fn free_block_in(&self, space: IpNet, len: u8, taken: &[IpNet]) -> Option<IpNet> {
        let auto = AutoBlock { pool: space, len };
        let (base, host_bits, pool_len) = match auto.pool {
            IpNet::V4(p) => (
                u128::from(u32::from(p.network())),
                32 - auto.len,
                p.prefix_len(),
            ),
            IpNet::V6(p) => (u128::from(p.network()), 128 - auto.len, p.prefix_len()),
        };
        if auto.len < pool_len {
            return None;
        }
        let count_bits = u32::from(auto.len - pool_len).min(64);
        let count: u128 = 1u128 << count_bits;
        let start = u128::from(fnv(self.cfg.name.as_bytes())) % count;
        for i in 0..(taken.len() as u128 + 1).min(count) {
            // Step through candidates; at most one per taken block is skipped.
            let mut n = (start + i) % count;
            let mut block = None;
            for _ in 0..count.min(taken.len() as u128 + 1) {
                let addr = base + (n << host_bits);
                let net = match auto.pool {
                    IpNet::V4(_) => IpNet::new(IpAddr::V4((addr as u32).into()), auto.len),
                    IpNet::V6(_) => IpNet::new(IpAddr::V6(addr.into()), auto.len),
                }
                .ok()?;
                if !taken.iter().any(|t| t.contains(&net) || net.contains(t)) {
                    block = Some(net);
                    break;
                }
                n = (n + 1) % count;
            }
            if block.is_some() {
                return block;
            }
        }
        None
    }

    /// This node's usable blocks: configured ones and confirmed claims that
    /// it still wins.
    pub fn local_blocks(&self) -> Vec<IpNet> {
        let mut v = self.cfg.static_blocks.clone();
        v.extend(self.claims.iter().filter_map(|s| match s.claim {
            Claim::Held { block } => Some(block),
            _ => None,
        }));
        v
    }

    /// This node's confirmed automatic claims with their claim times (what
    /// it should take back after a restart).
    pub fn held_claims(&self) -> Vec<(IpNet, u64)> {
        let sh = self.shared.lock().expect("not poisoned");
        self.claims
            .iter()
            .filter_map(|s| match s.claim {
                Claim::Held { block } => {
                    let key = Key::Claim {
                        owner: self.cfg.name.clone(),
                        block,
                    };
                    match sh.state.value(&key) {
                        Some(Value::Claim { claimed_at }) => Some((block, *claimed_at)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect()
    }
}
