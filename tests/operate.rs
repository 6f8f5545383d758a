//! Operating weft: weftctl against real weftd processes in the lab, every
//! subcommand as a table and as JSON; Prometheus metrics scraped over HTTP
//! and parsed.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn weftctl(lab: &support::lab::Lab, k: usize, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("--socket")
        .arg(lab.state.join(format!("admin-n{k}.sock")))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success() || args.contains(&"health"),
        "weftctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn json(lab: &support::lab::Lab, k: usize, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (_, text) = weftctl(lab, k, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// GET /metrics on 127.0.0.1:9647 inside node `k`'s namespace.
fn scrape(lab: &support::lab::Lab, k: usize) -> String {
    let mut enter = support::enter(&lab.ns(k));
    std::thread::spawn(move || {
        enter().unwrap();
        let mut s = TcpStream::connect("127.0.0.1:9647").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap()
}

/// The value of the sample `name{labels}` in an OpenMetrics text body.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(series))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn weftctl_and_metrics_against_a_running_cluster() {
    let Some(lab) = support::lab::lab("wo") else {
        return;
    };
    lab.run(&["up", "--nodes", "3", "--pods", "1"]);
    lab.run(&["wait", "60"]);
    lab.all_pods_reach_all_pods();
    let pods = lab.pods();
    let (p1, p3) = (&pods[0], &pods[2]);
    lab.until("endpoints everywhere", Duration::from_secs(20), || {
        (1..=3).all(|k| lab.gossip_stats(k)["endpoints"] == 3)
    });

    // status
    let st = json(&lab, 1, &["status"]);
    assert_eq!(st["node"], "n1");
    let mac = st["vtep_mac"].as_str().expect("the node's VTEP MAC");
    assert!(mac.parse::<encap::MacAddr>().is_ok(), "{mac}");
    // Global options after the subcommand too, as kubectl users type them.
    let (_, after) = weftctl(&lab, 1, &["status", "--json"]);
    let after: Value = serde_json::from_str(&after).expect("JSON with --json last");
    assert_eq!(after["vtep_mac"], st["vtep_mac"]);
    assert_eq!(st["convergence"]["converged"], true, "{st}");
    assert_eq!(st["peers"].as_array().unwrap().len(), 2);
    for p in st["peers"].as_array().unwrap() {
        assert_eq!(p["state"], "up");
        assert_eq!(p["encap"], "vxlan");
        assert_eq!(p["source"], "gossip");
    }
    lab.until("RTTs measured", Duration::from_secs(20), || {
        json(&lab, 1, &["status"])["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["rtt_us"].as_u64().is_some())
    });
    let (_, table) = weftctl(&lab, 1, &["status"]);
    assert!(table.contains("convergence: converged"), "{table}");
    assert!(table.contains("PEER") && table.contains(" ms "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n2 ") && l.contains(" up ")),
        "{table}"
    );

    // routes: three weft routes, one of them the local blackhole
    let r = json(&lab, 1, &["routes"]);
    let routes = r["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3);
    assert_eq!(
        routes.iter().filter(|r| r["kind"] == "blackhole").count(),
        1
    );
    assert!(weftctl(&lab, 1, &["routes"]).1.contains("blackhole"));

    // fdb: three blocks, three nodes
    let f = json(&lab, 2, &["fdb"]);
    assert_eq!(f["blocks"].as_array().unwrap().len(), 3);
    assert_eq!(f["nodes"].as_array().unwrap().len(), 3);
    let (_, table) = weftctl(&lab, 2, &["fdb"]);
    assert!(table.contains("BLOCK") && table.contains("VTEP MAC") && table.contains("gossip"));

    // endpoints: the three pods, one of them local (from the CNI plugin)
    let e = json(&lab, 3, &["endpoints"]);
    let eps = e["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 3, "{e}");
    assert_eq!(eps.iter().filter(|e| e["source"] == "cni").count(), 1);
    assert!(weftctl(&lab, 3, &["endpoints"]).1.contains(&p1.1));

    // stats
    let s = json(&lab, 1, &["stats"]);
    assert!(s["tx_packets"].as_u64().unwrap() > 0);
    assert!(s["gossip"]["received"].as_u64().unwrap() > 0);
    assert!(weftctl(&lab, 1, &["stats"]).1.contains("drop no_route"));

    // groups: multicast is off by default (tests/multicast.rs turns it on)
    let g = json(&lab, 1, &["groups"]);
    assert_eq!(g["enabled"], false, "{g}");
    assert_eq!(g["groups"].as_array().map(Vec::len), Some(0), "{g}");
    assert!(weftctl(&lab, 1, &["groups"]).1.contains("multicast is off"));

    // trace: pod on n1 to pod on n3
    let t = json(&lab, 1, &["trace", &p1.1, &p3.1]);
    assert_eq!(t["verdict"], "forward");
    assert_eq!(t["node"], "n3");
    assert_eq!(t["how"]["peer"], "10.99.0.3");
    let (_, table) = weftctl(&lab, 1, &["trace", &p1.1, "10.9.9.9"]);
    assert!(table.contains("verdict: drop (no_route)"), "{table}");

    // health
    let (ok, text) = weftctl(&lab, 1, &["health"]);
    assert!(ok, "{text}");
    assert_eq!(text, "live, ready\n");

    // metrics
    let body = scrape(&lab, 1);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert_eq!(
        sample(&body, "weft_gossip_members{state=\"up\"}"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(sample(&body, "weft_fdb_blocks"), Some(3.0));
    for n in ["n1", "n2", "n3"] {
        let series = format!("weft_blocks{{node=\"{n}\"}}");
        assert_eq!(sample(&body, &series), Some(1.0), "{series}");
    }
    assert!(sample(&body, "weft_tx_packets_total").unwrap() > 0.0);
    assert!(sample(&body, "weft_drops_total{reason=\"no_route\"}").is_some());
    assert_eq!(sample(&body, "weft_ipam_addresses_used"), Some(1.0));
    assert_eq!(sample(&body, "weft_ipam_addresses"), Some(64.0));
    assert!(sample(&body, "weft_gossip_join_seconds").is_some());

    // After a node dies: weftctl shows it down, metrics count the detection.
    lab.run(&["kill", "3"]);
    lab.until("n3 seen down", Duration::from_secs(30), || {
        json(&lab, 1, &["status"])["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "n3")
    });
    lab.until("metrics count n3 down", Duration::from_secs(10), || {
        sample(&scrape(&lab, 1), "weft_gossip_members{state=\"down\"}") == Some(1.0)
    });
    let body = scrape(&lab, 1);
    assert_eq!(sample(&body, "weft_gossip_member_downs_total"), Some(1.0));
    let detect = sample(&body, "weft_gossip_last_failure_detection_seconds").unwrap();
    assert!(detect > 0.0 && detect < 30.0, "{detect}");
    // weftctl without weftd: a clear error, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["--socket", "/nonexistent/admin.sock", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach weftd"));
}
