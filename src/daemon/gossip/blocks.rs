//! The node's blocks as weftd manages them for the CNI plugin: the blocks
//! file it publishes, more blocks claimed when the plugin finds them full,
//! (on request, and ahead of demand) and emptied ones given back.
//!
//! The CNI plugin reads the blocks file under its IPAM lock
//! (`cni::ipam::Store::allocate`). weftd gives a block back under the same
//! lock: it checks that no address of the block is allocated, takes the
//! block out of the agent and rewrites the file before the lock is
//! released, so an address is never handed out from a block being given
//! away.

use crate::cni::ipam;
use control::Agent;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::time::Duration;

/// Writes `{"blocks": [...], "mtu": N, "claims": [{"block",
/// "claimed_at"}]}` atomically (temp file + rename): the CNI plugin reads
/// `blocks` and the overlay MTU pods get (`mtu`); weftd reads `claims`
/// back after a restart.
pub fn write_blocks_file(
    path: &Path,
    blocks: &[IpNet],
    overlay_mtu: usize,
    claims: &[(IpNet, u64)],
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp: PathBuf = path.with_extension("tmp");
    let v = serde_json::json!({
        "blocks": blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
        "mtu": overlay_mtu,
        "claims": claims.iter().map(|(b, at)| serde_json::json!({
            "block": b.to_string(), "claimed_at": at,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&tmp, v.to_string())?;
    std::fs::rename(&tmp, path)
}

/// The claims recorded in a blocks file by an earlier run (none if the
/// file is missing or unreadable: the node then claims afresh).
pub fn read_previous_claims(path: &Path) -> Vec<(IpNet, u64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    v.get("claims")
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let block = c.get("block")?.as_str()?.parse().ok()?;
                    Some((block, c.get("claimed_at")?.as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A request from the CNI plugin (through the endpoints socket) for one
/// more block of a family, with where the answer goes.
pub struct BlockRequest {
    /// IPv4 (else IPv6).
    pub v4: bool,
    /// `Ok` once a new block is published; `Err` says why none comes.
    pub reply: SyncSender<Result<(), String>>,
}

/// The endpoints socket's way to the control plane's block claims.
#[derive(Clone)]
pub struct BlockRequests {
    tx: Sender<BlockRequest>,
    gossip_addr: SocketAddr,
}

/// A one-byte datagram to the gossip socket from the node's own address:
/// wakes the gossip thread (sealed datagrams are never one byte).
const WAKE: [u8; 1] = [0];

/// True for [`WAKE`] sent from this node's gossip address.
pub fn is_wake(datagram: &[u8], from: SocketAddr, gossip_addr: SocketAddr) -> bool {
    datagram == WAKE && from.ip() == gossip_addr.ip()
}

/// The pair of ends: requests for the endpoints socket, their receiver for
/// the gossip thread listening on `gossip_addr`.
pub fn block_requests(gossip_addr: SocketAddr) -> (BlockRequests, Receiver<BlockRequest>) {
    let (tx, rx) = std::sync::mpsc::channel();
    (BlockRequests { tx, gossip_addr }, rx)
}

impl BlockRequests {
    /// Asks for another block of a family and waits (at most `wait`) until
    /// one is published.
    pub fn ask(&self, v4: bool, wait: Duration) -> Result<(), String> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send(BlockRequest { v4, reply })
            .map_err(|_| "the control plane is not running".to_string())?;
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.gossip_addr.ip(), 0)) {
            let _ = s.send_to(&WAKE, self.gossip_addr);
        }
        answer
            .recv_timeout(wait)
            .map_err(|_| format!("no new block was claimed within {wait:?}"))?
    }
}

/// Requests waiting for a block of their family to be published.
#[derive(Default)]
pub struct Waiters {
    waiting: Vec<(BlockRequest, usize, u64)>,
}

/// How long weftd keeps a request waiting (the plugin gives up after 15 s).
const WAIT_MS: u64 = 12_000;

fn count(blocks: &[IpNet], v4: bool) -> usize {
    blocks.iter().filter(|b| b.addr().is_ipv4() == v4).count()
}

impl Waiters {
    /// Starts a claim for `req` (or joins the one under way); answers at
    /// once if none can be made.
    pub fn add(&mut self, req: BlockRequest, agent: &mut Agent, published: &[IpNet], now: u64) {
        match agent.claim_another(req.v4, now) {
            Ok(_) => {
                tracing::info!(
                    ipv4 = req.v4,
                    "the CNI plugin found the blocks full: claiming another"
                );
                let have = count(published, req.v4);
                self.waiting.push((req, have, now + WAIT_MS));
            }
            Err(e) => {
                tracing::warn!(ipv4 = req.v4, "no further block: {e}");
                let _ = req.reply.send(Err(e.to_string()));
            }
        }
    }

    /// Answers every request whose family has more blocks `published` than
    /// when it came, and drops the expired ones.
    pub fn answer(&mut self, published: &[IpNet], now: u64) {
        self.waiting.retain(|(req, have, until)| {
            if count(published, req.v4) > *have {
                let _ = req.reply.send(Ok(()));
                false
            } else if now >= *until {
                let _ = req
                    .reply
                    .send(Err("the claim did not settle in time".into()));
                false
            } else {
                true
            }
        });
    }

    /// Whether any request waits (the gossip thread then wakes often).
    pub fn any(&self) -> bool {
        !self.waiting.is_empty()
    }
}

/// Free pod addresses in the held blocks of one family.
fn free_in(held: &[IpNet], v4: bool, allocs: &[ipam::Allocation]) -> (u128, u128) {
    let family: Vec<&IpNet> = held.iter().filter(|b| b.addr().is_ipv4() == v4).collect();
    let total: u128 = family.iter().map(|b| ipam::pod_addresses(b)).sum();
    let used = allocs
        .iter()
        .filter(|a| family.iter().any(|b| b.contains(&a.ip)))
        .count() as u128;
    // A quarter of a block: what the family keeps free ahead of demand.
    let low = family.first().map_or(0, |b| ipam::pod_addresses(b) / 4);
    (total.saturating_sub(used), low)
}

/// Keeps the node's automatic blocks in step with its pods: claims the
/// next block of a family before it is needed (when fewer than a quarter
/// of a block's addresses are free), so that ADD rarely waits for a claim
/// to settle; gives back a block that stayed empty for the grace period,
/// unless that would leave less than that headroom.
pub struct BlockKeeper {
    store_dir: PathBuf,
    after_ms: u64,
    empty_since: HashMap<IpNet, u64>,
    next_check: u64,
    refused: [Option<String>; 2],
}

impl BlockKeeper {
    /// Watches the CNI plugin's IPAM state in `cni_state_dir`; a block is
    /// given back after `after_ms` without an allocated address.
    pub fn new(cni_state_dir: &Path, after_ms: u64) -> Self {
        BlockKeeper {
            store_dir: cni_state_dir.join("ipam"),
            after_ms,
            empty_since: HashMap::new(),
            next_check: 0,
            refused: [None, None],
        }
    }

    /// About every second: claims ahead where a family runs short, notes
    /// which held blocks are empty, and gives back those empty for long
    /// enough (under the IPAM lock, rewriting the blocks file with
    /// `write`). Returns the blocks given back.
    pub fn run(
        &mut self,
        agent: &mut Agent,
        now: u64,
        write: impl Fn(&[IpNet], &[(IpNet, u64)]) -> std::io::Result<()>,
    ) -> Vec<IpNet> {
        if now < self.next_check {
            return Vec::new();
        }
        self.next_check = now + (self.after_ms / 4).clamp(250, 1_000);
        let held: Vec<IpNet> = agent.held_claims().into_iter().map(|(b, _)| b).collect();
        if held.is_empty() || !self.store_dir.join("allocations.json").exists() {
            self.empty_since.clear();
            return Vec::new();
        }
        let store = match ipam::Store::open(&self.store_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("blocks: cannot read the IPAM state: {e}");
                return Vec::new();
            }
        };
        let Ok(allocs) = store.allocations() else {
            return Vec::new();
        };
        self.claim_ahead(agent, &held, &allocs, now);
        let in_use =
            |allocs: &[ipam::Allocation], b: &IpNet| allocs.iter().any(|a| b.contains(&a.ip));
        self.empty_since.retain(|b, _| held.contains(b));
        for b in &held {
            if in_use(&allocs, b) {
                self.empty_since.remove(b);
            } else {
                self.empty_since.entry(*b).or_insert(now);
            }
        }
        let mut due: Vec<IpNet> = self
            .empty_since
            .iter()
            .filter(|(_, since)| now >= **since + self.after_ms)
            .map(|(b, _)| *b)
            .collect();
        due.sort();
        let mut given = Vec::new();
        for block in due {
            let outcome = store.with_lock(|allocs| {
                let held: Vec<IpNet> = agent.held_claims().into_iter().map(|(b, _)| b).collect();
                let (free, low) = free_in(&held, block.addr().is_ipv4(), allocs);
                let keeps_headroom = free.saturating_sub(ipam::pod_addresses(&block)) >= low;
                if in_use(allocs, &block) || !keeps_headroom || !agent.releasable(block) {
                    return Ok::<bool, std::io::Error>(false);
                }
                // The file first: should it fail, the block stays ours.
                let blocks: Vec<IpNet> = agent
                    .local_blocks()
                    .into_iter()
                    .filter(|b| *b != block)
                    .collect();
                let claims: Vec<(IpNet, u64)> = agent
                    .held_claims()
                    .into_iter()
                    .filter(|c| c.0 != block)
                    .collect();
                write(&blocks, &claims)?;
                Ok(agent.release_block(block, now))
            });
            match outcome {
                Ok(Ok(true)) => {
                    tracing::info!(%block, "empty block given back");
                    self.empty_since.remove(&block);
                    given.push(block);
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(%block, "blocks file not rewritten: {e}"),
                Err(e) => tracing::warn!(%block, "blocks: IPAM lock: {e}"),
            }
        }
        given
    }

    /// Starts a claim for each family with less than its headroom free
    /// (a refusal is logged once until it changes).
    fn claim_ahead(
        &mut self,
        agent: &mut Agent,
        held: &[IpNet],
        allocs: &[ipam::Allocation],
        now: u64,
    ) {
        for (slot, v4) in [(0, true), (1, false)] {
            if !held.iter().any(|b| b.addr().is_ipv4() == v4) {
                continue;
            }
            let (free, low) = free_in(held, v4, allocs);
            if free >= low {
                self.refused[slot] = None;
                continue;
            }
            match agent.claim_another(v4, now) {
                Ok(control::Claiming::Started) => {
                    tracing::info!(ipv4 = v4, free = %free, "claiming the next block ahead of demand");
                    self.refused[slot] = None;
                }
                Ok(control::Claiming::AlreadyUnderWay) => {}
                Err(e) => {
                    let why = e.to_string();
                    if self.refused[slot].as_ref() != Some(&why) {
                        tracing::warn!(ipv4 = v4, free = %free, "cannot claim ahead: {why}");
                        self.refused[slot] = Some(why);
                    }
                }
            }
        }
    }
}
