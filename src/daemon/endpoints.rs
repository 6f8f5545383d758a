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
//! Bad input (not JSON, unknown event, a line over 4 KiB) is logged,
//! answered with an error and otherwise ignored.

use crate::daemon::gossip::BlockRequests;
use crate::dataplane::ports::{PortSpec, Ports};
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

/// Parses one line from the plugin, with the port it names, if any.
pub fn parse_message(line: &str) -> Result<Message, String> {
    let events = parse(line)?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let host_ifname = match v.get("host_ifname") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(n)) if !n.is_empty() && n.len() <= 15 => Some(n.clone()),
        Some(other) => return Err(format!("bad \"host_ifname\": {other}")),
    };
    Ok(Message {
        events,
        host_ifname,
    })
}

/// Parses one line from the plugin.
pub fn parse(line: &str) -> Result<Vec<EndpointEvent>, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let ips: Vec<IpAddr> = v
        .get("ips")
        .and_then(|i| i.as_array())
        .ok_or("no \"ips\" list")?
        .iter()
        .map(|i| {
            i.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or("bad address in \"ips\"")
        })
        .collect::<Result<_, _>>()?;
    match v.get("event").and_then(|e| e.as_str()) {
        Some("endpoint_added") => {
            let mac: encap::MacAddr = v
                .get("mac")
                .and_then(|m| m.as_str())
                .and_then(|m| m.parse().ok())
                .ok_or("endpoint_added without a valid \"mac\"")?;
            Ok(ips
                .into_iter()
                .map(|ip| EndpointEvent::Added(ip, mac.0))
                .collect())
        }
        Some("endpoint_removed") => Ok(ips.into_iter().map(EndpointEvent::Removed).collect()),
        other => Err(format!("unknown event {other:?}")),
    }
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
            let host = crate::cni::wiring::host_ifname(&a.container_id, &a.ifname);
            EndpointEvent::Added(a.ip, crate::cni::wiring::pod_mac(&host))
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
                if let Some(v4) = block_needed(line.trim()) {
                    answer_block_request(conn, v4, block_requests.clone());
                    continue;
                }
                let answer = match parse_message(line.trim()) {
                    Ok(m) => book.handle(m),
                    Err(e) => Err(e),
                };
                let reply = match answer {
                    Ok(()) => serde_json::json!({ "ok": true }),
                    Err(e) => {
                        tracing::warn!("cni socket: {e}");
                        serde_json::json!({ "ok": false, "error": e })
                    }
                };
                // The plugin may not wait for the answer (TUN attachment).
                let _ = writeln!(conn, "{reply}");
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// How long weftd lets the plugin wait for a new block (the plugin itself
/// gives up after 15 s).
const BLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// The family of a `block_needed` line (true: IPv4), if it is one.
pub fn block_needed(line: &str) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != "block_needed" {
        return None;
    }
    match v.get("family")?.as_u64()? {
        4 => Some(true),
        6 => Some(false),
        _ => None,
    }
}

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
            let reply = match answer {
                Ok(()) => serde_json::json!({ "ok": true }),
                Err(e) => serde_json::json!({ "ok": false, "error": e }),
            };
            let _ = writeln!(conn, "{reply}");
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
            parse(add).unwrap(),
            vec![
                EndpointEvent::Added("10.244.0.5".parse().unwrap(), [2, 0, 0, 0, 0, 5]),
                EndpointEvent::Added("fd00::5".parse().unwrap(), [2, 0, 0, 0, 0, 5]),
            ]
        );
        let del = r#"{"event":"endpoint_removed","ips":["10.244.0.5"],"mac":null}"#;
        assert_eq!(
            parse(del).unwrap(),
            vec![EndpointEvent::Removed("10.244.0.5".parse().unwrap())]
        );
        assert!(parse("{").is_err());
        assert!(parse(r#"{"event":"endpoint_added","ips":["10.244.0.5"]}"#).is_err());
        assert!(parse(r#"{"event":"reboot","ips":[]}"#).is_err());
        assert!(parse(r#"{"event":"endpoint_removed","ips":["ten"]}"#).is_err());
    }
}
