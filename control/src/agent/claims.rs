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
//! Every claim is checked before it settles, so that two nodes never
//! both hold a block: the claimant sends its claim record to every node it
//! knows ([`Body::ClaimCheck`]); each stores it and answers with the other
//! claims on that block it knows ([`Body::ClaimAnswer`]). The claim
//! settles once a majority of the cluster (the most nodes this node, or
//! any answer, has known at once lately, itself included) answered with no
//! other claim, and not before `claim_settle_ms`. Any other claim in an
//! answer makes the claimant back off, whoever claimed first: it gives the
//! block up and picks another at random.
//!
//! Why that is safe: two claimants' majorities share a node. Whichever
//! check reached that node second was answered with the other's claim, so
//! at least one of the two backs off. A partition's minority side cannot
//! gather a majority: its claims wait for the heal (on-demand claims are
//! refused outright while SWIM sees fewer than half of the nodes up).
//! A held block whose record a competing claim outranks (an earlier claim
//! that backed off but whose record is still travelling) is kept for
//! [`CONTEST_MS`], time for the competitor's withdrawal to arrive; a claim
//! that still wins then (say, two sides of a partition that outlived the
//! members' grace each claimed alone) takes it, and this node gets
//! [`Event::BlockLost`].

use super::{Agent, AutoBlock, Event};
use crate::record::{Key, Signed, Value};
use crate::state::fnv;
use crate::wire::{Body, ClaimAnswer};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;

/// How long a held block outranked by another claim is kept before it is
/// given up (ms).
pub const CONTEST_MS: u64 = 10_000;
/// How long a node avoids a block it backed off from (ms).
const AVOID_MS: u64 = 60_000;
/// How long the cluster's size is remembered after fewer nodes are known
/// (ms): a partition that outlives the members' grace still leaves its
/// minority side without a quorum for this long.
const CLUSTER_MEMORY_MS: u64 = 3_600_000;
/// The longest wait between two checks of one claim sent to a node that
/// has not answered (ms).
const CHECK_RETRY_MAX_MS: u64 = 8_000;

/// The check of one pending claim.
#[derive(Debug, Clone)]
pub(in crate::agent) struct CheckRound {
    /// The claim's time (answers echo it).
    claimed_at: u64,
    /// Nodes asked, by gossip address.
    asked: HashMap<SocketAddr, Ask>,
    /// Answers naming no other claim.
    clean: usize,
    /// The most nodes any answer said it knows.
    largest: usize,
    /// An answer named another claim on the block.
    conflict: bool,
}

/// One node asked in a [`CheckRound`].
#[derive(Debug, Clone, Copy)]
struct Ask {
    tries: u32,
    next_ms: u64,
    answered: bool,
}

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
        self.start_check(block, claimed_at);
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
        if under_way {
            return Ok(Claiming::AlreadyUnderWay);
        }
        // (A check that cannot gather a majority would wait anyway; this
        // refuses at once where SWIM already sees the partition.)
        let (up, known) = self.quorum_count(now_ms);
        if 2 * up <= self.cluster_size(known, now_ms) {
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

    /// The size a claim's majority is counted against: `known` now, or
    /// the most this node knew at once within [`CLUSTER_MEMORY_MS`].
    fn cluster_size(&self, known: usize, now: u64) -> usize {
        let (high, at) = self.cluster_high;
        if now.saturating_sub(at) <= CLUSTER_MEMORY_MS {
            known.max(high)
        } else {
            known
        }
    }

    /// Remembers the cluster's size, sends the checks of pending claims to
    /// nodes not asked yet (new members) and again to those that have not
    /// answered (after 0.5 s, then twice as long each time, at most
    /// [`CHECK_RETRY_MAX_MS`]).
    pub(super) fn check_claims(&mut self, now: u64) {
        let (_, known) = self.quorum_count(now);
        if known >= self.cluster_high.0
            || now.saturating_sub(self.cluster_high.1) > CLUSTER_MEMORY_MS
        {
            self.cluster_high = (known, now);
        }
        self.avoid.retain(|_, until| *until > now);
        if self.checks.is_empty() {
            return;
        }
        let targets = self.check_targets(now);
        let me = self.cfg.name.clone();
        let mut send = Vec::new();
        for (block, round) in self.checks.iter_mut() {
            let mut due = Vec::new();
            for to in &targets {
                round.asked.entry(*to).or_insert(Ask {
                    tries: 0,
                    next_ms: now,
                    answered: false,
                });
            }
            for (to, ask) in round.asked.iter_mut() {
                if !ask.answered && now >= ask.next_ms {
                    ask.tries += 1;
                    ask.next_ms = now + (250u64 << ask.tries.min(6)).min(CHECK_RETRY_MAX_MS);
                    due.push(*to);
                }
            }
            if !due.is_empty() {
                send.push((*block, due));
            }
        }
        for (block, due) in send {
            let key = Key::Claim {
                owner: me.clone(),
                block,
            };
            let Some(record) = self.shared.lock().expect("not poisoned").state.signed(&key) else {
                continue;
            };
            let mut body = Vec::new();
            Body::ClaimCheck(record).encode(&mut body);
            for to in due {
                self.bodies.push((to, body.clone()));
            }
        }
    }

    /// The gossip addresses of the nodes a claim check asks: every node
    /// known (up, or down within its grace).
    fn check_targets(&self, now: u64) -> Vec<SocketAddr> {
        let grace = self.cfg.dead_grace_ms;
        self.peers
            .values()
            .filter(|p| p.up || now.saturating_sub(p.since) < grace)
            .map(|p| p.member.addr)
            .collect()
    }

    /// Starts checking this node's pending claim of `block` (sent at the
    /// next housekeeping pass, within 250 ms).
    fn start_check(&mut self, block: IpNet, claimed_at: u64) {
        self.checks.insert(
            block,
            CheckRound {
                claimed_at,
                asked: HashMap::new(),
                clean: 0,
                largest: 0,
                conflict: false,
            },
        );
    }

    /// Whether the check of `block` has gathered a majority of clean
    /// answers (this node counting as one), or this node knows no other.
    fn check_passed(&self, block: IpNet, now: u64) -> bool {
        let (_, known) = self.quorum_count(now);
        if known == 1 && self.cluster_size(known, now) == 1 {
            return true; // alone: nobody to disagree with
        }
        self.checks.get(&block).is_some_and(|r| {
            let size = self.cluster_size(known, now).max(r.largest);
            !r.conflict && 2 * (r.clean + 1) > size
        })
    }

    /// Answers a claim check: stores the claim, then names the other live
    /// claims on that block this node knows. No answer if the claim is not
    /// stored as sent (refused, or already withdrawn by a newer record).
    pub(super) fn on_claim_check(&mut self, from: SocketAddr, claim: Signed, now: u64) {
        let (Key::Claim { owner, block }, Value::Claim { claimed_at }) =
            (&claim.record.key, &claim.record.value)
        else {
            self.shared
                .lock()
                .expect("not poisoned")
                .counters
                .drop("claim_check_not_a_claim");
            return;
        };
        let (owner, block, claimed_at) = (owner.clone(), *block, *claimed_at);
        let others = {
            let mut sh = self.shared.lock().expect("not poisoned");
            sh.now_ms = now;
            if let Err(e) = sh.merge(claim.clone()) {
                sh.counters.drop(e.reason());
                return;
            }
            if sh.state.signed(&claim.record.key).as_ref() != Some(&claim) {
                return;
            }
            sh.state.claims_overlapping(block)
        };
        let others: Vec<(String, IpNet)> = others
            .into_iter()
            .filter(|(o, _, _)| *o != owner && self.may_claim(o, now))
            .map(|(o, b, _)| (o, b))
            .collect();
        let conflicts: Vec<Signed> = {
            let sh = self.shared.lock().expect("not poisoned");
            others
                .into_iter()
                .filter_map(|(o, b)| sh.state.signed(&Key::Claim { owner: o, block: b }))
                .collect()
        };
        // The most nodes this node knew at once lately (kept every 250 ms
        // by `check_claims`): a pass over the members per check answered
        // was most of a 1000-node simulation's time.
        let known = u32::try_from(self.cluster_high.0).unwrap_or(u32::MAX);
        let body = ClaimAnswer::encode_with(block, claimed_at, known, conflicts);
        self.bodies.push((from, body));
        self.after_foca(now);
    }

    /// Takes an answer to one of this node's claim checks: the claims it
    /// names are merged (so this node avoids them), and the answer counts
    /// once per node asked.
    pub(super) fn on_claim_answer(&mut self, from: SocketAddr, answer: ClaimAnswer, now: u64) {
        let conflict = !answer.conflicts.is_empty();
        if conflict {
            let mut sh = self.shared.lock().expect("not poisoned");
            sh.now_ms = now;
            for c in answer.conflicts {
                if let Err(e) = sh.merge(c) {
                    sh.counters.drop(e.reason());
                }
            }
        }
        if let Some(round) = self
            .checks
            .get_mut(&answer.block)
            .filter(|r| r.claimed_at == answer.claimed_at)
        {
            if let Some(ask) = round.asked.get_mut(&from).filter(|a| !a.answered) {
                ask.answered = true;
                round.largest = round.largest.max(answer.known as usize);
                if conflict {
                    round.conflict = true;
                } else {
                    round.clean += 1;
                }
            }
        }
        if conflict {
            self.after_foca(now);
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
                    if let Some(block) = self.free_block(&auto, now) {
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
                        self.start_check(block, claimed_at);
                    } else if extra {
                        // The pool filled up meanwhile: nothing to wait for.
                        self.claims.remove(i);
                        continue;
                    }
                }
                Claim::Pending { block, since, .. } => {
                    let conflict = self.checks.get(&block).is_some_and(|r| r.conflict);
                    if !mine(&block) || conflict {
                        // Backs off, whoever claimed first (see the module
                        // docs): the other claimant may have settled.
                        self.release(block, now);
                        self.checks.remove(&block);
                        self.avoid.insert(block, now + AVOID_MS);
                        self.claims[i].claim = Claim::Idle;
                        self.claims_stamp = None; // pick another in the next pass
                    } else if now >= since + self.cfg.claim_settle_ms
                        && self.check_passed(block, now)
                    {
                        self.checks.remove(&block);
                        self.claims[i].claim = Claim::Held { block };
                        self.events.push(Event::BlockClaimed(block));
                        self.mark_changed();
                    }
                }
                Claim::Held { block } => {
                    if mine(&block) {
                        self.contested.remove(&block);
                    } else {
                        let since = *self.contested.entry(block).or_insert(now);
                        if now >= since + CONTEST_MS {
                            self.contested.remove(&block);
                            self.release(block, now);
                            self.claims[i].claim = Claim::Idle;
                            self.events.push(Event::BlockLost(block));
                            self.mark_changed();
                        }
                    }
                }
            }
            i += 1;
        }
    }

    pub(super) fn release(&mut self, block: IpNet, now: u64) {
        self.checks.remove(&block);
        self.contested.remove(&block);
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
    /// outside). Blocks this node has pending count as taken, and those it
    /// backed off from lately too, unless nothing else is free.
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
        let mut avoiding = taken.clone();
        avoiding.extend(self.avoid.keys().copied());
        self.free_block_among(auto, &allowed, &avoiding, now)
            .or_else(|| self.free_block_among(auto, &allowed, &taken, now))
    }

    /// A block of `auto` no block of `taken` overlaps, inside `allowed`
    /// if not empty.
    fn free_block_among(
        &self,
        auto: &AutoBlock,
        allowed: &[IpNet],
        taken: &[IpNet],
        now: u64,
    ) -> Option<IpNet> {
        if allowed.is_empty() {
            return self.free_block_in(auto.pool, auto.len, taken, now);
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
            .find_map(|space| self.free_block_in(space, auto.len, taken, now))
    }

    /// A block of prefix length `len` in `space` that no block of `taken`
    /// overlaps.
    fn free_block_in(&self, space: IpNet, len: u8, taken: &[IpNet], now: u64) -> Option<IpNet> {
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
        // After backing off, from a new place: two nodes whose names led
        // them to the same block would otherwise meet again next door.
        let mut seed = fnv(self.cfg.name.as_bytes());
        if !self.avoid.is_empty() {
            seed ^= now.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        let start = u128::from(seed) % count;
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
