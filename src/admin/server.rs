//! The admin socket's server: answers requests from a running node's
//! tables, counters, control plane and kernel routes.

use super::request::{Request, MAX_REQUEST};
use super::trace::{trace, TraceContext};
use crate::daemon::node::Node;
use crate::dataplane::counters;
use crate::kernel::routes::{Routes, WeftRoute};
use fdb::Source;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

fn source(s: Source) -> &'static str {
    match s {
        Source::Learned => "learned",
        Source::Gossip => "gossip",
        Source::LocalCni => "cni",
        Source::Static => "static",
    }
}

/// Listens on `path` (replacing a stale socket) and answers on a thread.
pub fn serve(path: &Path, node: Arc<Node>) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("admin_socket: {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("admin_socket: bind {}: {e}", path.display()))?;
    std::thread::Builder::new()
        .name("weft-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut line = Vec::new();
                let read = BufReader::new((&conn).take(MAX_REQUEST as u64 + 1))
                    .read_until(b'\n', &mut line);
                let answer = match read {
                    Err(e) => json!({"ok": false, "error": format!("read: {e}")}),
                    Ok(_) => match Request::parse(line.trim_ascii()) {
                        Ok(req) => answer(&node, &req),
                        Err(e) => json!({"ok": false, "error": e}),
                    },
                };
                let _ = writeln!(conn, "{answer}");
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The answer to one request.
pub fn answer(node: &Node, req: &Request) -> Value {
    let mut v = match req {
        Request::Status => status(node),
        Request::Routes => match routes() {
            // Block routes (main table); nodes' own addresses (weft's
            // table 87) apart.
            Ok(r) => {
                let (nodes, blocks): (Vec<Value>, Vec<Value>) =
                    r.into_iter().partition(|r| r["kind"] == "node");
                json!({ "routes": blocks, "node_routes": nodes })
            }
            Err(e) => return json!({"ok": false, "error": e}),
        },
        Request::Fdb => fdb(node),
        Request::Endpoints => endpoints(node),
        Request::Groups => groups(node),
        Request::Stats => stats(node),
        Request::Health => health(node),
        Request::Trace { src, dst } => {
            let snap = node.fdb.snapshot();
            let cx = TraceContext {
                snap: &snap,
                encap: node.encap,
                vni: node.settings.vni.get(),
                port: node.settings.port,
                overlay_mtu: node.settings.overlay_mtu,
                tunnel_addrs: &node.tunnel_addrs,
                policy: Some(&node.policy),
                veth: node.ports.is_some(),
                source_ports: node.source_ports.as_ref(),
            };
            trace(&cx, *src, *dst)
        }
    };
    v["ok"] = json!(true);
    v
}

fn local_blocks(node: &Node) -> Vec<String> {
    let snap = node.fdb.snapshot();
    snap.blocks()
        .filter(|(_, e)| e.value.node == *snap.local_node())
        .map(|(b, _)| b.to_string())
        .collect()
}

fn status(node: &Node) -> Value {
    let snap = node.fdb.snapshot();
    let gossip = node
        .gossip
        .as_ref()
        .map(|g| g.status.lock().expect("not poisoned").clone());
    let enc = node.encap.to_string();
    let peers: Vec<Value> = snap
        .nodes()
        .filter(|(id, _)| *id != snap.local_node())
        .map(|(id, e)| {
            let member = gossip
                .as_ref()
                .and_then(|g| g.members.iter().find(|m| m.name == id.as_str()));
            let blocks: Vec<String> = snap
                .blocks()
                .filter(|(_, b)| b.value.node == *id)
                .map(|(p, _)| p.to_string())
                .collect();
            json!({
                "name": id.as_str(),
                // Where this node's tunnels to it go (its preferred
                // address, or its other one where this node lacks that
                // family).
                "underlay": e.value.tunnel_address_from(node.settings.tunnels).map(|a| a.to_string()),
                "source": source(e.meta.source),
                "state": match member { Some(m) if m.up => "up", Some(_) => "down", None => "static" },
                "rtt_us": member.and_then(|m| m.rtt_us),
                // What the peer says it runs (None: not heard yet, an
                // earlier release, or a static peer).
                "path": member.and_then(|m| m.status.as_ref()).map(|s| s.path.clone()),
                "encap": enc,
                "blocks": blocks,
            })
        })
        .collect();
    let veth = node.ports.is_some();
    // Veth attachment reads fdb only: no kernel routes to agree with it.
    let kernel_routes = if veth {
        None
    } else {
        // Block routes only (not the nodes' own addresses in weft's table).
        routes()
            .map(|r| r.iter().filter(|r| r["kind"] != "node").count())
            .ok()
    };
    let blocks = snap.counts().blocks;
    let ports: Option<Vec<Value>> = node.ports.as_ref().map(|p| {
        p.all()
            .iter()
            .map(|port| {
                json!({
                    "name": port.spec.name,
                    "ifindex": port.ifindex,
                    "mac": port.spec.mac.to_string(),
                    "ips": port.spec.ips,
                })
            })
            .collect()
    });
    let vtep_mac = snap
        .nodes()
        .find(|(id, _)| *id == snap.local_node())
        .map(|(_, e)| e.value.vtep_mac.to_string());
    json!({
        "node": node.name,
        "underlay": node.underlay.to_string(),
        "vtep_mac": vtep_mac,
        "encap": enc,
        "attach": if veth { "veth" } else { "tun" },
        // Which data path carries this node's traffic: the kernel's vxlan
        // device (weftd programs it) or weftd's own workers.
        "path": if node.kernel_path.is_some() { "kernel" } else { "userspace" },
        "kernel_device": node.kernel_path.as_ref().map(|k| k.name.clone()),
        "ports": ports,
        "vni": node.settings.vni.get(),
        "port": node.settings.port,
        "overlay_mtu": node.settings.overlay_mtu,
        // Kernel concerns (routes, rules, TUN addresses, the NAT table)
        // whose last reconciliation failed, with what failed.
        "kernel_errors": node.kernel.lock().expect("not poisoned").errors,
        "workers": node.counters.len(),
        "uptime_s": node.started.elapsed().as_secs(),
        "blocks": local_blocks(node),
        "peers": peers,
        "gossip": gossip.as_ref().map(|g| g.to_json()),
        "convergence": {
            "fdb_blocks": blocks,
            "kernel_routes": kernel_routes,
            "converged": veth || kernel_routes == Some(blocks),
        },
    })
}

fn routes() -> Result<Vec<Value>, String> {
    let list = crate::kernel::with_netlink(async |h| Routes::new(h).list().await)
        .map_err(|e| e.to_string())?;
    Ok(list
        .iter()
        .map(|r| match r {
            WeftRoute::Device { dst, ifindex, src } => {
                json!({"dst": dst.to_string(), "kind": "tun", "ifindex": ifindex, "src": src.map(|a| a.to_string())})
            }
            WeftRoute::NodeHost {
                dst,
                ifindex,
                gateway,
            } => {
                json!({"dst": dst.to_string(), "kind": "node", "ifindex": ifindex, "via": gateway.map(|a| a.to_string()), "table": crate::kernel::routes::WEFT_TABLE})
            }
            WeftRoute::Onlink {
                dst,
                gateway,
                ifindex,
                src,
            } => {
                json!({"dst": dst.to_string(), "kind": "kernel-vxlan", "via": gateway.to_string(), "ifindex": ifindex, "src": src.map(|a| a.to_string())})
            }
            WeftRoute::Blackhole { dst } => json!({"dst": dst.to_string(), "kind": "blackhole"}),
            WeftRoute::Via {
                dst,
                gateway,
                ifindex,
            } => json!({"dst": dst.to_string(), "kind": "direct", "via": gateway.to_string(), "ifindex": ifindex}),
        })
        .collect())
}

fn fdb(node: &Node) -> Value {
    let snap = node.fdb.snapshot();
    let blocks: Vec<Value> = snap
        .blocks()
        .map(|(p, e)| {
            json!({
                "block": p.to_string(),
                "node": e.value.node.as_str(),
                "local": e.value.node == *snap.local_node(),
                "source": source(e.meta.source),
                "version": e.meta.version,
            })
        })
        .collect();
    let nodes: Vec<Value> = snap
        .nodes()
        .map(|(id, e)| {
            json!({
                "name": id.as_str(),
                "local": id == snap.local_node(),
                "underlay_v4": e.value.underlay_v4.map(|a| a.to_string()),
                "underlay_v6": e.value.underlay_v6.map(|a| a.to_string()),
                "vtep_mac": e.value.vtep_mac.to_string(),
                "vxlan": e.value.encaps.vxlan,
                "ipip": e.value.encaps.ipip,
                "source": source(e.meta.source),
            })
        })
        .collect();
    json!({ "seq": snap.seq(), "blocks": blocks, "nodes": nodes })
}

fn endpoints(node: &Node) -> Value {
    let snap = node.fdb.snapshot();
    let eps: Vec<Value> = snap
        .endpoints()
        .map(|(ip, e)| {
            json!({
                "ip": ip.to_string(),
                "node": e.value.node.as_str(),
                "local": e.value.node == *snap.local_node(),
                "mac": e.value.mac.to_string(),
                "source": source(e.meta.source),
            })
        })
        .collect();
    json!({ "endpoints": eps })
}

fn groups(node: &Node) -> Value {
    let Some(m) = &node.multicast else {
        return json!({ "enabled": false, "groups": [] });
    };
    let names: std::collections::HashMap<u32, String> = nix::net::if_::if_nameindex()
        .map(|all| {
            all.iter()
                .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let local = m.local_members();
    let remote = m.remote_members();
    let mut all: Vec<std::net::IpAddr> = local.keys().chain(remote.keys()).copied().collect();
    all.sort();
    all.dedup();
    let groups: Vec<Value> = all
        .iter()
        .map(|g| {
            let ports: Vec<Value> = local
                .get(g)
                .into_iter()
                .flatten()
                .map(|i| json!(names.get(i).cloned().unwrap_or_else(|| format!("#{i}"))))
                .collect();
            let mut nodes: Vec<&str> = remote
                .get(g)
                .into_iter()
                .flatten()
                .map(|n| n.as_str())
                .collect();
            nodes.sort();
            json!({ "group": g.to_string(), "local_ports": ports, "nodes": nodes })
        })
        .collect();
    json!({ "enabled": true, "groups": groups })
}

fn stats(node: &Node) -> Value {
    let workers: Vec<&counters::WorkerCounters> =
        node.counters.iter().map(|c| c.as_ref()).collect();
    let others = node.other_counters();
    let others: Vec<&counters::WorkerCounters> = others.iter().map(|c| c.as_ref()).collect();
    let mut v = counters::snapshot_refs(&workers, &others);
    if let Some(g) = &node.gossip {
        v["gossip"] = g.status.lock().expect("not poisoned").to_json();
    }
    if let Some(k) = &node.kernel_path {
        v["kernel_path"] = crate::daemon::kernel_path::stats(k);
    }
    v
}

fn health(node: &Node) -> Value {
    let mut reasons = Vec::new();
    if local_blocks(node).is_empty() {
        reasons.push("no pod block yet");
    }
    if let Some(g) = &node.gossip {
        let st = g.status.lock().expect("not poisoned");
        if !st.joined && !st.members.is_empty() {
            reasons.push("not joined to the cluster");
        }
    }
    json!({ "live": true, "ready": reasons.is_empty(), "reasons": reasons })
}
