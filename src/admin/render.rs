//! Human-readable tables of admin answers (weftctl without `--json`).

use serde_json::Value;
use std::fmt::Write;

/// Aligned columns: a header row, then rows.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.collect();
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                let _ = write!(out, "{c}");
            } else {
                let _ = write!(out, "{c:<w$}  ", w = width[i]);
            }
        }
        out.push('\n');
    };
    line(&mut out, &mut header.iter().map(|h| h.to_uppercase()));
    for r in rows {
        line(&mut out, &mut r.iter().cloned());
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn rtt(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

/// `weftctl status`.
pub fn status(v: &Value) -> String {
    let mut out = format!(
        "node {}  underlay {}  vtep mac {}  encap {}  path {}  attach {}  vni {}  mtu {}  workers {}  up {} s\nblocks {}\n",
        s(&v["node"]),
        s(&v["underlay"]),
        s(&v["vtep_mac"]),
        s(&v["encap"]),
        match v["kernel_device"].as_str() {
            Some(dev) => format!("kernel ({dev})"),
            None => s(&v["path"]),
        },
        s(&v["attach"]),
        s(&v["vni"]),
        s(&v["overlay_mtu"]),
        s(&v["workers"]),
        s(&v["uptime_s"]),
        s(&v["blocks"]),
    );
    if let Some(ports) = v["ports"].as_array() {
        let rows: Vec<Vec<String>> = ports
            .iter()
            .map(|p| vec![s(&p["name"]), s(&p["ifindex"]), s(&p["mac"]), s(&p["ips"])])
            .collect();
        out.push_str(&table(&["port", "ifindex", "pod mac", "pod ips"], &rows));
    }
    if let Some(errors) = v["kernel_errors"].as_object().filter(|e| !e.is_empty()) {
        for (what, e) in errors {
            let _ = writeln!(out, "kernel {what}: FAILING: {}", s(e));
        }
    }
    let c = &v["convergence"];
    let _ = writeln!(
        out,
        "convergence: {} ({} blocks in fdb, {} kernel routes)",
        if c["converged"] == Value::Bool(true) {
            "converged"
        } else {
            "NOT converged"
        },
        s(&c["fdb_blocks"]),
        s(&c["kernel_routes"]),
    );
    match &v["gossip"] {
        Value::Null => out.push_str("gossip: off (static peers)\n"),
        g => {
            let _ = writeln!(
                out,
                "gossip: {}, {} members up, {} down",
                if g["joined"] == Value::Bool(true) {
                    "joined"
                } else {
                    "not joined"
                },
                s(&g["members_up"]),
                s(&g["members_down"]),
            );
        }
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = v["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                s(&p["name"]),
                s(&p["state"]),
                s(&p["underlay"]),
                rtt(&p["rtt_us"]),
                s(&p["path"]),
                s(&p["encap"]),
                s(&p["source"]),
                s(&p["blocks"]),
            ]
        })
        .collect();
    out + &table(
        &[
            "peer", "state", "underlay", "rtt", "path", "encap", "source", "blocks",
        ],
        &rows,
    )
}

/// `weftctl routes`.
pub fn routes(v: &Value) -> String {
    // Block routes, then nodes' own addresses (weft's table, for pods).
    let rows: Vec<Vec<String>> = v["routes"]
        .as_array()
        .into_iter()
        .chain(v["node_routes"].as_array())
        .flatten()
        .map(|r| vec![s(&r["dst"]), s(&r["kind"]), s(&r["via"]), s(&r["ifindex"])])
        .collect();
    table(&["destination", "kind", "via", "ifindex"], &rows)
}

/// `weftctl fdb`.
pub fn fdb(v: &Value) -> String {
    let blocks: Vec<Vec<String>> = v["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            vec![
                s(&b["block"]),
                s(&b["node"]),
                if b["local"] == Value::Bool(true) {
                    "local".into()
                } else {
                    "remote".into()
                },
                s(&b["source"]),
                s(&b["version"]),
            ]
        })
        .collect();
    let nodes: Vec<Vec<String>> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let mut enc = Vec::new();
            if n["vxlan"] == Value::Bool(true) {
                enc.push("vxlan");
            }
            if n["ipip"] == Value::Bool(true) {
                enc.push("ipip");
            }
            vec![
                s(&n["name"]),
                s(&n["underlay_v4"]),
                s(&n["underlay_v6"]),
                s(&n["vtep_mac"]),
                enc.join(","),
                s(&n["source"]),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table(&["block", "node", "where", "source", "version"], &blocks),
        table(
            &[
                "node",
                "underlay v4",
                "underlay v6",
                "vtep mac",
                "encaps",
                "source"
            ],
            &nodes
        )
    )
}

/// `weftctl endpoints`.
pub fn endpoints(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| vec![s(&e["ip"]), s(&e["node"]), s(&e["mac"]), s(&e["source"])])
        .collect();
    table(&["ip", "node", "mac", "source"], &rows)
}

/// `weftctl groups`.
pub fn groups(v: &Value) -> String {
    if v["enabled"] == Value::Bool(false) {
        return "multicast is off on this node (multicast.enabled = false, or the kernel path)\n"
            .into();
    }
    let join = |a: &Value| {
        let all: Vec<String> = a.as_array().into_iter().flatten().map(s).collect();
        if all.is_empty() {
            "-".to_string()
        } else {
            all.join(",")
        }
    };
    let rows: Vec<Vec<String>> = v["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| vec![s(&g["group"]), join(&g["local_ports"]), join(&g["nodes"])])
        .collect();
    table(
        &[
            "group",
            "member pods here (host ports)",
            "other nodes with members",
        ],
        &rows,
    )
}

/// `weftctl stats`.
pub fn stats(v: &Value) -> String {
    let mut rows = vec![
        vec!["tx packets".into(), s(&v["tx_packets"])],
        vec!["tx bytes".into(), s(&v["tx_bytes"])],
        vec!["rx packets".into(), s(&v["rx_packets"])],
        vec!["rx bytes".into(), s(&v["rx_bytes"])],
        vec!["rx super-packets".into(), s(&v["rx_super_packets"])],
        vec!["rx underlay GRO".into(), s(&v["rx_underlay_gro"])],
        vec!["arp replies".into(), s(&v["arp_replies"])],
        vec!["nd replies".into(), s(&v["nd_replies"])],
        vec!["gateway replies".into(), s(&v["gateway_replies"])],
        vec!["local packets".into(), s(&v["local_packets"])],
        vec!["multicast copies".into(), s(&v["multicast_copies"])],
        vec!["multicast copy bytes".into(), s(&v["multicast_copy_bytes"])],
        vec!["multicast local".into(), s(&v["multicast_local"])],
        vec!["multicast reports".into(), s(&v["multicast_reports"])],
        vec!["multicast queries".into(), s(&v["multicast_queries"])],
    ];
    for (k, n) in v["drops"].as_object().into_iter().flatten() {
        rows.push(vec![format!("drop {k}"), s(n)]);
    }
    for (i, w) in v["workers"].as_array().into_iter().flatten().enumerate() {
        for (k, n) in w.as_object().into_iter().flatten() {
            rows.push(vec![format!("worker {i} {}", k.replace('_', " ")), s(n)]);
        }
    }
    if let Some(k) = v["kernel_path"].as_object() {
        for c in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
            rows.push(vec![
                format!("kernel path {}", c.replace('_', " ")),
                s(&k[c]),
            ]);
        }
        for (c, n) in k["drops"].as_object().into_iter().flatten() {
            rows.push(vec![format!("kernel path drop {c}"), s(n)]);
        }
    }
    if let Some(g) = v["gossip"].as_object() {
        for k in ["received", "sent", "bytes_sent", "records", "endpoints"] {
            rows.push(vec![format!("gossip {k}"), s(&g[k])]);
        }
        for (k, n) in g["drops"].as_object().into_iter().flatten() {
            rows.push(vec![format!("gossip drop {k}"), s(n)]);
        }
    }
    table(&["counter", "value"], &rows)
}

/// `weftctl trace`.
pub fn trace(v: &Value) -> String {
    let mut out = format!("verdict: {}", s(&v["verdict"]));
    if let Some(r) = v["reason"].as_str() {
        let _ = write!(out, " ({r})");
    }
    out.push('\n');
    for (i, step) in v["steps"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, s(step));
    }
    out
}

/// `weftctl health`.
pub fn health(v: &Value) -> String {
    if v["ready"] == Value::Bool(true) {
        "live, ready\n".into()
    } else {
        format!("live, NOT ready: {}\n", s(&v["reasons"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["xxx".into(), "1".into()],
                vec!["y".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    BB\nxxx  1\ny    22\n");
    }
}
