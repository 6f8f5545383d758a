//! Prometheus metrics over HTTP (`GET /metrics`), off by default.
//!
//! A prometheus-client collector reads the node's live counters on every
//! scrape (per-worker counters summed, gossip status, fdb sizes), so the
//! data path keeps its own lock-free counters and pays nothing for metrics.
//! HTTP comes from tiny_http on its own thread.

use super::node::Node;
use crate::dataplane::counters::{self, DropReason, WorkerCounters, COUNTERS, PER_WORKER};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
struct NodeCollector(Arc<Node>);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.name)
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let node = &self.0;
        let workers: Vec<&WorkerCounters> = node.counters.iter().map(|w| w.as_ref()).collect();
        let others = node.other_counters();
        let all: Vec<&WorkerCounters> = workers
            .iter()
            .copied()
            .chain(others.iter().map(|w| w.as_ref()))
            .collect();
        for c in &COUNTERS {
            let name = format!("weft_{}", c.name);
            counter(&mut e, &name, c.help, counters::sum(&all, c.get))?;
        }
        for c in PER_WORKER {
            let zero = ConstCounter::new(0u64);
            let (name, help) = (
                format!("weft_worker_{}", c.name),
                format!("{} Per worker thread.", c.help),
            );
            let mut m = e.encode_descriptor(&name, &help, None, zero.metric_type())?;
            for (i, w) in workers.iter().enumerate() {
                let n = (c.get)(w).load(std::sync::atomic::Ordering::Relaxed);
                ConstCounter::new(n).encode(m.encode_family(&[("worker", i.to_string())])?)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut m = e.encode_descriptor(
                "weft_drops",
                "Packets dropped, by reason.",
                None,
                c.metric_type(),
            )?;
            for why in DropReason::ALL {
                let n = counters::sum(&all, |w| &w.drops[why as usize]);
                ConstCounter::new(n).encode(m.encode_family(&[("reason", why.name())])?)?;
            }
        }
        if let Some(k) = &node.kernel_path {
            // The kernel path: the vxlan device's counters and the receive
            // checks' drops (the workers' counters above stay at zero).
            let v = super::kernel_path::stats(k);
            for c in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
                counter(
                    &mut e,
                    &format!("weft_kernel_path_{c}"),
                    "The kernel path's vxlan device.",
                    v[c].as_u64().unwrap_or(0),
                )?;
            }
            let zero = ConstCounter::new(0u64);
            let mut m = e.encode_descriptor(
                "weft_kernel_path_drops",
                "Packets the kernel path dropped, by reason (device counters and receive checks).",
                None,
                zero.metric_type(),
            )?;
            for (why, n) in v["drops"].as_object().into_iter().flatten() {
                ConstCounter::new(n.as_u64().unwrap_or(0))
                    .encode(m.encode_family(&[("reason", why.as_str())])?)?;
            }
        }
        let snap = node.fdb.snapshot();
        let counts = snap.counts();
        gauge(
            &mut e,
            "weft_fdb_blocks",
            "Blocks in the forwarding table.",
            counts.blocks as f64,
        )?;
        gauge(
            &mut e,
            "weft_fdb_nodes",
            "Nodes in the forwarding table.",
            counts.nodes as f64,
        )?;
        gauge(
            &mut e,
            "weft_fdb_endpoints",
            "Endpoints in the forwarding table.",
            counts.endpoints as f64,
        )?;
        {
            let g0 = ConstGauge::new(0i64);
            let mut m = e.encode_descriptor(
                "weft_blocks",
                "Pod blocks each node holds, as this node's forwarding table has them.",
                None,
                g0.metric_type(),
            )?;
            let mut per_node: std::collections::BTreeMap<&str, i64> =
                snap.nodes().map(|(id, _)| (id.as_str(), 0)).collect();
            for (_, b) in snap.blocks() {
                *per_node.entry(b.value.node.as_str()).or_default() += 1;
            }
            for (name, n) in per_node {
                ConstGauge::new(n).encode(m.encode_family(&[("node", name)])?)?;
            }
        }
        // IPAM usage as weftd sees it: local pod addresses the CNI plugin
        // reported, against the size of this node's blocks.
        let local = snap.local_node().clone();
        let used = snap
            .endpoints()
            .filter(|(_, ep)| ep.value.node == local)
            .count();
        let capacity: f64 = snap
            .blocks()
            .filter(|(_, b)| b.value.node == local)
            .map(|(p, _)| 2f64.powi(i32::from(p.max_prefix_len() - p.prefix_len())))
            .sum();
        gauge(
            &mut e,
            "weft_ipam_addresses_used",
            "Pod addresses in use on this node.",
            used as f64,
        )?;
        gauge(
            &mut e,
            "weft_ipam_addresses",
            "Pod addresses in this node's blocks.",
            capacity,
        )?;
        gauge(
            &mut e,
            "weft_uptime_seconds",
            "Seconds since weftd started.",
            node.started.elapsed().as_secs_f64(),
        )?;
        let Some(g) = &node.gossip else { return Ok(()) };
        let st = g.status.lock().expect("not poisoned").clone();
        {
            let g0 = ConstGauge::new(0i64);
            let mut m = e.encode_descriptor(
                "weft_gossip_members",
                "Cluster members by state.",
                None,
                g0.metric_type(),
            )?;
            let up = st.members.iter().filter(|m| m.up).count() as i64;
            ConstGauge::new(up).encode(m.encode_family(&[("state", "up")])?)?;
            ConstGauge::new(st.members.len() as i64 - up)
                .encode(m.encode_family(&[("state", "down")])?)?;
        }
        counter(
            &mut e,
            "weft_gossip_received_datagrams",
            "Authenticated control datagrams received.",
            st.counters.received,
        )?;
        counter(
            &mut e,
            "weft_gossip_sent_datagrams",
            "Control datagrams sent.",
            st.counters.sent,
        )?;
        counter(
            &mut e,
            "weft_gossip_sent_bytes",
            "Control bytes sent.",
            st.counters.bytes_sent,
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut m = e.encode_descriptor(
                "weft_gossip_drops",
                "Control datagrams and records refused, by reason.",
                None,
                c.metric_type(),
            )?;
            for (reason, n) in &st.counters.dropped {
                ConstCounter::new(*n).encode(m.encode_family(&[("reason", *reason)])?)?;
            }
        }
        gauge(
            &mut e,
            "weft_gossip_records",
            "Records in the replicated state.",
            st.counters.records as f64,
        )?;
        counter(
            &mut e,
            "weft_gossip_member_downs",
            "Members declared down.",
            st.member_downs,
        )?;
        if let Some(s) = st.join_seconds {
            gauge(
                &mut e,
                "weft_gossip_join_seconds",
                "Seconds from start until this node joined.",
                s,
            )?;
        }
        if let Some(s) = st.block_seconds {
            gauge(
                &mut e,
                "weft_gossip_block_seconds",
                "Seconds from start until this node held a block.",
                s,
            )?;
        }
        if let Some(s) = st.last_failure_detection_seconds {
            gauge(
                &mut e,
                "weft_gossip_last_failure_detection_seconds",
                "Last member failure: seconds from its last datagram to its declared death.",
                s,
            )?;
        }
        Ok(())
    }
}

/// Serves `GET /metrics` on `listen` from a thread.
pub fn serve(listen: SocketAddr, node: Arc<Node>) -> Result<(), String> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector(node)));
    let server =
        tiny_http::Server::http(listen).map_err(|e| format!("metrics.listen {listen}: {e}"))?;
    std::thread::Builder::new()
        .name("weft-metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let resp = if req.url() == "/metrics" {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => tiny_http::Response::from_string(body).with_header(
                            "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
                                .parse::<tiny_http::Header>()
                                .expect("static header"),
                        ),
                        Err(_) => tiny_http::Response::from_string("encoding failed").with_status_code(500),
                    }
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                let _ = req.respond(resp);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
