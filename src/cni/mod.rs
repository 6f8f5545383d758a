//! The `weft` CNI plugin: what a container runtime runs to put a pod on the
//! weft network (CNI 1.1.0; configurations of 0.4.0 and 1.0.0 accepted).
//!
//! - ADD: reserve addresses (IPAM), wire the pod, tell weftd (best effort),
//!   print the result. A failure undoes the wiring and the reservation.
//! - DEL: unwire and release; succeeds when there is nothing left.
//! - CHECK: the attachment is as ADD left it (addresses, routes, links).
//! - GC: release reservations and host links of attachments not in
//!   `cni.dev/valid-attachments`.
//! - STATUS: ready when weftd answers on its socket (code 50 otherwise).
//! - VERSION: the supported versions.

pub mod ipam;
pub mod spec;
pub mod wiring;

use crate::podnet::{self, FromWeftd, PodChange, ToWeftd};
use encap::MacAddr;
use serde_json::{json, Value};
use spec::{code, AddResult, CniError, Command, Env, Interface, NetConf, SUPPORTED_VERSIONS};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What the plugin prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// JSON for stdout (None: print nothing).
    pub stdout: Option<Value>,
    /// Exit status.
    pub status: i32,
}

/// Runs one invocation: environment through `get`, network configuration
/// from `stdin`.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let env = match Env::from_vars(&get) {
        Ok(e) => e,
        Err(e) => return failure(&e, "1.1.0"),
    };
    if env.command == Command::Version {
        return Outcome {
            stdout: Some(json!({ "cniVersion": "1.1.0", "supportedVersions": SUPPORTED_VERSIONS })),
            status: 0,
        };
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return failure(&e, version_hint(stdin)),
    };
    let result = match env.command {
        Command::Add => add(&env, &conf).map(Some),
        Command::Del => del(&env, &conf).map(|_| None),
        Command::Check => check(&env, &conf).map(|_| None),
        Command::Gc => gc(&conf).map(|_| None),
        Command::Status => status(&conf).map(|_| None),
        Command::Version => unreachable!("answered above"),
    };
    match result {
        Ok(stdout) => Outcome { stdout, status: 0 },
        Err(e) => failure(&e, &conf.cni_version),
    }
}

fn failure(e: &CniError, version: &str) -> Outcome {
    Outcome {
        stdout: Some(e.to_json(version)),
        status: 1,
    }
}

/// The cniVersion of an unparsable or unsupported configuration, for the
/// error JSON, falling back to the newest.
fn version_hint(stdin: &[u8]) -> &'static str {
    let v: Option<String> = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
        v.get("cniVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    SUPPORTED_VERSIONS
        .iter()
        .copied()
        .find(|s| Some(*s) == v.as_deref())
        .unwrap_or("1.1.0")
}

fn attachment(env: &Env) -> (&str, &str) {
    (
        env.container_id.as_deref().unwrap_or_default(),
        env.ifname.as_deref().unwrap_or_default(),
    )
}

fn add(env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let (id, ifname) = attachment(env);
    let netns = env.netns.as_deref().expect("checked by Env");
    let net = conf.node_network()?;
    if !netns.exists() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            "the container's network namespace does not exist",
            netns.display().to_string(),
        ));
    }
    let store = ipam::Store::open(&conf.state_dir.join("ipam"))?;
    let requested = if conf.requested_ips.is_empty() {
        &env.requested_ips
    } else {
        &conf.requested_ips
    };
    let ips = allocate(conf, &store, id, ifname, requested)?;
    let host = wiring::host_ifname(id, ifname);
    let wired = match wiring::add(netns, ifname, &host, &ips, net.mtu, conf.veth_attach) {
        Ok(w) => w,
        Err(e) => {
            // Nothing half-applied: the wiring undid itself; release too.
            let _ = store.release(id, ifname);
            return Err(e);
        }
    };
    let pod_mac: Option<MacAddr> = wired.container_mac.parse().ok();
    if conf.veth_attach {
        // The pod has no network until weftd reads its port: wait for it.
        if let Err(e) = register_port(conf, id, ifname, &host, &ips, pod_mac) {
            let _ = wiring::del(&host);
            let _ = store.release(id, ifname);
            return Err(e);
        }
    } else {
        notify_weftd(conf, Event::Added, id, ifname, &ips, pod_mac);
    }
    let host_mac = if conf.veth_attach {
        wiring::port_mac(&host)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    } else {
        "ee:ee:ee:ee:ee:ee".into()
    };
    let result = AddResult {
        interfaces: vec![
            Interface {
                name: host,
                mac: host_mac,
                sandbox: None,
                mtu: Some(net.mtu),
            },
            Interface {
                name: ifname.into(),
                mac: wired.container_mac,
                sandbox: Some(netns.display().to_string()),
                mtu: Some(net.mtu),
            },
        ],
        ips: ips
            .iter()
            .map(|ip| {
                ipnet::IpNet::new(*ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix")
            })
            .collect(),
        gateways: vec![wiring::GATEWAY_V4.into(), wiring::GATEWAY_V6.into()],
    };
    Ok(result.to_json(&conf.cni_version))
}

/// How long ADD waits, in all, for weftd to claim more blocks.
const BLOCK_WAIT: Duration = Duration::from_secs(15);

/// Reserves the pod's addresses; when the node's blocks of a family are
/// full, asks weftd for another block and tries again once it is claimed
/// (blocks weftd published; a configuration's own `blocks` are final).
fn allocate(
    conf: &NetConf,
    store: &ipam::Store,
    id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<IpAddr>, CniError> {
    let deadline = std::time::Instant::now() + BLOCK_WAIT;
    loop {
        let blocks = || conf.node_network().map(|n| n.blocks);
        let v4 = match store.allocate(blocks, id, ifname, requested)? {
            ipam::Allocated::Addresses(ips) => return Ok(ips),
            ipam::Allocated::Full { v4 } => v4,
        };
        let family = if v4 { 4 } else { 6 };
        let full = format!("no free IPv{family} address in this node's blocks");
        if !conf.blocks.is_empty() {
            return Err(CniError::new(
                code::TRY_AGAIN,
                full,
                "the blocks given in the network configuration are full",
            ));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(CniError::new(
                code::TRY_AGAIN,
                full,
                format!("weftd's new blocks filled up as fast as they came for {BLOCK_WAIT:?}"),
            ));
        }
        request_block(conf, v4, left)
            .map_err(|why| CniError::new(code::TRY_AGAIN, full, format!("weftd: {why}")))?;
    }
}

/// Asks weftd to claim one more block of a family and waits (at most
/// `wait`) until it is claimed and published, or weftd says why not.
fn request_block(conf: &NetConf, v4: bool, wait: Duration) -> Result<(), String> {
    use std::io::BufRead;
    let socket = conf.weftd_socket.display();
    let mut s = UnixStream::connect(&conf.weftd_socket)
        .map_err(|e| format!("cannot ask for another block on {socket}: {e}"))?;
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    let msg = ToWeftd::BlockNeeded {
        family: if v4 { 4 } else { 6 },
    };
    writeln!(s, "{}", msg.to_line()).map_err(|e| format!("{socket}: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| format!("no answer to the block request within {wait:?}: {e}"))?;
    FromWeftd::parse(&line)
}

fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let (id, ifname) = attachment(env);
    wiring::del(&wiring::host_ifname(id, ifname))?;
    let store = ipam::Store::open(&conf.state_dir.join("ipam"))?;
    let released = store.release(id, ifname)?;
    if !released.is_empty() {
        notify_weftd(conf, Event::Removed, id, ifname, &released, None);
    }
    Ok(())
}

fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let (id, ifname) = attachment(env);
    let netns = env.netns.as_deref().expect("checked by Env");
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult",
            "the runtime passes the ADD result as prevResult",
        )
    })?;
    let ips: Vec<IpAddr> = prev
        .get("ips")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip.get("address")?.as_str()?.parse::<ipnet::IpNet>().ok())
                .map(|n| n.addr())
                .collect()
        })
        .unwrap_or_default();
    let store = ipam::Store::open(&conf.state_dir.join("ipam"))?;
    let held: Vec<IpAddr> = store
        .allocations()?
        .into_iter()
        .filter(|a| a.container_id == id && a.ifname == ifname)
        .map(|a| a.ip)
        .collect();
    for ip in &ips {
        if !held.contains(ip) {
            return Err(CniError::new(
                code::CHECK_MISMATCH,
                "the attachment is not as ADD left it",
                format!("{ip} is not reserved for this container"),
            ));
        }
    }
    wiring::check(
        netns,
        ifname,
        &wiring::host_ifname(id, ifname),
        &ips,
        conf.veth_attach,
    )
}

fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let store = ipam::Store::open(&conf.state_dir.join("ipam"))?;
    let gone = store.gc(&valid)?;
    let mut hosts: Vec<String> = gone
        .iter()
        .map(|a| wiring::host_ifname(&a.container_id, &a.ifname))
        .collect();
    hosts.sort();
    hosts.dedup();
    for h in hosts {
        wiring::del(&h)?;
    }
    for a in &gone {
        notify_weftd(
            conf,
            Event::Removed,
            &a.container_id,
            &a.ifname,
            &[a.ip],
            None,
        );
    }
    Ok(())
}

fn status(conf: &NetConf) -> Result<(), CniError> {
    UnixStream::connect(&conf.weftd_socket)
        .map(|_| ())
        .map_err(|e| {
            CniError::new(
                code::NOT_AVAILABLE,
                "weftd is not reachable",
                format!("{}: {e}", conf.weftd_socket.display()),
            )
        })
}

/// An endpoint change weftd is told about.
#[derive(Debug, Clone, Copy)]
enum Event {
    Added,
    Removed,
}

/// Tells weftd about an endpoint change, one JSON line on its socket. Best
/// effort: local wiring never depends on weftd; weftd re-reads the IPAM
/// state when it starts. In veth attachment the line names the port, so
/// weftd stops reading it.
fn notify_weftd(
    conf: &NetConf,
    event: Event,
    id: &str,
    ifname: &str,
    ips: &[IpAddr],
    mac: Option<MacAddr>,
) {
    let Ok(mut s) = UnixStream::connect(&conf.weftd_socket) else {
        return;
    };
    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
    let change = PodChange {
        container_id: id.to_string(),
        ifname: ifname.to_string(),
        ips: ips.to_vec(),
        mac,
        host_ifname: conf.veth_attach.then(|| podnet::host_ifname(id, ifname)),
    };
    let msg = match event {
        Event::Added => ToWeftd::EndpointAdded(change),
        Event::Removed => ToWeftd::EndpointRemoved(change),
    };
    if writeln!(s, "{}", msg.to_line()).is_ok() && conf.veth_attach {
        // The port is gone from weftd when DEL returns (best effort).
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut String::new());
    }
}

/// Veth attachment: hands the pod's port to weftd and waits for its answer
/// (2 s). weftd not running is "try again later" (code 11); weftd refusing
/// the port is a configuration error (code 7).
fn register_port(
    conf: &NetConf,
    id: &str,
    ifname: &str,
    host: &str,
    ips: &[IpAddr],
    mac: Option<MacAddr>,
) -> Result<(), CniError> {
    use std::io::BufRead;
    let socket = conf.weftd_socket.display().to_string();
    let unavailable = |e: std::io::Error| {
        CniError::new(
            code::TRY_AGAIN,
            "weftd did not take the pod's port (veth attachment)",
            format!("{socket}: {e}"),
        )
    };
    let mut s = UnixStream::connect(&conf.weftd_socket).map_err(unavailable)?;
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .and_then(|_| s.set_read_timeout(Some(Duration::from_secs(2))))
        .map_err(unavailable)?;
    let msg = ToWeftd::EndpointAdded(PodChange {
        container_id: id.to_string(),
        ifname: ifname.to_string(),
        ips: ips.to_vec(),
        mac,
        host_ifname: Some(host.to_string()),
    });
    writeln!(s, "{}", msg.to_line()).map_err(unavailable)?;
    let mut line = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut line)
        .map_err(unavailable)?;
    if line.trim().is_empty() || !line.trim_start().starts_with('{') {
        return Err(unavailable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unreadable answer {line:?}"),
        )));
    }
    FromWeftd::parse(&line).map_err(|why| {
        CniError::new(
            code::INVALID_CONFIG,
            "weftd refused the pod's port (veth attachment)",
            why,
        )
    })
}
