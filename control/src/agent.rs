//! The sans-I/O control-plane core of one node.
//!
//! An [`Agent`] is fed datagrams and the passing of time, and produces
//! datagrams to send: it does no I/O and reads no clock, so weftd drives it
//! from a socket and the simulator ([`crate::sim`]) drives thousands of
//! them in virtual time. Inside:
//!
//! - membership and failure detection: foca (SWIM with suspicion,
//!   indirect probes, periodic gossip and announce);
//! - records: this node's writes are foca custom broadcasts (piggybacked
//!   on SWIM traffic, pushed at once to a few members); every merge goes
//!   through [`State`];
//! - anti-entropy: every `sync_interval_ms`, digests are exchanged with one
//!   random member and the records of owners whose digests differ are sent
//!   both ways, so late joiners and healed partitions converge;
//! - block claims (`claims`): configured blocks are claimed at time 0;
//!   automatic ones are claimed from the pools, one per pool at start and
//!   more on demand, each checked with a majority of the cluster before
//!   it settles (a claim another claimant competes for is given up for
//!   another block), and given back when empty;
//! - every datagram sealed and opened by [`crate::auth`]; refusals counted.

use crate::auth::{Keyring, Opener, Origin, Sealer};
use crate::counters::Counters;
use crate::identity::{NodeKey, TrustedNodes};
use crate::member::Member;
use crate::record::{Key, NodeInfo, Record, RecordError, Signed, Value, Version};
use crate::state::{fnv, Rules, State, View};
use crate::wire::{self, Body};
use claims::{CheckRound, Slot};
pub use claims::{Claiming, NoBlock};

mod claims;
mod records;
mod swim;
mod sync;
use foca::{Foca, OwnedNotification, PostcardCodec, Timer};
use ipnet::IpNet;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swim::{swim_sender_is, Handler};

/// A block to claim automatically: from `pool`, of prefix length `len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoBlock {
    /// The pool to take it from.
    pub pool: IpNet,
    /// The block's prefix length.
    pub len: u8,
}

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub name: String,
    /// Where this node listens for gossip (its member address).
    pub gossip_addr: SocketAddr,
    /// What the data path of other nodes needs to reach this one.
    pub info: NodeInfo,
    /// Members to join through.
    pub seeds: Vec<SocketAddr>,
    /// The cluster keys.
    pub keyring: Keyring,
    /// Encrypt control traffic (it is always authenticated).
    pub encrypt: bool,
    /// This node's signing key: every record it writes carries its
    /// signature. Needed when `rules.trusted` is set (other nodes then
    /// refuse unsigned records).
    pub node_key: Option<NodeKey>,
    /// With node keys, also accept datagrams that carry no sender
    /// signature (a rolling upgrade from a build that did not sign them);
    /// records in them are still checked.
    pub accept_unsigned_datagrams: bool,
    /// What records are accepted and how many.
    pub rules: Rules,
    /// Blocks from this node's configuration (claimed at time 0).
    pub static_blocks: Vec<IpNet>,
    /// Blocks to claim from the pools.
    pub auto_blocks: Vec<AutoBlock>,
    /// Blocks this node held before a restart, with their claim times.
    pub previous_claims: Vec<(IpNet, u64)>,
    /// Added to the agent's clock to get wall-clock ms, which claim times
    /// use so that nodes can compare them (0 when the clock given to the
    /// agent is already shared, as in the simulator).
    pub wall_clock_offset_ms: u64,
    /// How long an automatic claim stays pending before it is used.
    pub claim_settle_ms: u64,
    /// How long a dead node keeps its blocks before others may claim them.
    pub dead_grace_ms: u64,
    /// Anti-entropy period.
    pub sync_interval_ms: u64,
    /// SWIM probe period.
    pub probe_period_ms: u64,
    /// Expected cluster size (tunes retransmissions and suspicion).
    pub cluster_size_hint: u32,
    /// What this node tells its peers of itself ([`wire::NodeStatus`]:
    /// its data path); None: nothing.
    pub status: Option<wire::NodeStatus>,
}

impl AgentConfig {
    /// A configuration with the defaults for everything but identity.
    pub fn new(name: &str, gossip_addr: SocketAddr, info: NodeInfo, keyring: Keyring) -> Self {
        AgentConfig {
            name: name.to_string(),
            gossip_addr,
            info,
            seeds: Vec::new(),
            keyring,
            encrypt: false,
            node_key: None,
            accept_unsigned_datagrams: false,
            rules: Rules::default(),
            static_blocks: Vec::new(),
            auto_blocks: Vec::new(),
            previous_claims: Vec::new(),
            wall_clock_offset_ms: 0,
            claim_settle_ms: 2_000,
            dead_grace_ms: 10 * 60 * 1000,
            sync_interval_ms: 2_000,
            probe_period_ms: 1_000,
            cluster_size_hint: 32,
            status: None,
        }
    }

    fn foca(&self) -> foca::Config {
        let mut c =
            foca::Config::new_lan(NonZeroU32::new(self.cluster_size_hint.max(2)).expect("≥2"));
        let period = Duration::from_millis(self.probe_period_ms.max(100));
        let scale = period.as_secs_f64() / c.probe_period.as_secs_f64();
        c.probe_rtt = period / 2;
        c.suspect_to_down_after = c.suspect_to_down_after.mul_f64(scale);
        c.probe_period = period;
        c.max_packet_size = NonZeroUsize::new(wire::MAX_BODY - 1).expect("nonzero");
        // Give gossip enough transmissions to cross a large cluster even
        // with loss (memberlist's multiplier 4 × log10(n+1), plus margin).
        c.max_transmissions = c.max_transmissions.saturating_add(4);
        // Five indirect probes instead of three: on a lossy underlay (10 %)
        // a probe then fails ~9x less often, and every false suspicion
        // costs a cluster-wide suspect/refute exchange.
        c.num_indirect_probes = NonZeroUsize::new(5).expect("nonzero");
        // Rejoin a healed partition without waiting a minute.
        if let Some(p) = c.periodic_announce_to_down_members.as_mut() {
            p.frequency = Duration::from_secs(10);
        }
        c
    }
}

/// Something an operator or a test wants to know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member is up (joined, or back).
    MemberUp(String),
    /// A member was declared down.
    MemberDown(String),
    /// This node joined the cluster (at least one member knows it).
    Joined,
    /// An automatic block claim is confirmed: pods may use it.
    BlockClaimed(IpNet),
    /// A block this node held was won by an earlier claim elsewhere.
    BlockLost(IpNet),
}

/// What the broadcast handler shares with the agent (foca owns the handler
/// and offers no access to it, so the state sits behind a mutex both hold;
/// the agent is single-threaded, so it is never contended).
struct Shared {
    state: State,
    now_ms: u64,
    name: String,
    counters: Counters,
    changed: bool,
    /// Records about this node from an older start (or forged): to be
    /// overwritten with tombstones.
    to_refute: Vec<Record>,
    /// A node record of a new owner arrived.
    new_owners: bool,
}

impl Shared {
    fn merge(&mut self, s: Signed) -> Result<bool, RecordError> {
        if s.record.key.owner() == self.name {
            // Checked first: with node keys, a record in our name that does
            // not verify is a forgery, not worth a refutation.
            self.state.admit(&s.record)?;
            self.state.verify(&s)?;
            let r = s.record;
            // Only this node writes its records; anything else about it is
            // from before a restart (or forged): never believed.
            let mine = self.state.version(&r.key);
            if mine.is_none_or(|v| v < r.version) {
                self.to_refute.push(r);
            }
            return Ok(false);
        }
        let node_record = matches!(s.record.key, Key::Node { .. });
        let changed = self.state.apply(s, self.now_ms)?;
        self.note_merged(changed, node_record);
        Ok(changed)
    }

    /// [`merge`](Self::merge) for many records, their signatures checked
    /// together; refusals are counted by reason.
    fn merge_all(&mut self, records: Vec<Signed>) {
        let (mine, others): (Vec<Signed>, Vec<Signed>) = records
            .into_iter()
            .partition(|s| s.record.key.owner() == self.name);
        for s in mine {
            if let Err(e) = self.merge(s) {
                self.counters.drop(e.reason());
            }
        }
        let kinds: Vec<bool> = others
            .iter()
            .map(|s| matches!(s.record.key, Key::Node { .. }))
            .collect();
        let results = self.state.apply_all(others, self.now_ms);
        for (result, node_record) in results.into_iter().zip(kinds) {
            match result {
                Ok(changed) => self.note_merged(changed, node_record),
                Err(e) => self.counters.drop(e.reason()),
            }
        }
    }

    fn note_merged(&mut self, changed: bool, node_record: bool) {
        self.new_owners |= changed && node_record;
        self.changed |= changed;
    }
}

#[derive(Debug, Clone)]
struct Peer {
    member: Member,
    up: bool,
    since: u64,
    /// Smoothed round-trip time (µs), from anti-entropy probes.
    rtt_us: Option<u64>,
    /// What it last said of itself.
    status: Option<wire::NodeStatus>,
}

/// A member as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Alive (or suspect) rather than down.
    pub up: bool,
    /// Smoothed round-trip time in µs, once measured.
    pub rtt_us: Option<u64>,
    /// What it last said of itself (its data path), once heard.
    pub status: Option<wire::NodeStatus>,
}

/// The control-plane core of one node.
pub struct Agent {
    cfg: AgentConfig,
    foca: Foca<Member, PostcardCodec, SmallRng, Handler>,
    shared: Arc<Mutex<Shared>>,
    sealer: Sealer,
    opener: Opener,
    rng: SmallRng,
    timers: BinaryHeap<Reverse<(u64, u64, Timer<Member>)>>,
    timer_seq: u64,
    /// Bodies to seal and send.
    bodies: Vec<(SocketAddr, Vec<u8>)>,
    notes: Vec<OwnedNotification<Member>>,
    /// Sealed datagrams ready to go.
    out: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
    peers: BTreeMap<String, Peer>,
    counter: u64,
    epoch: u64,
    started_ms: u64,
    joined: bool,
    next_sync_ms: u64,
    next_housekeeping_ms: u64,
    claims: Vec<Slot>,
    /// The claim check of each pending claim (see `agent::claims`).
    checks: HashMap<IpNet, CheckRound>,
    /// Blocks this node backed off from, and until when it avoids them.
    avoid: HashMap<IpNet, u64>,
    /// Held blocks another claim contests, and since when.
    contested: HashMap<IpNet, u64>,
    /// The most nodes this node has known at once lately (itself
    /// included), and when it last knew that many: the size a claim's
    /// quorum is a majority of.
    cluster_high: (usize, u64),
    /// What the last full pass over the claims saw (claims sequence,
    /// members up), and when: a pass with nothing new is skipped.
    claims_stamp: Option<(u64, usize)>,
    claims_checked_ms: u64,
    scratch: Vec<u8>,
    bytes_sent: u64,
    bytes_by_kind: [u64; 4],
    clock_us: Option<u64>,
}

impl Agent {
    /// Creates the agent at time `now_ms`; `epoch` must grow across
    /// restarts of the same node (wall-clock ms at start); `seed` feeds its
    /// random choices.
    pub fn new(mut cfg: AgentConfig, now_ms: u64, epoch: u64, seed: u64) -> Self {
        cfg.info.gossip = cfg.gossip_addr;
        cfg.info.boot = epoch;
        let me = Member {
            name: cfg.name.clone(),
            addr: cfg.gossip_addr,
            boot: epoch,
        };
        let mut state = State::new(cfg.rules.clone());
        state.pin(&cfg.name, &cfg.static_blocks);
        let shared = Arc::new(Mutex::new(Shared {
            state,
            now_ms,
            name: cfg.name.clone(),
            counters: Counters::default(),
            changed: true,
            to_refute: Vec::new(),
            new_owners: false,
        }));
        let foca = Foca::with_custom_broadcast(
            me,
            cfg.foca(),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            Handler(Arc::clone(&shared)),
        );
        let sender = fnv(cfg.name.as_bytes());
        let mut sealer = Sealer::new(cfg.keyring.clone(), sender, epoch, cfg.encrypt);
        if let Some(key) = &cfg.node_key {
            sealer = sealer.with_signer(key.signing_key());
        }
        let mut opener = Opener::new(cfg.keyring.clone(), cfg.rules.max_owners * 2);
        opener.set_signers(cfg.rules.trusted.as_ref().map(|t| t.datagram_signers()));
        opener.accept_unsigned(cfg.accept_unsigned_datagrams);
        let mut agent = Agent {
            sealer,
            opener,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            claims: Agent::base_slots(cfg.auto_blocks.len()),
            checks: HashMap::new(),
            avoid: HashMap::new(),
            contested: HashMap::new(),
            cluster_high: (1, now_ms),
            claims_stamp: None,
            claims_checked_ms: 0,
            cfg,
            foca,
            shared,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            bodies: Vec::new(),
            notes: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
            peers: BTreeMap::new(),
            counter: 0,
            epoch,
            started_ms: now_ms,
            joined: false,
            next_sync_ms: now_ms,
            next_housekeeping_ms: now_ms,
            scratch: Vec::new(),
            bytes_sent: 0,
            bytes_by_kind: [0; 4],
            clock_us: None,
        };
        agent.write(
            Key::Node {
                owner: agent.cfg.name.clone(),
            },
            Value::Node(agent.cfg.info.clone()),
            now_ms,
        );
        for (block, claimed_at) in agent.cfg.previous_claims.clone() {
            agent.adopt(block, claimed_at, now_ms);
        }
        for block in agent.cfg.static_blocks.clone() {
            agent.write(
                Key::Claim {
                    owner: agent.cfg.name.clone(),
                    block,
                },
                Value::Claim { claimed_at: 0 },
                now_ms,
            );
        }
        // Join through the seeds (foca accepts an announce addressed to any
        // identity at the right address).
        for seed in agent.cfg.seeds.clone() {
            if seed == agent.cfg.gossip_addr {
                continue;
            }
            let dst = Member {
                name: String::new(),
                addr: seed,
                boot: 0,
            };
            agent.with_foca(now_ms, |f, rt| f.announce(dst, rt));
        }
        agent.flush();
        agent
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Handles one datagram from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &mut [u8], now_ms: u64) {
        self.handle_datagrams([(from, datagram)], now_ms);
    }

    /// Handles datagrams that arrived together (what a socket held at
    /// once), each like [`handle_datagram`](Self::handle_datagram) in
    /// order, except that the records they carry are merged together at
    /// the end (their signatures checked in one batch: a node joining a
    /// large cluster receives its state in bursts of such datagrams).
    pub fn handle_datagrams<'a>(
        &mut self,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a mut [u8])>,
        now_ms: u64,
    ) {
        let (from, mut datagrams): (Vec<SocketAddr>, Vec<&mut [u8]>) =
            datagrams.into_iter().unzip();
        let opened = self.opener.open_all(&mut datagrams);
        let mut records = Vec::new();
        for ((from, datagram), opened) in from.into_iter().zip(datagrams).zip(opened) {
            match opened {
                Ok((origin, body)) => {
                    self.receive(from, origin, &datagram[body], now_ms, &mut records)
                }
                Err(e) => self.count_drop(e.reason()),
            }
        }
        if !records.is_empty() {
            let mut sh = self.shared.lock().expect("not poisoned");
            sh.now_ms = now_ms;
            sh.merge_all(records);
            drop(sh);
            self.after_foca(now_ms);
        }
        self.flush();
    }

    /// Acts on one opened datagram's `body`; the records it carries are
    /// added to `records`, for the caller to merge.
    fn receive(
        &mut self,
        from: SocketAddr,
        origin: Origin,
        body: &[u8],
        now_ms: u64,
        records: &mut Vec<Signed>,
    ) {
        match Body::decode(body) {
            Ok(Body::Swim(packet)) => {
                // With node keys the datagram's sender is proven: a SWIM
                // message must then come from that member, not name another.
                if origin.proven && !swim_sender_is(packet, origin.sender) {
                    self.count_drop("swim_wrong_sender");
                } else {
                    self.with_foca(now_ms, |f, rt| f.handle_data(packet, rt));
                }
            }
            Ok(Body::Summary(b)) => self.on_summary(from, &b),
            Ok(Body::Probe(t)) => {
                let mut body = Vec::new();
                Body::ProbeAck(t).encode(&mut body);
                self.bodies.push((from, body));
                self.send_status(from);
            }
            Ok(Body::Status(st)) => {
                // With node keys, the member the signature proves; else the
                // one at the sender's address.
                let sender = |p: &&mut Peer| match origin.proven {
                    true => fnv(p.member.name.as_bytes()) == origin.sender,
                    false => p.member.addr == from,
                };
                if let Some(p) = self.peers.values_mut().find(sender) {
                    p.status = Some(st);
                }
            }
            Ok(Body::ProbeAck(t)) => {
                let sample = self.clock_us(now_ms).saturating_sub(t);
                if let Some(p) = self.peers.values_mut().find(|p| p.member.addr == from) {
                    // EWMA, 1/4 weight to the new sample.
                    p.rtt_us = Some(p.rtt_us.map_or(sample, |r| (3 * r + sample) / 4));
                }
            }
            Ok(Body::Digest(d)) => self.on_digest(from, d, now_ms),
            Ok(Body::ClaimCheck(claim)) => self.on_claim_check(from, claim, now_ms),
            Ok(Body::ClaimAnswer(answer)) => self.on_claim_answer(from, answer, now_ms),
            Ok(Body::Records(rs)) => records.extend(rs),
            Err(e) => self.count_drop(e.reason()),
        }
        self.shared.lock().expect("not poisoned").counters.received += 1;
    }

    /// Runs whatever is due at `now_ms`: foca's timers, anti-entropy,
    /// claims, tombstone expiry.
    pub fn tick(&mut self, now_ms: u64) {
        self.shared.lock().expect("not poisoned").now_ms = now_ms;
        while let Some(Reverse((due, _, _))) = self.timers.peek() {
            if *due > now_ms {
                break;
            }
            let Reverse((_, _, timer)) = self.timers.pop().expect("peeked");
            self.with_foca(now_ms, |f, rt| f.handle_timer(timer, rt));
        }
        if now_ms >= self.next_sync_ms {
            let jitter = self.rng.random_range(0..=self.cfg.sync_interval_ms / 4);
            self.next_sync_ms =
                now_ms + self.cfg.sync_interval_ms - self.cfg.sync_interval_ms / 8 + jitter;
            self.start_sync();
        }
        if now_ms >= self.next_housekeeping_ms {
            self.next_housekeeping_ms = now_ms + 250;
            self.housekeeping(now_ms);
        }
        self.flush();
    }

    /// When [`tick`](Self::tick) should next run.
    pub fn next_deadline(&self) -> u64 {
        let timer = self
            .timers
            .peek()
            .map(|Reverse((due, _, _))| *due)
            .unwrap_or(u64::MAX);
        timer.min(self.next_sync_ms).min(self.next_housekeeping_ms)
    }

    fn may_claim(&self, owner: &str, now: u64) -> bool {
        if owner == self.cfg.name {
            return true;
        }
        match self.peers.get(owner) {
            Some(p) if p.up => true,
            Some(p) => now.saturating_sub(p.since) < self.cfg.dead_grace_ms,
            // Known only from records (e.g. learned from a peer before
            // membership told us): its claims stand until it is seen down.
            None => true,
        }
    }

    /// The epoch of the start `owner` is live in (this node: its own), or
    /// None if it is not live.
    fn live_since(&self, owner: &str) -> Option<u64> {
        if owner == self.cfg.name {
            return Some(self.epoch);
        }
        self.peers
            .get(owner)
            .filter(|p| p.up)
            .map(|p| p.member.boot)
    }

    fn housekeeping(&mut self, now: u64) {
        {
            let mut sh = self.shared.lock().expect("not poisoned");
            sh.now_ms = now;
            sh.state.expire(now);
        }
        self.check_claims(now);
        self.run_claims(now);
    }

    fn flush(&mut self) {
        for (to, body) in std::mem::take(&mut self.bodies) {
            let mut sealed = std::mem::take(&mut self.scratch);
            self.sealer.seal(&body, &mut sealed);
            self.bytes_sent += sealed.len() as u64;
            if let Some(k) = body.first() {
                self.bytes_by_kind[wire::byte_count_index(*k)] += sealed.len() as u64;
            }
            self.out.push((to, sealed));
        }
    }

    /// Takes the sealed datagrams to send.
    pub fn drain_output(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let out = std::mem::take(&mut self.out);
        self.shared.lock().expect("not poisoned").counters.sent += out.len() as u64;
        out
    }

    /// Takes the events since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Replaces the trusted-nodes file (see [`State::set_trusted`]);
    /// returns how many records no longer verify and were dropped.
    /// Datagrams are then accepted only from the nodes the new file lists.
    pub fn set_trusted(&mut self, trusted: Option<Arc<TrustedNodes>>) -> usize {
        self.opener
            .set_signers(trusted.as_ref().map(|t| t.datagram_signers()));
        let mut sh = self.shared.lock().expect("not poisoned");
        sh.changed = true;
        sh.state.set_trusted(trusted)
    }

    /// True (once) if the view may have changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.shared.lock().expect("not poisoned").changed)
    }

    /// The effective view at `now_ms`: what fdb should hold.
    pub fn view(&self, now_ms: u64) -> View {
        let sh = self.shared.lock().expect("not poisoned");
        sh.state
            .view(|o| self.live_since(o), |o| self.may_claim(o, now_ms))
    }

    /// Whether this node has joined a cluster.
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// Members and their state: `(name, address, up)`.
    pub fn members(&self) -> Vec<(String, SocketAddr, bool)> {
        self.peers
            .values()
            .map(|p| (p.member.name.clone(), p.member.addr, p.up))
            .collect()
    }

    /// Members with their round-trip times.
    pub fn member_info(&self) -> Vec<MemberInfo> {
        self.peers
            .values()
            .map(|p| MemberInfo {
                name: p.member.name.clone(),
                addr: p.member.addr,
                up: p.up,
                rtt_us: p.rtt_us,
                status: p.status.clone(),
            })
            .collect()
    }

    /// Counts a dropped datagram under `reason`.
    fn count_drop(&self, reason: &'static str) {
        self.shared
            .lock()
            .expect("not poisoned")
            .counters
            .drop(reason);
    }

    /// Queues this node's status (if it has one) for `to`.
    pub(crate) fn send_status(&mut self, to: SocketAddr) {
        if let Some(st) = &self.cfg.status {
            let mut body = Vec::new();
            Body::Status(st.clone()).encode(&mut body);
            self.bodies.push((to, body));
        }
    }

    /// Gives the agent a finer clock (µs) for round-trip times; without
    /// it, they are measured in whole ms of the agent's clock.
    pub fn set_clock_us(&mut self, us: u64) {
        self.clock_us = Some(us);
    }

    fn clock_us(&self, now_ms: u64) -> u64 {
        self.clock_us.unwrap_or(now_ms * 1000)
    }

    /// The anti-entropy summary of this node's state (equal on two nodes
    /// iff, with overwhelming probability, they hold the same records).
    pub fn summary(&self) -> Vec<u64> {
        self.shared
            .lock()
            .expect("not poisoned")
            .state
            .bucket_digests()
    }

    /// Whether this node holds the record `key` at `version` or newer.
    pub fn has(&self, key: &Key, version: Version) -> bool {
        self.shared
            .lock()
            .expect("not poisoned")
            .state
            .version(key)
            .is_some_and(|v| v >= version)
    }

    /// The version of this node's latest write.
    pub fn last_version(&self) -> Version {
        Version {
            epoch: self.epoch,
            counter: self.counter,
        }
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        let sh = self.shared.lock().expect("not poisoned");
        let mut c = sh.counters.clone();
        c.bytes_sent = self.bytes_sent;
        c.bytes_by_kind = self.bytes_by_kind;
        let (owners, records) = sh.state.size();
        c.owners = owners as u64;
        c.records = records as u64;
        c
    }

    /// Leaves the cluster gracefully (members see it leave at once).
    pub fn leave(&mut self, now_ms: u64) {
        self.with_foca(now_ms, |f, rt| f.leave_cluster(rt));
        self.flush();
    }
}
