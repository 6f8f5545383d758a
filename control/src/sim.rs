//! A deterministic simulator: many real [`Agent`]s in one process, in
//! virtual time, over a network with configurable latency, loss and
//! partitions. Same seed, same run.
//!
//! It measures what the control plane promises: how fast a new endpoint
//! reaches every node, how fast a dead node is detected, whether live
//! nodes are ever declared dead (false positives), and the bytes each node
//! sends per second.

use crate::agent::{Agent, AgentConfig, Event};
use crate::auth::Keyring;
use crate::identity::{NodeKey, TrustedNodes};
use crate::record::{Key, NodeInfo};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// The simulated network and cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// One-way latency range in ms (uniform).
    pub latency_ms: (u64, u64),
    /// Seed of everything random.
    pub seed: u64,
    /// Start nodes this many ms apart (all join through node 0).
    pub stagger_ms: u64,
    /// Nodes claim their block from this pool, of this prefix length, over
    /// gossip instead of having one configured.
    pub auto_claim: Option<(ipnet::IpNet, u8)>,
    /// Every node signs its records with its own key, and every node
    /// trusts exactly the cluster's keys (with its configured block as the
    /// allowed range when blocks are configured).
    pub node_keys: bool,
    /// With node keys and `auto_claim`: node `i` may claim only inside the
    /// `i`-th range of this prefix length in the pool (the trusted-nodes
    /// file's allowed ranges), instead of anywhere in the pool.
    pub per_node_ranges: Option<u8>,
    /// Every node tells its peers its data path ([`crate::wire::NodeStatus`]):
    /// `"kernel"` for even-numbered nodes, `"userspace"` for the others.
    pub statuses: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 10,
            loss: 0.0,
            latency_ms: (1, 5),
            seed: 1,
            stagger_ms: 5,
            auto_claim: None,
            node_keys: false,
            per_node_ranges: None,
            statuses: false,
        }
    }
}

enum Ev {
    Tick(usize),
    Deliver {
        to: usize,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Start(usize),
}

/// The simulator.
pub struct Sim {
    cfg: SimConfig,
    agents: Vec<Option<Agent>>,
    alive: Vec<bool>,
    group: Vec<u8>,
    addr_of: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: HashMap<usize, Ev>,
    seq: u64,
    now: u64,
    rng: SmallRng,
    /// Bytes sent per node.
    pub bytes: Vec<u64>,
    /// `(time, observer, subject)` of every MemberDown seen.
    pub downs: Vec<(u64, usize, usize)>,
    /// When set, every datagram sent is kept here (fuzzing seeds).
    pub capture: Option<Vec<Vec<u8>>>,
    /// `(time, node, block)` of every confirmed block later lost.
    pub lost: Vec<(u64, usize, ipnet::IpNet)>,
    keyring: Keyring,
    trusted: Option<Arc<TrustedNodes>>,
}

fn addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 7947)
}

/// The signing key of simulated node `i` (when [`SimConfig::node_keys`]).
pub fn node_key(i: usize) -> NodeKey {
    let mut secret = [0x5a; 32];
    secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
    NodeKey::from_secret(secret)
}

fn static_block(i: usize) -> ipnet::IpNet {
    format!("10.{}.{}.0/24", 100 + (i >> 8), i & 255)
        .parse()
        .expect("valid")
}

/// The name of node `i`.
pub fn name(i: usize) -> String {
    format!("node-{i}")
}

impl Sim {
    /// A cluster of `cfg.nodes`, started one by one `stagger_ms` apart.
    pub fn new(cfg: SimConfig) -> Self {
        let keyring = Keyring::new(&[(1, crate::fuzzing::SIM_KEY)]).expect("one key");
        let n = cfg.nodes;
        let trusted = cfg.node_keys.then(|| {
            let file: String = (0..n)
                .map(|i| {
                    let allowed = match (cfg.auto_claim, cfg.per_node_ranges) {
                        (Some((pool, _)), Some(len)) => pool
                            .subnets(len)
                            .expect("len within the pool")
                            .nth(i)
                            .expect("a range per node")
                            .to_string(),
                        (Some((pool, _)), None) => pool.to_string(),
                        (None, _) => static_block(i).to_string(),
                    };
                    format!("{} {} {allowed}\n", name(i), node_key(i).public_hex())
                })
                .collect();
            Arc::new(TrustedNodes::parse(&file).expect("generated file parses"))
        });
        let mut sim = Sim {
            agents: (0..n).map(|_| None).collect(),
            alive: vec![false; n],
            group: vec![0; n],
            addr_of: (0..n).map(addr).collect(),
            index: (0..n).map(|i| (addr(i), i)).collect(),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            now: 0,
            rng: SmallRng::seed_from_u64(cfg.seed),
            bytes: vec![0; n],
            downs: Vec::new(),
            lost: Vec::new(),
            capture: None,
            keyring,
            trusted,
            cfg,
        };
        for i in 0..n {
            let at = i as u64 * sim.cfg.stagger_ms;
            sim.push(at, Ev::Start(i));
        }
        sim
    }

    /// The configuration every simulated node uses.
    pub fn agent_config(&self, i: usize) -> AgentConfig {
        let info = NodeInfo {
            underlay: vec![self.addr_of[i].ip()],
            vtep_mac: [0xee, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            vxlan: true,
            ipip: false,
            gossip: self.addr_of[i],
            boot: 0,
        };
        let mut c = AgentConfig::new(&name(i), self.addr_of[i], info, self.keyring.clone());
        c.seeds = vec![self.addr_of[0]];
        c.cluster_size_hint = self.cfg.nodes as u32;
        if let Some((pool, len)) = self.cfg.auto_claim {
            c.auto_blocks = vec![crate::agent::AutoBlock { pool, len }];
            c.rules.pools = vec![pool];
        } else {
            c.static_blocks = vec![static_block(i)];
        }
        if let Some(t) = &self.trusted {
            c.node_key = Some(node_key(i));
            c.rules.trusted = Some(Arc::clone(t));
        }
        if self.cfg.statuses {
            c.status = Some(crate::wire::NodeStatus {
                path: if i % 2 == 0 { "kernel" } else { "userspace" }.into(),
            });
        }
        c
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert(self.seq as usize, ev);
        self.queue.push(Reverse((at, self.seq, self.seq as usize)));
    }

    fn schedule_tick(&mut self, i: usize) {
        if let Some(a) = &self.agents[i] {
            let at = a.next_deadline().max(self.now);
            self.push(at, Ev::Tick(i));
        }
    }

    fn send_output(&mut self, i: usize) {
        let Some(a) = self.agents[i].as_mut() else {
            return;
        };
        let out = a.drain_output();
        let events = a.drain_events();
        for e in events {
            match e {
                Event::MemberDown(name) => {
                    if let Some(subject) = name.strip_prefix("node-").and_then(|s| s.parse().ok()) {
                        self.downs.push((self.now, i, subject));
                    }
                }
                Event::BlockLost(block) => self.lost.push((self.now, i, block)),
                _ => {}
            }
        }
        for (to, data) in out {
            self.bytes[i] += data.len() as u64;
            if let Some(c) = self.capture.as_mut() {
                c.push(data.clone());
            }
            let Some(&j) = self.index.get(&to) else {
                continue;
            };
            if self.group[i] != self.group[j] || self.rng.random_bool(self.cfg.loss) {
                continue;
            }
            let (lo, hi) = self.cfg.latency_ms;
            let at = self.now + self.rng.random_range(lo..=hi);
            let from = self.addr_of[i];
            self.push(at, Ev::Deliver { to: j, from, data });
        }
    }

    /// Runs until virtual time `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some(Reverse((at, _, id))) = self.queue.peek().copied() {
            if at > until_ms {
                break;
            }
            self.queue.pop();
            self.now = at;
            let ev = self.events.remove(&id).expect("queued event");
            match ev {
                Ev::Start(i) => {
                    let cfg = self.agent_config(i);
                    let seed = self.cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9);
                    self.agents[i] = Some(Agent::new(cfg, at, at + 1, seed));
                    self.alive[i] = true;
                    self.send_output(i);
                    self.schedule_tick(i);
                }
                Ev::Tick(i) => {
                    let Some(a) = self.agents[i].as_mut() else {
                        continue;
                    };
                    if a.next_deadline() > at {
                        continue; // superseded by a later schedule
                    }
                    a.tick(at);
                    self.send_output(i);
                    self.schedule_tick(i);
                }
                Ev::Deliver { to, from, mut data } => {
                    let Some(a) = self.agents[to].as_mut() else {
                        continue;
                    };
                    a.handle_datagram(from, &mut data, at);
                    self.send_output(to);
                    self.schedule_tick(to);
                }
            }
        }
        self.now = until_ms;
    }

    /// Virtual time now.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Node `i`'s agent, if running.
    pub fn agent(&mut self, i: usize) -> Option<&mut Agent> {
        self.agents[i].as_mut()
    }

    /// Stops node `i` abruptly (no leave message).
    pub fn kill(&mut self, i: usize) {
        self.agents[i] = None;
        self.alive[i] = false;
    }

    /// Whether node `i` runs.
    pub fn is_alive(&self, i: usize) -> bool {
        self.alive[i]
    }

    /// Splits the network: nodes in different groups cannot talk.
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u8) {
        for i in 0..self.cfg.nodes {
            self.group[i] = group_of(i);
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    /// Changes the loss rate.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// How many running nodes see all other running nodes as up.
    pub fn converged_members(&self) -> usize {
        let live = self.alive.iter().filter(|a| **a).count();
        self.agents
            .iter()
            .flatten()
            .filter(|a| a.members().iter().filter(|m| m.2).count() + 1 >= live)
            .count()
    }

    /// How many running nodes hold `key` at `version` or newer.
    pub fn holders(&self, key: &Key, version: crate::record::Version) -> usize {
        self.agents
            .iter()
            .flatten()
            .filter(|a| a.has(key, version))
            .count()
    }

    /// Runs until every running node sees every other one up (checking
    /// every 100 ms), or `deadline_ms`; returns the time, if reached.
    pub fn run_until_converged(&mut self, deadline_ms: u64) -> Option<u64> {
        let live = || ();
        live();
        while self.now < deadline_ms {
            let t = self.now + 100;
            self.run_until(t);
            let running = self.alive.iter().filter(|a| **a).count();
            if running == self.cfg.nodes && self.converged_members() == running {
                return Some(self.now);
            }
        }
        None
    }

    /// Every `step_ms`, asks each running node in `who` that holds fewer
    /// than `want` blocks for one more (as weftd does when its pods fill
    /// their blocks), until all of them hold `want` or `limit_ms` passed;
    /// checks at every step that no two nodes hold overlapping blocks.
    pub fn claim_on_demand(
        &mut self,
        who: impl Fn(usize) -> bool,
        want: usize,
        step_ms: u64,
        limit_ms: u64,
    ) -> ClaimRun {
        let t0 = self.now;
        let mut run = ClaimRun::default();
        while self.now < t0 + limit_ms {
            let mut short = 0;
            for i in (0..self.cfg.nodes).filter(|i| who(*i)) {
                let now = self.now;
                let Some(a) = self.agents[i].as_mut() else {
                    continue;
                };
                if a.local_blocks().len() >= want {
                    continue;
                }
                short += 1;
                match a.claim_another(true, now) {
                    Ok(_) => {}
                    Err(crate::agent::NoBlock::NoQuorum) => run.no_quorum += 1,
                    Err(_) => run.exhausted += 1,
                }
                self.send_output(i);
                self.schedule_tick(i);
            }
            run.overlaps += self.overlapping_holders() as u64;
            if short == 0 {
                run.all_held_ms = Some(self.now - t0);
                break;
            }
            let t = self.now + step_ms;
            self.run_until(t);
        }
        run
    }

    /// Blocks on demand at scale: `nodes` nodes, 10 % loss, all asking
    /// for a second block at once; then a 70/30 partition, and every node
    /// asking for up to `want` blocks (the majority side gets them, the
    /// minority should be refused: no quorum; what it got is counted);
    /// then the heal, and the minority's claims. Checked at every 250 ms step: no two nodes ever hold
    /// overlapping blocks; at the end no node ever lost a block it held,
    /// and every node agrees on every owner. An error says what broke.
    pub fn claims_on_demand_scenario(
        nodes: usize,
        want: usize,
        seed: u64,
    ) -> Result<ClaimScenario, String> {
        let mut sim = Sim::new(SimConfig {
            nodes,
            loss: 0.1,
            seed,
            stagger_ms: 0,
            auto_claim: Some(("10.0.0.0/12".parse().expect("valid"), 26)),
            ..SimConfig::default()
        });
        sim.run_until_converged(600_000).ok_or("never converged")?;
        let t = sim.now();
        sim.run_until(t + 10_000);
        let first = sim.claim_on_demand(|_| true, 2, 250, 60_000);
        let second_block_ms = first
            .all_held_ms
            .ok_or(format!("second blocks: {first:?}"))?;
        let minority = |i: usize| i % 10 >= 7;
        sim.partition(|i| u8::from(minority(i)));
        let t = sim.now();
        sim.run_until(t + 30_000);
        let during = sim.claim_on_demand(|_| true, want, 250, 60_000);
        // The majority side must have all it asked for; blocks the minority
        // side got during the partition are counted (the quorum is
        // probabilistic; the test asserts none at 30 nodes).
        let mut minority_claims = 0;
        for i in 0..nodes {
            let held = sim.agents[i].as_ref().map_or(0, |a| a.local_blocks().len());
            if minority(i) {
                minority_claims += held.saturating_sub(2);
            } else if held != want {
                let seen = sim.agents[i].as_ref().map(|a| a.quorum_count(sim.now));
                return Err(format!(
                    "during the partition node {i} holds {held}, not {want} ((up, known): {seen:?})"
                ));
            }
        }
        sim.heal();
        let after = sim.claim_on_demand(|_| true, want, 250, 120_000);
        let after_heal_ms = after
            .all_held_ms
            .ok_or(format!("after the heal: {after:?}"))?;
        // Until every node's view of the owners agrees (anti-entropy with
        // one random member every 2 s, at 10 % loss), at most 120 s.
        let t = sim.now();
        let agree = |sim: &Sim| {
            let now = sim.now;
            let mut views = sim.agents.iter().flatten().map(|a| a.view(now).blocks);
            let first = views.next();
            views.all(|v| Some(&v) == first.as_ref())
        };
        while sim.now < t + 120_000 && !agree(&sim) {
            let next = sim.now + 1_000;
            sim.run_until(next);
        }
        let agreed_ms = sim.now - t;
        for run in [&first, &during, &after] {
            if run.overlaps > 0 || run.exhausted > 0 {
                return Err(format!("{run:?}"));
            }
        }
        if !sim.lost.is_empty() {
            return Err(format!("blocks lost after being held: {:?}", sim.lost));
        }
        let now = sim.now();
        let view0 = sim.agents[0]
            .as_ref()
            .ok_or("node 0 runs")?
            .view(now)
            .blocks;
        if view0.len() != nodes * want {
            return Err(format!(
                "{} blocks owned, not {}",
                view0.len(),
                nodes * want
            ));
        }
        for (i, a) in sim.agents.iter().enumerate() {
            let a = a.as_ref().ok_or("every node runs")?;
            if a.view(now).blocks != view0 {
                return Err(format!("node {i} sees other owners"));
            }
            if a.local_blocks()
                .iter()
                .any(|b| view0.get(b) != Some(&name(i)))
            {
                return Err(format!("node {i} uses a block others do not see as its"));
            }
        }
        Ok(ClaimScenario {
            second_block_ms,
            after_heal_ms,
            agreed_ms,
            minority_claims,
            no_quorum: during.no_quorum,
            blocks: view0.len(),
        })
    }

    /// Pairs of running nodes whose held blocks overlap right now.
    pub fn overlapping_holders(&self) -> usize {
        let mut held: Vec<(ipnet::IpNet, usize)> = Vec::new();
        for (i, a) in self.agents.iter().enumerate() {
            if let Some(a) = a {
                held.extend(a.local_blocks().into_iter().map(|b| (b, i)));
            }
        }
        held.sort();
        held.windows(2)
            .filter(|w| w[0].1 != w[1].1 && (w[0].0.contains(&w[1].0) || w[1].0.contains(&w[0].0)))
            .count()
    }

    /// Publishes an endpoint on node `i` and measures, checking every
    /// `step_ms`, when 99.9 % and 100 % of running nodes hold it (ms after
    /// publication; `None` if not within `limit_ms`).
    pub fn disseminate(&mut self, i: usize, ip: IpAddr, step_ms: u64, limit_ms: u64) -> Spread {
        let t0 = self.now;
        let a = self.agents[i].as_mut().expect("node runs");
        a.upsert_endpoint(ip, [2, 0, 0, 0, 0, 1], t0);
        let version = a.last_version();
        self.send_output(i);
        self.schedule_tick(i);
        let key = Key::Endpoint { owner: name(i), ip };
        let running = self.alive.iter().filter(|a| **a).count();
        let need = (running as f64 * 0.999).ceil() as usize;
        let mut spread = Spread::default();
        while self.now < t0 + limit_ms {
            let t = self.now + step_ms;
            self.run_until(t);
            let n = self.holders(&key, version);
            if n >= need && spread.p999_ms.is_none() {
                spread.p999_ms = Some(self.now - t0);
            }
            if n >= running {
                spread.all_ms = Some(self.now - t0);
                break;
            }
        }
        spread
    }
}

/// What a run of on-demand block claims did ([`Sim::claim_on_demand`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRun {
    /// ms until every running node held the blocks it wanted (`None`: not
    /// within the limit).
    pub all_held_ms: Option<u64>,
    /// Requests refused because the node saw no majority up.
    pub no_quorum: u64,
    /// Requests refused because the pool was exhausted.
    pub exhausted: u64,
    /// Times two nodes held overlapping blocks at a check (pods in both
    /// would get the same addresses): must stay 0.
    pub overlaps: u64,
}

/// What [`Sim::claims_on_demand_scenario`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimScenario {
    /// Virtual ms until every node held two blocks (all asking at once).
    pub second_block_ms: u64,
    /// Virtual ms after the heal until every node held all it wanted.
    pub after_heal_ms: u64,
    /// Virtual ms after that until every node's view of the owners agreed.
    pub agreed_ms: u64,
    /// Blocks the minority side claimed during the partition.
    pub minority_claims: usize,
    /// Requests the minority side's nodes had refused for want of a quorum.
    pub no_quorum: u64,
    /// Blocks owned in the end (nodes × wanted).
    pub blocks: usize,
}

/// How fast a record spread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    /// ms until 99.9 % of nodes held it.
    pub p999_ms: Option<u64>,
    /// ms until every node held it.
    pub all_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_learns_each_peers_data_path() {
        let mut sim = Sim::new(SimConfig {
            nodes: 6,
            loss: 0.05,
            statuses: true,
            node_keys: true,
            ..SimConfig::default()
        });
        sim.run_until_converged(60_000).expect("converges");
        let t = sim.now();
        sim.run_until(t + 5_000);
        let path_of = |i: usize| if i % 2 == 0 { "kernel" } else { "userspace" };
        for i in 0..6 {
            let members = sim.agent(i).unwrap().member_info();
            assert_eq!(members.len(), 5, "node {i}: {members:?}");
            for m in members {
                let peer: usize = m.name.trim_start_matches("node-").parse().unwrap();
                let said = m.status.map(|s| s.path);
                assert_eq!(
                    said.as_deref(),
                    Some(path_of(peer)),
                    "node {i} on {}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn a_small_cluster_converges_spreads_and_detects_a_death() {
        let mut sim = Sim::new(SimConfig {
            nodes: 8,
            loss: 0.1,
            ..SimConfig::default()
        });
        let t = sim.run_until_converged(60_000).expect("converges");
        assert!(t < 60_000);
        let s = sim.disseminate(3, "10.103.0.9".parse().unwrap(), 10, 10_000);
        assert!(s.all_ms.is_some(), "{s:?}");
        // Round-trip times are measured (latency 1-5 ms each way).
        let t = sim.now();
        sim.run_until(t + 20_000);
        let members = sim.agent(0).unwrap().member_info();
        let measured: Vec<u64> = members.iter().filter_map(|m| m.rtt_us).collect();
        assert!(measured.len() >= 4, "{members:?}");
        assert!(
            measured.iter().all(|r| (2_000..=10_000).contains(r)),
            "{measured:?}"
        );
        sim.kill(5);
        let killed_at = sim.now();
        sim.run_until(killed_at + 30_000);
        let observers: std::collections::BTreeSet<usize> = sim
            .downs
            .iter()
            .filter(|(at, _, subject)| *subject == 5 && *at >= killed_at)
            .map(|(_, o, _)| *o)
            .collect();
        assert_eq!(observers.len(), 7, "every live node saw node 5 die");
        let false_positives = sim.downs.iter().filter(|(_, _, s)| *s != 5).count();
        assert_eq!(false_positives, 0);
        // The view everywhere lost node 5's block.
        let now = sim.now();
        let view = sim.agent(0).unwrap().view(now);
        assert!(!view.nodes.contains_key("node-5"));
        assert_eq!(view.nodes.len(), 7);
        assert_eq!(view.blocks.len(), 7);
    }

    #[test]
    fn nodes_starting_together_claim_distinct_blocks() {
        // A pool with exactly as many blocks as nodes: every node's first
        // pick collides with somebody's; the losers must move.
        for seed in 1..4 {
            let nodes = 16;
            let mut sim = Sim::new(SimConfig {
                nodes,
                stagger_ms: 0,
                loss: 0.05,
                seed,
                auto_claim: Some(("10.244.0.0/24".parse().unwrap(), 28)),
                ..SimConfig::default()
            });
            sim.run_until(60_000);
            let mut held = std::collections::BTreeMap::new();
            for i in 0..nodes {
                let blocks = sim.agent(i).unwrap().local_blocks();
                assert_eq!(blocks.len(), 1, "node {i} holds one block");
                if let Some(other) = held.insert(blocks[0], i) {
                    panic!("seed {seed}: nodes {other} and {i} both hold {}", blocks[0]);
                }
            }
            // No node ever had to give up a block it had confirmed (so no
            // pod address was handed out from a contested block).
            assert!(sim.lost.is_empty(), "{:?}", sim.lost);
            // And every node agrees on who owns what.
            let now = sim.now();
            let view0 = sim.agent(0).unwrap().view(now).blocks;
            assert_eq!(view0.len(), nodes);
            for i in 1..nodes {
                assert_eq!(sim.agent(i).unwrap().view(now).blocks, view0);
            }
        }
    }

    #[test]
    fn with_allowed_ranges_nodes_claim_inside_their_own() {
        // A shared pool, each node's allowed range in the trusted-nodes
        // file a /27 of it: automatic claims must come from there (others
        // refuse claims outside), so every node still gets a block.
        let nodes = 8;
        let pool: ipnet::IpNet = "10.244.0.0/24".parse().unwrap();
        let mut sim = Sim::new(SimConfig {
            nodes,
            stagger_ms: 0,
            auto_claim: Some((pool, 29)),
            node_keys: true,
            per_node_ranges: Some(27),
            ..SimConfig::default()
        });
        sim.run_until(30_000);
        let now = sim.now();
        let view0 = sim.agent(0).unwrap().view(now).blocks;
        assert_eq!(view0.len(), nodes, "{view0:?}");
        for (i, range) in pool.subnets(27).unwrap().take(nodes).enumerate() {
            let blocks = sim.agent(i).unwrap().local_blocks();
            assert_eq!(blocks.len(), 1, "node {i}");
            assert!(
                range.contains(&blocks[0]),
                "node {i}: {} outside {range}",
                blocks[0]
            );
            assert_eq!(sim.agent(i).unwrap().view(now).blocks, view0, "node {i}");
            assert_eq!(
                sim.agent(i)
                    .unwrap()
                    .counters()
                    .dropped("record_not_allowed"),
                0
            );
        }
    }

    #[test]
    fn same_seed_same_run() {
        let run = || {
            let mut sim = Sim::new(SimConfig {
                nodes: 6,
                loss: 0.05,
                seed: 7,
                ..SimConfig::default()
            });
            sim.run_until(8_000);
            sim.bytes.clone()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn many_nodes_claim_more_blocks_at_once_under_loss_and_partition() {
        let r = Sim::claims_on_demand_scenario(30, 4, 7).unwrap();
        assert!(r.no_quorum > 0, "the minority side was refused: {r:?}");
        assert_eq!(r.minority_claims, 0, "{r:?}");
    }

    #[test]
    fn an_emptied_block_is_given_back_but_never_the_last() {
        let mut sim = Sim::new(SimConfig {
            nodes: 3,
            auto_claim: Some(("10.0.0.0/24".parse().unwrap(), 28)),
            ..SimConfig::default()
        });
        sim.run_until_converged(30_000).expect("converges");
        let t = sim.now();
        sim.run_until(t + 5_000);
        let run = sim.claim_on_demand(|i| i == 0, 3, 250, 20_000);
        assert!(run.all_held_ms.is_some(), "{run:?}");
        let now = sim.now();
        let blocks = sim.agent(0).unwrap().local_blocks();
        assert_eq!(blocks.len(), 3);
        let a = sim.agent(0).unwrap();
        assert!(a.release_block(blocks[0], now), "a base block can go too");
        assert!(a.release_block(blocks[2], now));
        assert!(!a.release_block(blocks[1], now), "the last one stays");
        assert!(!a.release_block(blocks[0], now), "not held any more");
        assert_eq!(a.local_blocks(), vec![blocks[1]]);
        sim.send_output(0);
        sim.schedule_tick(0);
        sim.run_until(now + 5_000);
        let now = sim.now();
        for i in 0..3 {
            let owned: Vec<_> = sim
                .agent(i)
                .unwrap()
                .view(now)
                .blocks
                .into_iter()
                .filter(|(_, o)| o == "node-0")
                .map(|(b, _)| b)
                .collect();
            assert_eq!(owned, vec![blocks[1]], "node {i} sees the release");
        }
        // Another node can claim what was given back: the pool has 16
        // blocks, nodes 0 and 2 hold one each.
        let run = sim.claim_on_demand(|i| i == 1, 14, 250, 60_000);
        assert!(run.all_held_ms.is_some(), "{run:?}");
        let mine = sim.agent(1).unwrap().local_blocks();
        assert!(mine.contains(&blocks[0]) && mine.contains(&blocks[2]));
        let now = sim.now();
        assert_eq!(
            sim.agent(1).unwrap().claim_another(true, now),
            Err(crate::agent::NoBlock::Exhausted)
        );
    }

    #[test]
    fn a_healed_partition_converges_again() {
        let mut sim = Sim::new(SimConfig {
            nodes: 5,
            ..SimConfig::default()
        });
        sim.run_until_converged(30_000).expect("converges");
        sim.partition(|i| u8::from(i >= 3));
        let t = sim.now();
        sim.run_until(t + 20_000);
        // During the partition, each side sees the other down, and writes
        // on one side do not reach the other.
        let s = sim.disseminate(4, "10.104.0.7".parse().unwrap(), 50, 3_000);
        assert!(s.all_ms.is_none());
        sim.heal();
        let t = sim.now();
        sim.run_until(t + 40_000);
        assert_eq!(sim.converged_members(), 5);
        let key = Key::Endpoint {
            owner: name(4),
            ip: "10.104.0.7".parse().unwrap(),
        };
        let v = sim.agent(4).unwrap().last_version();
        assert_eq!(sim.holders(&key, v), 5, "anti-entropy carried it across");
    }

    #[test]
    fn with_node_keys_an_insider_cannot_write_in_another_nodes_name() {
        use crate::auth::Sealer;
        use crate::record::{Record, Value, Version};
        use crate::wire::Body;
        let mut sim = Sim::new(SimConfig {
            nodes: 6,
            node_keys: true,
            ..SimConfig::default()
        });
        // Signed records cross relays and anti-entropy: the cluster
        // converges as it does without keys.
        sim.run_until_converged(30_000)
            .expect("converges with node keys");
        let now = sim.now();
        let before = sim.agent(0).unwrap().view(now);
        assert_eq!(before.nodes.len(), 6);
        assert_eq!(before.blocks.len(), 6);
        // Node 2 holds the cluster key and its own node key. It writes, in
        // node 1's name, a node record pointing node 1's traffic at its own
        // underlay and an endpoint in node 1's block; and, in its own name,
        // a claim on node 1's block dated before node 1's (0 = configured).
        let far = Version {
            epoch: u64::MAX / 2,
            counter: 1,
        };
        let mut redirect = before.nodes["node-1"].clone();
        redirect.underlay = vec![sim.addr_of[2].ip()];
        let insider = node_key(2);
        let forged = vec![
            insider.sign(Record {
                key: Key::Node { owner: name(1) },
                version: far,
                value: Value::Node(redirect),
            }),
            insider.sign(Record {
                key: Key::Endpoint {
                    owner: name(1),
                    ip: "10.100.1.66".parse().unwrap(),
                },
                version: far,
                value: Value::Endpoint { mac: [2; 6] },
            }),
            insider.sign(Record {
                key: Key::Claim {
                    owner: name(2),
                    block: static_block(1),
                },
                version: far,
                value: Value::Claim { claimed_at: 0 },
            }),
        ];
        let mut body = Vec::new();
        Body::Records(forged.clone()).encode(&mut body);
        // Sent in its own name, signed with its own key, the datagram is
        // accepted; the records in it are checked one by one.
        let mut datagram = Vec::new();
        let sender = |i: usize| crate::state::fnv(name(i).as_bytes());
        Sealer::new(sim.keyring.clone(), sender(2), now, false)
            .with_signer(insider.signing_key())
            .seal(&body, &mut datagram);
        let from = sim.addr_of[2];
        let keyring = sim.keyring.clone();
        let a = sim.agent(0).unwrap();
        a.handle_datagram(from, &mut datagram, now);
        let c = a.counters();
        assert_eq!(c.dropped("record_bad_signature"), 2, "{c:?}");
        assert_eq!(c.dropped("record_not_allowed"), 1, "{c:?}");
        // Datagrams with only the cluster key, or in node 1's name with the
        // insider's key, are refused before anything in them is read.
        for (id, signer, reason) in [
            (sender(2), None, "auth_unsigned"),
            (sender(1), Some(insider.signing_key()), "auth_bad_signature"),
            (
                sender(99),
                Some(insider.signing_key()),
                "auth_unknown_sender",
            ),
        ] {
            let mut s = Sealer::new(keyring.clone(), id, now + 1, false);
            if let Some(k) = signer {
                s = s.with_signer(k);
            }
            s.seal(&body, &mut datagram);
            a.handle_datagram(from, &mut datagram, now);
            assert_eq!(a.counters().dropped(reason), 1, "{reason}");
        }
        // In SWIM, too, it speaks only for itself: a ping whose header
        // names node 1 as its source, in a datagram node 2 signed, is
        // refused; the same ping naming node 2 goes to foca.
        let ping_from = |i: usize| {
            use foca::Codec;
            let header = foca::Header {
                src: crate::member::Member {
                    name: name(i),
                    addr: from,
                    boot: 1,
                },
                src_incarnation: 0,
                dst: crate::member::Member {
                    name: name(0),
                    addr: from,
                    boot: 1,
                },
                message: foca::Message::Ping(7),
            };
            let mut packet = Vec::new();
            foca::PostcardCodec
                .encode_header(&header, &mut packet)
                .unwrap();
            let mut body = Vec::new();
            Body::Swim(&packet).encode(&mut body);
            body
        };
        let mut signed_by_2 = Sealer::new(keyring.clone(), sender(2), now + 2, false)
            .with_signer(insider.signing_key());
        for (i, wrong) in [(1, 1), (2, 1)] {
            signed_by_2.seal(&ping_from(i), &mut datagram);
            a.handle_datagram(from, &mut datagram, now);
            assert_eq!(
                a.counters().dropped("swim_wrong_sender"),
                wrong,
                "ping from {i}"
            );
        }
        // The same records broadcast through SWIM by the insider (foca
        // relays them as they come): refused everywhere, nothing changes.
        let t0 = sim.now();
        for r in &forged {
            sim.agent(2).unwrap().broadcast_raw(&r.encode(), t0);
        }
        let t = sim.now();
        sim.run_until(t + 10_000);
        let now = sim.now();
        for i in [0, 1, 3, 4, 5] {
            let v = sim.agent(i).unwrap().view(now);
            assert_eq!(v.nodes, before.nodes, "node {i}");
            assert_eq!(v.blocks, before.blocks, "node {i}");
            assert!(!v.endpoints.contains_key(&"10.100.1.66".parse().unwrap()));
        }
        let refused: u64 = [0, 3, 4, 5]
            .iter()
            .map(|&i| {
                let c = sim.agent(i).unwrap().counters();
                c.dropped("record_bad_signature") + c.dropped("record_not_allowed")
            })
            .sum();
        assert!(refused > 3, "the broadcasts were refused too: {refused}");
    }
}
