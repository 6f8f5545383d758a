//! Wall time for a node to join a large signed cluster over real UDP
//! sockets: one agent (`peer`) holds the records of N nodes with 100
//! endpoints each (every record signed by its owner, every datagram by its
//! sender), a second (`joiner`) starts with `peer` as its seed; both are
//! driven as weftd drives its agent (bursts of up to 64 datagrams per turn)
//! on loopback, in one thread. Reports when the joiner holds the same state,
//! and how many datagrams reached it in the first exchange. (The records
//! name 1,000 nodes that do not exist: the joiner probes them and syncs
//! with them too, so a join that loses datagrams here may never finish,
//! where a real cluster would finish it over later rounds with other
//! members.)
//!
//! Run: `cargo run --release -p weft-control --example join -- [NODES] [RCVBUF-BYTES]`
//! (defaults 1000 and 16 MiB; 0 for the kernel's default receive buffer).

#[path = "shared/cluster.rs"]
mod cluster;

use control::auth::Sealer;
use control::identity::{NodeKey, TrustedNodes};
use control::record::{NodeInfo, Signed};
use control::{Agent, AgentConfig, Keyring};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the joiner is given.
const LIMIT: Duration = Duration::from_secs(120);
const KEY: [u8; 32] = [5; 32];

/// A non-blocking UDP socket on loopback, its receive buffer `rcvbuf`
/// bytes (FORCE, as root) unless 0.
fn socket(rcvbuf: usize) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
    if rcvbuf > 0 && s.set_recv_buffer_size(rcvbuf).is_ok() {
        use std::os::fd::AsFd;
        let _ = nix::sys::socket::setsockopt(
            &s.as_fd(),
            nix::sys::socket::sockopt::RcvBufForce,
            &rcvbuf,
        );
    }
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    s.set_nonblocking(true).expect("non-blocking");
    s.into()
}

struct Node {
    agent: Agent,
    sock: UdpSocket,
}

fn agent(
    name: &str,
    sock: &UdpSocket,
    k: NodeKey,
    trusted: &Arc<TrustedNodes>,
    seeds: Vec<SocketAddr>,
) -> Agent {
    let addr = sock.local_addr().expect("bound");
    let info = NodeInfo {
        underlay: vec![addr.ip()],
        vtep_mac: [2, 1, 1, 1, 1, 1],
        vxlan: true,
        ipip: false,
        gossip: addr,
        boot: 0,
    };
    let mut c = AgentConfig::new(name, addr, info, Keyring::new(&[(1, KEY)]).expect("key"));
    c.node_key = Some(k);
    c.rules.trusted = Some(Arc::clone(trusted));
    c.rules.pools = vec!["10.0.0.0/8".parse().expect("net")];
    c.seeds = seeds;
    c.cluster_size_hint = 1000;
    Agent::new(c, 0, 1, 7)
}

/// One turn of weftd's gossip loop for `n`: send what it has, read what
/// is queued (bursts of 64), tick.
fn turn(n: &mut Node, now_ms: u64, bufs: &mut [Vec<u8>]) -> usize {
    for (to, d) in n.agent.drain_output() {
        let _ = n.sock.send_to(&d, to);
    }
    let mut read = 0;
    loop {
        let mut got = Vec::new();
        for b in bufs.iter_mut() {
            match n.sock.recv_from(b) {
                Ok((len, from)) => got.push((from, len)),
                Err(_) => break,
            }
        }
        if got.is_empty() {
            break;
        }
        read += got.len();
        let datagrams = bufs
            .iter_mut()
            .zip(&got)
            .map(|(b, &(from, len))| (from, &mut b[..len]));
        n.agent.handle_datagrams(datagrams, now_ms);
        for (to, d) in n.agent.drain_output() {
            let _ = n.sock.send_to(&d, to);
        }
    }
    n.agent.tick(now_ms);
    read
}

/// Seconds until the joiner holds the peer's state (infinite: not within
/// [`LIMIT`]), datagrams it read in the first exchange, and how many the
/// state takes.
fn join(nodes: u32, rcvbuf: usize) -> (f64, usize, usize) {
    let keys: Vec<NodeKey> = (0..nodes).map(cluster::key).collect();
    let (peer_key, joiner_key) = (cluster::key(1_000_001), cluster::key(1_000_002));
    let mut file: String = keys
        .iter()
        .enumerate()
        .map(|(n, k)| format!("node-{n} {}\n", k.public_hex()))
        .collect();
    file += &format!(
        "peer {}\njoiner {}\n",
        peer_key.public_hex(),
        joiner_key.public_hex()
    );
    let trusted = Arc::new(TrustedNodes::parse(&file).expect("parses"));
    let psock = socket(rcvbuf);
    let paddr = psock.local_addr().expect("bound");
    let mut peer = Node {
        agent: agent("peer", &psock, peer_key, &trusted, vec![]),
        sock: psock,
    };
    // The peer learns the cluster's records as relayed by node-0.
    let mut sealer = Sealer::new(
        Keyring::new(&[(1, KEY)]).expect("key"),
        control::state::fnv(b"node-0"),
        1,
        false,
    )
    .with_signer(keys[0].signing_key());
    let all: Vec<Signed> = (0..nodes)
        .flat_map(|n| cluster::records_of(n, Some(&keys[n as usize])))
        .collect();
    let relay: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let bodies = control::wire::pack_records(all);
    let sent = bodies.len();
    for body in bodies {
        let mut d = Vec::new();
        sealer.seal(&body, &mut d);
        peer.agent.handle_datagram(relay, &mut d, 0);
    }
    peer.agent.drain_output();
    let jsock = socket(rcvbuf);
    let mut joiner = Node {
        agent: agent("joiner", &jsock, joiner_key, &trusted, vec![paddr]),
        sock: jsock,
    };
    let mut bufs = vec![vec![0u8; 2048]; 64];
    let start = Instant::now();
    let (mut read, mut first_round) = (0, None);
    loop {
        let now = start.elapsed().as_millis() as u64;
        read += turn(&mut joiner, now, &mut bufs);
        turn(&mut peer, now, &mut bufs);
        if joiner.agent.summary() == peer.agent.summary() {
            return (
                start.elapsed().as_secs_f64(),
                first_round.unwrap_or(read),
                sent,
            );
        }
        // The first exchange is over well before the next sync (2 s).
        if first_round.is_none() && start.elapsed() > Duration::from_millis(1_900) {
            first_round = Some(read);
        }
        if start.elapsed() > LIMIT {
            return (f64::INFINITY, first_round.unwrap_or(read), sent);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rcvbuf: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16 << 20);
    let (secs, read, sent) = join(nodes, rcvbuf);
    println!(
        "join of a {nodes}-node cluster ({} records in {sent} datagrams): receive buffer {}: {}, {read} datagrams read in the first exchange",
        nodes * (cluster::PER_NODE + 2),
        match rcvbuf {
            0 => "the kernel's default".to_string(),
            b => format!("{b} bytes asked"),
        },
        if secs.is_finite() {
            format!("{secs:.2} s")
        } else {
            format!("not joined in {} s", LIMIT.as_secs())
        },
    );
}
