//! weftd's side of the control plane: a UDP socket and a clock around the
//! sans-I/O [`control::Agent`], the view written into fdb, the node's
//! usable blocks written for the CNI plugin, and a status for stats.
//!
//! One plain thread: control traffic is a few datagrams a second, and a
//! poll of its sockets (one per underlay family it tunnels over) with a
//! timeout set to the agent's next deadline is all the scheduling it
//! needs.

mod blocks;
mod sockets;

pub use blocks::{
    block_requests, read_previous_claims, write_blocks_file, BlockRequest, BlockRequests,
};

use crate::config::Config;
use crate::daemon::endpoints::EndpointEvent;
use control::identity::{NodeKey, TrustedNodes};
use control::{Agent, AgentConfig, AutoBlock, Event, Keyring, NodeInfo, Rules};
use fdb::Fdb;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the control plane reports (stats file, weftctl, metrics).
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Counters, drops by reason included.
    pub counters: control::Counters,
    /// Members with state and round-trip time.
    pub members: Vec<control::MemberInfo>,
    /// This node's usable blocks.
    pub blocks: Vec<IpNet>,
    /// Joined a cluster.
    pub joined: bool,
    /// Pod endpoints in the view (all nodes).
    pub endpoints: usize,
    /// Seconds from start until this node joined the cluster.
    pub join_seconds: Option<f64>,
    /// Seconds from start until this node held a usable block.
    pub block_seconds: Option<f64>,
    /// The last failure detection: seconds from the last datagram heard
    /// from a member until it was declared down.
    pub last_failure_detection_seconds: Option<f64>,
    /// Members declared down so far.
    pub member_downs: u64,
    /// Nodes in the trusted-nodes file in force (node keys), if any.
    pub trusted_nodes: Option<usize>,
}

impl Status {
    /// The status as JSON (the `gossip` object of the stats file).
    pub fn to_json(&self) -> serde_json::Value {
        let up = self.members.iter().filter(|m| m.up).count();
        serde_json::json!({
            "joined": self.joined,
            "members_up": up,
            "members_down": self.members.len() - up,
            "members": self.members.iter().map(|m| serde_json::json!({
                "name": m.name, "addr": m.addr.to_string(), "up": m.up, "rtt_us": m.rtt_us,
                "path": m.status.as_ref().map(|s| s.path.clone()),
            })).collect::<Vec<_>>(),
            "blocks": self.blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            "received": self.counters.received,
            "sent": self.counters.sent,
            "bytes_sent": self.counters.bytes_sent,
            "records": self.counters.records,
            "endpoints": self.endpoints,
            "join_seconds": self.join_seconds,
            "block_seconds": self.block_seconds,
            "last_failure_detection_seconds": self.last_failure_detection_seconds,
            "member_downs": self.member_downs,
            "trusted_nodes": self.trusted_nodes,
            "drops": self.counters.dropped,
        })
    }
}

/// A running control plane.
#[derive(Clone)]
pub struct Handle {
    /// The latest status.
    pub status: Arc<Mutex<Status>>,
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Reads the keyring file; errors name the file and line.
pub fn load_keyring(path: &Path) -> Result<Keyring, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("gossip.key_file: cannot read {}: {e}", path.display()))?;
    Keyring::parse(&text).map_err(|e| format!("gossip.key_file: {}: {e}", path.display()))
}

/// Reads this node's signing key; errors name the key, file and line.
pub fn load_node_key(path: &Path) -> Result<NodeKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("gossip.node_key_file: cannot read {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "gossip.node_key_file is readable by others than its owner; chmod 600 it"
            );
        }
    }
    NodeKey::parse(&text).map_err(|e| format!("gossip.node_key_file: {}: {e}", path.display()))
}

/// Reads the trusted-nodes file and checks that it lists `name` with the
/// public key of `key` (a node that others would refuse is a
/// misconfiguration to report at start, not after a silent failure).
pub fn load_trusted_nodes(path: &Path, name: &str, key: &NodeKey) -> Result<TrustedNodes, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("gossip.trusted_nodes_file: cannot read {shown}: {e}"))?;
    let trusted = TrustedNodes::parse(&text)
        .map_err(|e| format!("gossip.trusted_nodes_file: {shown}: {e}"))?;
    let me = trusted.get(name).ok_or_else(|| {
        format!("gossip.trusted_nodes_file: {shown}: expected a line for this node, {name:?} (its public key is {})", key.public_hex())
    })?;
    if me.key.to_bytes() != key.public() {
        return Err(format!(
            "gossip.trusted_nodes_file: {shown}: the key listed for {name:?} is not the public key of gossip.node_key_file (expected {})",
            key.public_hex()
        ));
    }
    Ok(trusted)
}

/// Watches the trusted-nodes file and reloads it when it changes (a
/// Kubernetes ConfigMap is updated in place by swapping a symlink): adding
/// a node to the cluster, or revoking one, needs no restart.
pub struct TrustedFileWatch {
    path: PathBuf,
    name: String,
    key: NodeKey,
    seen: Option<(std::time::SystemTime, u64, u64)>,
}

impl TrustedFileWatch {
    /// Watches `path` for node `name` holding `key` (the file as loaded at
    /// start counts as seen).
    pub fn new(path: &Path, name: &str, key: &NodeKey) -> Self {
        let mut w = TrustedFileWatch {
            path: path.to_path_buf(),
            name: name.to_string(),
            key: key.clone(),
            seen: None,
        };
        w.seen = w.stamp();
        w
    }

    fn stamp(&self) -> Option<(std::time::SystemTime, u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    /// The file's new content if it changed since the last call: `None` if
    /// unchanged, `Some(Err)` if it changed into something unusable (the
    /// caller keeps the trust it has).
    pub fn poll(&mut self) -> Option<Result<TrustedNodes, String>> {
        let stamp = self.stamp();
        if stamp == self.seen {
            return None;
        }
        self.seen = stamp;
        Some(load_trusted_nodes(&self.path, &self.name, &self.key))
    }
}

/// What the control plane is fed from the rest of weftd.
pub struct Inputs {
    /// The CNI plugin's endpoint changes.
    pub endpoints: Receiver<EndpointEvent>,
    /// The CNI plugin's requests for another block.
    pub block_requests: Receiver<BlockRequest>,
    /// This node's group counts, from the multicast thread.
    pub group_counts: Receiver<crate::dataplane::multicast::GroupCount>,
    /// The multicast plane, which learns the other nodes' groups (None:
    /// multicast off).
    pub multicast: Option<Arc<crate::dataplane::multicast::Multicast>>,
    /// The data path this node runs (`"kernel"` or `"userspace"`), told to
    /// its peers for their `weftctl status`.
    pub data_path: &'static str,
    /// The addresses this node's tunnels go over (the underlay address
    /// first): gossip listens on each.
    pub tunnel_addrs: Vec<IpAddr>,
}

/// Starts the control plane for node `name` at `own` addresses (the
/// underlay address first: its gossip address), fed the CNI plugin's
/// endpoint changes and block requests, and this node's groups.
pub fn start(
    cfg: &Config,
    name: &str,
    own: &[IpAddr],
    vtep_mac: [u8; 6],
    overlay_mtu: usize,
    fdb: Fdb,
    inputs: Inputs,
) -> Result<Handle, String> {
    let g = &cfg.gossip;
    let key_file = g.key_file.as_ref().ok_or("gossip.key_file is required")?;
    let keyring = load_keyring(key_file)?;
    let mut trusted_nodes = None;
    let mut trust_watch = None;
    let sock = sockets::GossipSockets::bind(&inputs.tunnel_addrs, g.port)?;
    let addr = sock.local_addr().map_err(|e| format!("gossip: {e}"))?;
    let info = NodeInfo {
        underlay: own.to_vec(),
        vtep_mac,
        // What this node receives: the encapsulation it is configured for.
        vxlan: cfg.overlay.encap == crate::config::Encap::Vxlan,
        ipip: cfg.overlay.encap == crate::config::Encap::Ipip,
        gossip: addr,
        boot: 0,
    };
    let mut acfg = AgentConfig::new(name, addr, info, keyring);
    acfg.status = Some(control::wire::NodeStatus {
        path: inputs.data_path.to_string(),
    });
    if let (Some(key_file), Some(trusted_file)) = (&g.node_key_file, &g.trusted_nodes_file) {
        let key = load_node_key(key_file)?;
        let trusted = load_trusted_nodes(trusted_file, name, &key)?;
        tracing::info!(
            trusted = trusted.len(),
            public_key = %key.public_hex(),
            "node keys: records must be signed by their owner"
        );
        trust_watch = Some(TrustedFileWatch::new(trusted_file, name, &key));
        acfg.node_key = Some(key);
        trusted_nodes = Some(Arc::new(trusted));
    }
    acfg.seeds = g.seed_addrs();
    acfg.encrypt = g.encrypt;
    acfg.accept_unsigned_datagrams = g.accept_unsigned_datagrams;
    acfg.rules = Rules {
        pools: cfg.overlay.pools.clone(),
        min_prefix_v4: cfg.overlay.block_size_v4,
        min_prefix_v6: cfg.overlay.block_size_v6,
        trusted: trusted_nodes,
        ..Rules::default()
    };
    let trusted_count = acfg.rules.trusted.as_ref().map(|t| t.len());
    acfg.static_blocks = cfg.overlay.blocks.clone();
    if cfg.overlay.blocks.is_empty() {
        acfg.auto_blocks = cfg
            .overlay
            .pools
            .iter()
            .map(|p| AutoBlock {
                pool: *p,
                len: if p.addr().is_ipv4() {
                    cfg.overlay.block_size_v4
                } else {
                    cfg.overlay.block_size_v6
                },
            })
            .collect();
    }
    acfg.previous_claims = read_previous_claims(&g.blocks_file);
    acfg.probe_period_ms = g.probe_interval_ms;
    acfg.sync_interval_ms = g.sync_interval_ms;
    acfg.dead_grace_ms = g.dead_node_grace_s * 1000;
    acfg.cluster_size_hint = g.cluster_size;
    let blocks_file = g.blocks_file.clone();
    let keeper = (cfg.overlay.blocks.is_empty())
        .then(|| blocks::BlockKeeper::new(&cfg.cni_state_dir, g.block_release_after_s * 1000));
    let status = Arc::new(Mutex::new(Status {
        trusted_nodes: trusted_count,
        ..Status::default()
    }));
    let handle = Handle {
        status: Arc::clone(&status),
    };
    std::thread::Builder::new()
        .name("weft-gossip".into())
        .spawn(move || {
            run(
                sock,
                acfg,
                fdb,
                (blocks_file, overlay_mtu),
                status,
                (inputs, keeper),
                trust_watch,
            )
        })
        .map_err(fail)?;
    Ok(handle)
}

fn run(
    sock: sockets::GossipSockets,
    acfg: AgentConfig,
    fdb: Fdb,
    (blocks_file, overlay_mtu): (PathBuf, usize),
    status: Arc<Mutex<Status>>,
    (inputs, mut keeper): (Inputs, Option<blocks::BlockKeeper>),
    mut trust_watch: Option<TrustedFileWatch>,
) {
    let Inputs {
        endpoints,
        block_requests,
        group_counts,
        multicast,
        data_path: _,
        tunnel_addrs: _,
    } = inputs;
    let clock = Instant::now();
    let now = || clock.elapsed().as_millis() as u64;
    // The epoch orders this start after every earlier one of this node.
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let seed = epoch ^ u64::from(std::process::id()).rotate_left(32);
    let mut acfg = acfg;
    acfg.wall_clock_offset_ms = epoch.saturating_sub(now());
    let mut agent = Agent::new(acfg, now(), epoch, seed);
    tracing::info!(node = agent.name(), "gossip started");
    let mut burst = Burst::default();
    let mut version = 0u64;
    let mut published: Option<Vec<IpNet>> = None;
    let mut waiters = blocks::Waiters::default();
    let gossip_addr = sock.local_addr().ok();
    let mut next_view = 0u64;
    let mut next_status = 0u64;
    let mut next_trust_check = 0u64;
    let (mut dirty, mut last_view) = (false, 0u64);
    // When each gossip address was last heard from (failure-detection time).
    let mut last_heard: std::collections::HashMap<SocketAddr, u64> = Default::default();
    loop {
        let output = agent.drain_output();
        if !output.is_empty() {
            let snap = fdb.snapshot();
            for (to, d) in output {
                if let Err(e) = sock.send_to(&d, to, &snap) {
                    tracing::debug!(%to, "gossip send: {e}");
                }
            }
        }
        for e in agent.drain_events() {
            match e {
                Event::MemberUp(n) => tracing::info!(member = %n, "member up"),
                Event::MemberDown(n) => {
                    let addr = agent.members().into_iter().find(|m| m.0 == n).map(|m| m.1);
                    let took = addr
                        .and_then(|a| last_heard.get(&a))
                        .map(|t| (now() - t) as f64 / 1000.0);
                    tracing::warn!(member = %n, detected_after_s = ?took, "member down");
                    let mut st = status.lock().expect("not poisoned");
                    st.member_downs += 1;
                    if took.is_some() {
                        st.last_failure_detection_seconds = took;
                    }
                }
                Event::Joined => {
                    tracing::info!("joined the cluster");
                    status.lock().expect("not poisoned").join_seconds = Some(now() as f64 / 1000.0);
                }
                Event::BlockClaimed(b) => tracing::info!(block = %b, "block claimed"),
                Event::BlockLost(b) => {
                    tracing::error!(block = %b, "block lost to an earlier claim; pods in it must be recreated")
                }
            }
        }
        while let Ok(ev) = endpoints.try_recv() {
            match ev {
                EndpointEvent::Added(ip, mac) => agent.upsert_endpoint(ip, mac, now()),
                EndpointEvent::Removed(ip) => agent.remove_endpoint(ip, now()),
            }
        }
        while let Ok((group, pods)) = group_counts.try_recv() {
            agent.set_group(group, pods, now());
        }
        while let Ok(req) = block_requests.try_recv() {
            let shown = published.as_deref().unwrap_or_default();
            waiters.add(req, &mut agent, shown, now());
        }
        if let Some(r) = keeper.as_mut() {
            let write = |b: &[IpNet], c: &[(IpNet, u64)]| {
                write_blocks_file(&blocks_file, b, overlay_mtu, c)
            };
            if !r.run(&mut agent, now(), write).is_empty() {
                published = Some(agent.local_blocks());
                dirty = true;
            }
        }
        let t = now();
        // The view also changes with time alone (grace periods), so it is
        // recomputed at least every second; after changes, at most every
        // 100 ms (at 100,000 endpoints a pass takes ~30 ms).
        dirty |= agent.take_changed();
        if (dirty && t >= last_view + 100) || t >= next_view {
            dirty = false;
            last_view = t;
            next_view = t + 1000;
            version += 1;
            let view = agent.view(t);
            status.lock().expect("not poisoned").endpoints = view.endpoints.len();
            if let Some(m) = &multicast {
                m.set_remote(&view.groups, agent.name());
            }
            match control::fdb_sync::sync(&fdb, &view, version) {
                Ok(st) if st.upserted + st.removed > 0 || st.refused > 0 => {
                    tracing::debug!(?st, "fdb updated from gossip")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("fdb update from gossip failed: {e}"),
            }
            let blocks = agent.local_blocks();
            // Not overwritten with nothing at start: it holds the claims this
            // node takes back after a restart until they are confirmed.
            let first_and_empty = published.is_none() && blocks.is_empty();
            if published.as_ref() != Some(&blocks) && !first_and_empty {
                match write_blocks_file(&blocks_file, &blocks, overlay_mtu, &agent.held_claims()) {
                    Ok(()) => {
                        tracing::info!(blocks = ?blocks, "blocks published for the CNI plugin");
                        published = Some(blocks.clone());
                    }
                    Err(e) => {
                        tracing::error!(file = %blocks_file.display(), "cannot write blocks: {e}")
                    }
                }
            }
        }
        waiters.answer(published.as_deref().unwrap_or_default(), t);
        if let Some(w) = trust_watch.as_mut().filter(|_| t >= next_trust_check) {
            next_trust_check = t + 2000;
            match w.poll() {
                None => {}
                Some(Ok(trusted)) => {
                    let nodes = trusted.len();
                    let dropped = agent.set_trusted(Some(Arc::new(trusted)));
                    tracing::info!(nodes, dropped, "trusted-nodes file reloaded");
                    status.lock().expect("not poisoned").trusted_nodes = Some(nodes);
                    dirty = true;
                }
                Some(Err(e)) => tracing::error!("{e}; keeping the nodes trusted before"),
            }
        }
        if t >= next_status {
            next_status = t + 200;
            let mut st = status.lock().expect("not poisoned");
            st.counters = agent.counters();
            st.members = agent.member_info();
            st.blocks = agent.local_blocks();
            st.joined = agent.joined();
            if st.block_seconds.is_none() && !st.blocks.is_empty() {
                st.block_seconds = Some(t as f64 / 1000.0);
            }
        }
        let mut wait = agent.next_deadline().saturating_sub(now()).clamp(1, 1000);
        if dirty {
            wait = wait.min((last_view + 100).saturating_sub(now()).max(1));
        }
        if waiters.any() {
            wait = wait.min(50);
        }
        match sock.read(&mut burst, Duration::from_millis(wait)) {
            Ok(()) => {
                agent.set_clock_us(clock.elapsed().as_micros() as u64);
                let t = now();
                burst.credit_senders(&fdb.snapshot());
                let datagrams = burst
                    .datagrams()
                    .filter(|(from, d)| !gossip_addr.is_some_and(|a| blocks::is_wake(d, *from, a)))
                    .inspect(|(from, _)| {
                        if last_heard.len() < 65_536 || last_heard.contains_key(from) {
                            last_heard.insert(*from, t);
                        }
                    });
                agent.handle_datagrams(datagrams, t);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => tracing::debug!("gossip receive: {e}"),
        }
        agent.set_clock_us(clock.elapsed().as_micros() as u64);
        agent.tick(now());
    }
}

/// The gossip socket's receive buffer: a node joining a cluster is sent
/// the whole state at once (a 1,000-node cluster with 100 pods each: 7,286
/// datagrams, about 17 MB of socket memory). The kernel's default (about
/// 208 KiB) kept 118 of them in `control/examples/join.rs`, and the rest
/// came over later anti-entropy rounds, two seconds apart; 16 MiB (which
/// the kernel doubles) kept them all and the node joined in one exchange.
/// A limit, not an allocation: the memory is used only while datagrams
/// queue.
const GOSSIP_RECEIVE_BUFFER: usize = 16 << 20;

/// Asks for [`GOSSIP_RECEIVE_BUFFER`] (FORCE: weftd is privileged and
/// `net.core.rmem_max` would cap the plain option); logs when it gets less.
fn receive_buffer(sock: &UdpSocket) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &GOSSIP_RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &GOSSIP_RECEIVE_BUFFER);
    }
    let got = getsockopt(sock, sockopt::RcvBuf).unwrap_or(0);
    if got < GOSSIP_RECEIVE_BUFFER {
        tracing::warn!(
            bytes = got,
            "gossip receive buffer smaller than asked (no CAP_NET_ADMIN?): a join into a large cluster takes several anti-entropy rounds"
        );
    }
}

/// Datagrams read from the gossip socket together: the first waits (up to
/// the socket's read timeout), the others are what the socket already
/// held, so the agent checks the records they carry in one batch.
#[derive(Default)]
struct Burst {
    bufs: Vec<Vec<u8>>,
    got: Vec<(usize, SocketAddr)>,
}

impl Burst {
    /// Most datagrams taken at once.
    const MAX: usize = 64;
    /// Gossip datagrams are smaller than this (the sealer's limit).
    const SIZE: usize = 2048;

    /// Empties the burst.
    fn clear(&mut self) {
        self.got.clear();
    }

    /// Whether nothing was read.
    fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Reads whatever is queued on `sock` (non-blocking), up to the limit.
    fn drain(&mut self, sock: &UdpSocket) {
        while self.got.len() < Self::MAX {
            if self.bufs.len() == self.got.len() {
                self.bufs.push(vec![0; Self::SIZE]);
            }
            match sock.recv_from(&mut self.bufs[self.got.len()]) {
                Ok(got) => self.got.push(got),
                Err(_) => break,
            }
        }
    }

    /// Each sender as the agent knows it: its advertised gossip address,
    /// whichever underlay family the datagram came over.
    fn credit_senders(&mut self, snap: &fdb::Snapshot) {
        for (_, from) in &mut self.got {
            *from = sockets::advertised_address(*from, snap);
        }
    }

    /// The datagrams read, with their senders.
    fn datagrams(&mut self) -> impl Iterator<Item = (SocketAddr, &mut [u8])> {
        self.bufs
            .iter_mut()
            .zip(&self.got)
            .map(|(buf, &(n, from))| (from, &mut buf[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-gossip-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn trusted_nodes_must_list_this_node_with_its_own_key() {
        let d = dir("trust");
        let (mine, other) = (NodeKey::from_secret([1; 32]), NodeKey::from_secret([2; 32]));
        let file = d.join("trusted");
        std::fs::write(
            &file,
            format!("n1 {}\nn2 {}\n", mine.public_hex(), other.public_hex()),
        )
        .unwrap();
        assert_eq!(load_trusted_nodes(&file, "n1", &mine).unwrap().len(), 2);
        let e = load_trusted_nodes(&file, "n2", &mine).unwrap_err();
        assert!(e.starts_with("gossip.trusted_nodes_file: "), "{e}");
        assert!(
            e.contains("not the public key of gossip.node_key_file"),
            "{e}"
        );
        let e = load_trusted_nodes(&file, "n3", &mine).unwrap_err();
        assert!(e.contains("expected a line for this node, \"n3\""), "{e}");
        std::fs::write(&file, "n1 zz\n").unwrap();
        let e = load_trusted_nodes(&file, "n1", &mine).unwrap_err();
        assert!(
            e.contains(&format!("{}: line 1: public key of n1", file.display())),
            "{e}"
        );
        let key = d.join("node.key");
        std::fs::write(&key, "# key\n123\n").unwrap();
        let e = load_node_key(&key).unwrap_err();
        assert!(
            e.starts_with("gossip.node_key_file: ") && e.contains("line 2"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_watch_reports_each_change_once() {
        let d = dir("watch");
        let mine = NodeKey::from_secret([1; 32]);
        let file = d.join("trusted");
        let write = |text: String| {
            let tmp = d.join("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
        };
        write(format!("n1 {}\n", mine.public_hex()));
        let mut w = TrustedFileWatch::new(&file, "n1", &mine);
        assert!(
            w.poll().is_none(),
            "the file loaded at start counts as seen"
        );
        let other = NodeKey::from_secret([2; 32]);
        write(format!(
            "n1 {}\nn2 {}\n",
            mine.public_hex(),
            other.public_hex()
        ));
        assert_eq!(w.poll().unwrap().unwrap().len(), 2);
        assert!(w.poll().is_none());
        write(format!("n2 {}\n", other.public_hex()));
        assert!(w.poll().unwrap().is_err(), "this node left out: refused");
        assert!(w.poll().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
