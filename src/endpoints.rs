//! The local socket the CNI plugin tells weftd about pods on: one JSON line
//! per event, `{"event": "endpoint_added" | "endpoint_removed", "ips": [...],
//! "mac": "..."}`. Added endpoints go into fdb (source `LocalCni`) and, with
//! gossip, are published to the cluster; removed ones are withdrawn.
//!
//! Bad input (not JSON, unknown event, a line over 4 KiB) is logged and
//! ignored: the plugin's wiring never depends on weftd.

use fdb::{Endpoint, Fdb, Mac, Meta, Source};
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc::Sender;

/// An endpoint change for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A pod address on this node, with its interface MAC.
    Added(IpAddr, [u8; 6]),
    /// A pod address released.
    Removed(IpAddr),
}

const MAX_LINE: u64 = 4096;

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

/// Listens on `path` (replacing a stale socket) on its own thread.
pub fn serve(
    path: &Path,
    fdb: Fdb,
    to_gossip: Option<Sender<EndpointEvent>>,
) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cni_socket: {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cni_socket: bind {}: {e}", path.display()))?;
    let mut version = 0u64;
    std::thread::Builder::new()
        .name("weft-cni-socket".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                let mut line = String::new();
                if BufReader::new(conn.take(MAX_LINE))
                    .read_line(&mut line)
                    .is_err()
                    || line.is_empty()
                {
                    continue; // a STATUS probe connects and says nothing
                }
                let events = match parse(line.trim()) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("cni socket: {e}");
                        continue;
                    }
                };
                for ev in events {
                    version += 1;
                    let meta = Meta::new(Source::LocalCni, version);
                    let local = fdb.snapshot().local_node().clone();
                    let r = fdb.update(|t| match ev {
                        EndpointEvent::Added(ip, mac) => t
                            .upsert_endpoint(
                                ip,
                                Endpoint {
                                    mac: Mac(mac),
                                    node: local,
                                    local_port: None,
                                },
                                meta,
                            )
                            .map(|_| ()),
                        EndpointEvent::Removed(ip) => t.remove_endpoint(ip, meta).map(|_| ()),
                    });
                    if let Err(e) = r {
                        tracing::warn!("cni socket: fdb: {e}");
                    }
                    tracing::info!(?ev, "endpoint from the CNI plugin");
                    if let Some(tx) = &to_gossip {
                        let _ = tx.send(ev);
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
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
