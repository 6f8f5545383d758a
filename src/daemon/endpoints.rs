//! The local socket the CNI plugin tells weftd about pods on: one JSON line
//! per event, `{"event": "endpoint_added" | "endpoint_removed", "ips": [...],
//! "mac": "...", "host_ifname": "..."}`. Added endpoints go into fdb (source
//! `LocalCni`) and, with gossip, are published to the cluster; removed ones
//! are withdrawn. weftd answers each line with `{"ok": true}` or
//! `{"ok": false, "error": "..."}`.
//!
//! `host_ifname` registers (or unregisters) the pod's veth as a port in veth
//! attachment; the plugin then waits for the answer, since the pod has no
//! network until weftd reads its port. Without it (TUN attachment) the
//! plugin does not wait: its wiring never depends on weftd.
//!
//! `{"event": "block_needed", "family": 4 | 6}` is the plugin finding the
//! node's blocks of a family full: weftd claims another through the control
//! plane and answers once it is published (or says why none comes).
//!
//! The line and answer types are [`crate::podnet`]'s, shared with the plugin.
//!
//! Bad input (not JSON, unknown event, a line over 4 KiB) is logged,
//! answered with an error and otherwise ignored.

use crate::daemon::gossip::BlockRequests;
use crate::dataplane::ports::{PortSpec, Ports};
use crate::podnet::{FromWeftd, ToWeftd};
use fdb::{Endpoint, Fdb, Mac, Meta, Source};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// An endpoint change for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A pod address on this node, with its interface MAC.
    Added(IpAddr, [u8; 6]),
    /// A pod address released.
    Removed(IpAddr),
}

const MAX_LINE: u64 = 4096;

/// One line from the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The endpoint changes.
    pub events: Vec<EndpointEvent>,
    /// Veth attachment: the host end of the pod's veth.
    pub host_ifname: Option<String>,
}

/// What one line from the plugin asks of weftd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Endpoint changes (and a port, in veth attachment).
    Change(Message),
    /// Another block of a family (true: IPv4).
    BlockNeeded(bool),
}

/// Parses one line from the plugin ([`crate::podnet::ToWeftd`]).
pub fn parse_line(line: &str) -> Result<Line, String> {
    let (added, change) = match ToWeftd::parse(line)? {
        ToWeftd::BlockNeeded { family } => return Ok(Line::BlockNeeded(family == 4)),
        ToWeftd::EndpointAdded(c) => (true, c),
        ToWeftd::EndpointRemoved(c) => (false, c),
    };
    let events = change
        .ips
        .iter()
        .map(|ip| match change.mac {
            Some(mac) if added => EndpointEvent::Added(*ip, mac.0),
            _ => EndpointEvent::Removed(*ip),
        })
        .collect();
    Ok(Line::Change(Message {
        events,
        host_ifname: change.host_ifname,
    }))
}

/// This node's pods as the CNI plugin recorded them in its IPAM state
/// under `state_dir` (TUN attachment): one `Added` per allocated address,
/// with the pod's MAC derived from its container id and interface as the
/// plugin sets it. No state yet is no pods; an unreadable state is an
/// error (weftd must not publish an empty node over live pods).
pub fn recorded_pods(state_dir: &Path) -> Result<Vec<EndpointEvent>, String> {
    let dir = state_dir.join("ipam");
    if !dir.join("allocations.json").exists() {
        return Ok(Vec::new());
    }
    let store = crate::cni::ipam::Store::open(&dir).map_err(|e| e.to_string())?;
    let allocations = store
        .allocations()
        .map_err(|e| format!("cni_state_dir: {e}"))?;
    Ok(allocations
        .into_iter()
        .map(|a| {
            let host = crate::podnet::host_ifname(&a.container_id, &a.ifname);
            EndpointEvent::Added(a.ip, crate::podnet::pod_mac(&host))
        })
        .collect())
}

/// Listens on `path` (replacing a stale socket) on its own thread. Before
/// it opens, this node's pods from before a restart are taken up again:
/// with `ports` (veth attachment) the ports weftd held; otherwise the pods
/// in the CNI plugin's IPAM state (`cni_state_dir`).
pub fn serve(
    path: &Path,
    fdb: Fdb,
    to_gossip: Option<(Sender<EndpointEvent>, BlockRequests)>,
    ports: Option<Arc<Ports>>,
    cni_state_dir: &Path,
) -> Result<(), String> {
    let (to_gossip, block_requests) = to_gossip.unzip();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cni_socket: {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cni_socket: bind {}: {e}", path.display()))?;
    let mut book = Book {
        fdb,
        to_gossip,
        ports,
        version: 0,
    };
    if let Some(ports) = book.ports.clone() {
        for (spec, ifindex) in ports.restore() {
            tracing::info!(port = %spec.name, ifindex, "port taken up again");
            let events = spec
                .ips
                .iter()
                .map(|ip| EndpointEvent::Added(*ip, spec.mac.0))
                .collect::<Vec<_>>();
            book.apply(&events, Some(ifindex));
        }
    } else {
        let events = recorded_pods(cni_state_dir)?;
        tracing::info!(
            endpoints = events.len(),
            dir = %cni_state_dir.display(),
            "pods recorded by the CNI plugin taken up again"
        );
        book.apply(&events, None);
    }
    std::thread::Builder::new()
        .name("weft-cni-socket".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(1)));
                let mut line = String::new();
                let Ok(reader) = conn.try_clone() else {
                    continue;
                };
                if BufReader::new(reader.take(MAX_LINE))
                    .read_line(&mut line)
                    .is_err()
                    || line.is_empty()
                {
                    continue; // a STATUS probe connects and says nothing
                }
                let answer = match parse_line(line.trim()) {
                    Ok(Line::BlockNeeded(v4)) => {
                        answer_block_request(conn, v4, block_requests.clone());
                        continue;
                    }
                    Ok(Line::Change(m)) => book.handle(m),
                    Err(e) => Err(e),
                };
                if let Err(e) = &answer {
                    tracing::warn!("cni socket: {e}");
                }
                // The plugin may not wait for the answer (TUN attachment).
                let _ = writeln!(conn, "{}", FromWeftd::from_result(answer).to_line());
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// How long weftd lets the plugin wait for a new block (the plugin itself
/// gives up after 15 s).
const BLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// Answers a block request on its own thread (a claim takes seconds; the
/// socket keeps serving endpoint changes meanwhile).
fn answer_block_request(
    mut conn: std::os::unix::net::UnixStream,
    v4: bool,
    requests: Option<BlockRequests>,
) {
    let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let spawned = std::thread::Builder::new()
        .name("weft-block-req".into())
        .spawn(move || {
            let answer = match &requests {
                Some(r) => r.ask(v4, BLOCK_WAIT),
                None => Err("weftd runs without gossip: this node's blocks are configured (overlay.blocks), none can be claimed".into()),
            };
            let _ = writeln!(conn, "{}", FromWeftd::from_result(answer).to_line());
        });
    if let Err(e) = spawned {
        tracing::warn!("cni socket: cannot answer a block request: {e}");
    }
}

/// What the socket thread keeps: where endpoint changes go.
struct Book {
    fdb: Fdb,
    to_gossip: Option<Sender<EndpointEvent>>,
    ports: Option<Arc<Ports>>,
    version: u64,
}

impl Book {
    /// One message: its port (veth attachment) first, then its endpoints.
    fn handle(&mut self, m: Message) -> Result<(), String> {
        let added = m.events.iter().find_map(|e| match e {
            EndpointEvent::Added(_, mac) => Some(*mac),
            EndpointEvent::Removed(_) => None,
        });
        let local_port = match (&self.ports, &m.host_ifname, added) {
            (None, Some(_), _) => {
                return Err(
                    "weftd runs with dataplane.attach = \"tun\": set \"attach\": \"tun\" in the CNI configuration".into(),
                )
            }
            (Some(_), None, Some(_)) => {
                return Err(
                    "weftd runs with dataplane.attach = \"veth\": set \"attach\": \"veth\" in the CNI configuration".into(),
                )
            }
            (Some(ports), Some(name), Some(mac)) => {
                let ips = m
                    .events
                    .iter()
                    .map(|e| match e {
                        EndpointEvent::Added(ip, _) | EndpointEvent::Removed(ip) => *ip,
                    })
                    .collect();
                let spec = PortSpec {
                    name: name.clone(),
                    mac: encap::MacAddr(mac),
                    ips,
                };
                let ifindex = ports.register(spec)?;
                tracing::info!(port = %name, ifindex, "port registered");
                Some(ifindex)
            }
            (Some(ports), Some(name), None) => {
                if ports.unregister(name).is_some() {
                    tracing::info!(port = %name, "port unregistered");
                }
                None
            }
            (_, None, _) => None,
        };
        self.apply(&m.events, local_port);
        Ok(())
    }

    /// Endpoint changes into fdb and to the control plane.
    fn apply(&mut self, events: &[EndpointEvent], local_port: Option<u32>) {
        for ev in events {
            self.version += 1;
            let meta = Meta::new(Source::LocalCni, self.version);
            let local = self.fdb.snapshot().local_node().clone();
            let r = self.fdb.update(|t| match ev {
                EndpointEvent::Added(ip, mac) => t
                    .upsert_endpoint(
                        *ip,
                        Endpoint {
                            mac: Mac(*mac),
                            node: local,
                            local_port,
                        },
                        meta,
                    )
                    .map(|_| ()),
                EndpointEvent::Removed(ip) => t.remove_endpoint(*ip, meta).map(|_| ()),
            });
            if let Err(e) = r {
                tracing::warn!("cni socket: fdb: {e}");
            }
            tracing::info!(?ev, "endpoint from the CNI plugin");
            if let Some(tx) = &self.to_gossip {
                let _ = tx.send(ev.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_the_plugin() {
        let add = r#"{"event":"endpoint_added","containerID":"c","ifname":"eth0","ips":["10.244.0.5","fd00::5"],"mac":"02:00:00:00:00:05"}"#;
        assert_eq!(
            parse_line(add).unwrap(),
            Line::Change(Message {
                events: vec![
                    EndpointEvent::Added("10.244.0.5".parse().unwrap(), [2, 0, 0, 0, 0, 5]),
                    EndpointEvent::Added("fd00::5".parse().unwrap(), [2, 0, 0, 0, 0, 5]),
                ],
                host_ifname: None,
            })
        );
        let del = r#"{"event":"endpoint_removed","ips":["10.244.0.5"],"mac":null,"host_ifname":"weft0123456789a"}"#;
        assert_eq!(
            parse_line(del).unwrap(),
            Line::Change(Message {
                events: vec![EndpointEvent::Removed("10.244.0.5".parse().unwrap())],
                host_ifname: Some("weft0123456789a".into()),
            })
        );
        assert_eq!(
            parse_line(r#"{"event":"block_needed","family":4}"#).unwrap(),
            Line::BlockNeeded(true)
        );
        assert!(parse_line("{").is_err());
        assert!(parse_line(r#"{"event":"endpoint_added","ips":["10.244.0.5"]}"#).is_err());
        assert!(parse_line(r#"{"event":"reboot","ips":[]}"#).is_err());
        assert!(parse_line(r#"{"event":"endpoint_removed","ips":["ten"]}"#).is_err());
    }
}
