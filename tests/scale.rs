//! Pods at cluster scale, through `netns-lab/lab.sh` as users run it: a
//! node with /26 blocks (63 pod addresses each) grows to 250 pods by
//! claiming more blocks (ahead of demand, and on demand when ADDs outrun
//! that), every pod reachable from another node; removing 200 of them gives
//! the emptied blocks back but one (the headroom; routes, fdb, blocks file
//! and weftctl follow), and the node claims again when it grows again.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

mod support;

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;
use support::lab::Lab;

/// The blocks node `k` published for the CNI plugin.
fn published(lab: &Lab, k: usize) -> Vec<IpNet> {
    let text = std::fs::read_to_string(lab.state.join(format!("blocks-n{k}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().parse().unwrap())
        .collect()
}

/// n1's pods: (namespace, address).
fn pods_of_n1(lab: &Lab) -> Vec<(String, IpAddr)> {
    lab.pods()
        .into_iter()
        .filter(|p| p.2 == "n1")
        .map(|p| (p.0, p.1.parse().unwrap()))
        .collect()
}

/// The blocks `weftctl status` on node `k` shows for peer `peer`.
fn peer_blocks(lab: &Lab, k: usize, peer: &str) -> usize {
    let v = lab.status(k);
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == peer)
        .map_or(0, |p| p["blocks"].as_array().unwrap().len())
}

/// Every address answers a ping from `from` (a few tries each).
fn all_reachable(from: &str, addrs: &[IpAddr]) {
    let mut unreachable = Vec::new();
    for a in addrs {
        let ok = (0..3).any(|_| {
            Command::new("ip")
                .args(["netns", "exec", from, "ping", "-c1", "-W1", "-q"])
                .arg(a.to_string())
                .output()
                .unwrap()
                .status
                .success()
        });
        if !ok {
            unreachable.push(*a);
        }
    }
    assert!(
        unreachable.is_empty(),
        "{from} cannot reach {unreachable:?}"
    );
}

/// One pod on n1 wired by the plugin as a runtime runs it (through `ip
/// netns exec` into the node): its wall time. Recorded like the lab's pods.
fn timed_add(lab: &Lab, j: usize) -> Duration {
    let pod = format!("{}-p{j}", lab.ns(1));
    support::ok(&["netns", "add", &pod]);
    let blocks = std::fs::read_to_string(lab.state.join("pod-blocks-n1")).unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.1.0","name":"weft","type":"weft",{},"stateDir":"{}/cni-n1","weftdSocket":"{}/cni-n1.sock"}}"#,
        blocks.trim(),
        lab.state.display(),
        lab.state.display()
    );
    let t0 = std::time::Instant::now();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns(1), "env", "-i", "CNI_COMMAND=ADD"])
        .arg(format!("CNI_CONTAINERID={pod}"))
        .arg("CNI_IFNAME=eth0")
        .arg(format!("CNI_NETNS=/var/run/netns/{pod}"))
        .arg(env!("CARGO_BIN_EXE_weft"))
        .stdout(std::process::Stdio::piped());
    let child = support::spawn_with_stdin(&mut cmd, conf.as_bytes());
    let out = child.wait_with_output().unwrap();
    let took = t0.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    let ip = v["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    std::fs::write(lab.state.join(format!("{pod}.ip")), ip).unwrap();
    took
}

#[test]
fn a_node_grows_to_250_pods_on_demand_and_gives_emptied_blocks_back() {
    let Some(lab) = support::lab::lab("wsc") else {
        return;
    };
    lab.run(&["up", "--nodes", "2", "--pods", "1", "--block-release", "3"]);
    lab.run(&["wait", "30"]);
    assert_eq!(published(&lab, 1).len(), 1);

    // Fill the first block but one address, then time two ADDs as a
    // runtime runs them: the last address of the block, and the first of
    // the next (claimed ahead of demand while the first filled up, or on
    // demand if the ADDs outran that).
    assert_eq!(lab.run(&["add-pods", "1", "61"]).trim(), "61");
    let fits = timed_add(&lab, 901);
    let ahead = published(&lab, 1).len() == 2;
    let next = timed_add(&lab, 902);
    let how = if ahead {
        "published before the ADD"
    } else {
        "the ADD waited for its claim to settle"
    };
    eprintln!("CNI ADD wall time: {fits:?} (the block's last address), {next:?} (the next block's first, {how})");
    assert_eq!(published(&lab, 1).len(), 2);
    // 186 more pods on n1, four ADDs at a time: blocks claimed on demand.
    let wired = lab.run(&["add-pods", "1", "186"]);
    assert_eq!(wired.trim(), "186");
    let pods = pods_of_n1(&lab);
    assert_eq!(pods.len(), 250);
    let addrs: BTreeSet<IpAddr> = pods.iter().map(|p| p.1).collect();
    assert_eq!(addrs.len(), 250, "every pod address unique");
    let blocks = published(&lab, 1);
    assert!(blocks.len() >= 4, "{blocks:?}");
    assert!(blocks.iter().all(|b| b.prefix_len() == 26));
    for a in &addrs {
        assert!(
            blocks.iter().any(|b| b.contains(a)),
            "{a} outside {blocks:?}"
        );
    }
    // n2 routes every block of n1, its pod reaches every pod of n1, and
    // weftctl and the metrics count them.
    lab.until("n2 routes n1's blocks", Duration::from_secs(20), || {
        blocks
            .iter()
            .all(|b| lab.routes(2).iter().any(|r| r.starts_with(&b.to_string())))
    });
    let n2_pod = format!("{}-p1", lab.ns(2));
    let list: Vec<IpAddr> = addrs.iter().copied().collect();
    all_reachable(&n2_pod, &list);
    lab.until(
        "weftctl on n2 counts n1's blocks",
        Duration::from_secs(20),
        || peer_blocks(&lab, 2, "n1") == published(&lab, 1).len(),
    );

    // 200 pods go: the emptied blocks go back (after 3 s), routes follow.
    lab.run(&["del-pods", "1", "200"]);
    let left = pods_of_n1(&lab);
    assert_eq!(left.len(), 50);
    let in_use: BTreeSet<IpNet> = blocks
        .iter()
        .filter(|b| left.iter().any(|p| b.contains(&p.1)))
        .copied()
        .collect();
    // One empty block stays: the headroom a node keeps ahead of demand (a
    // quarter of a block free; the 50 pods leave 13 in theirs).
    lab.until("emptied blocks given back", Duration::from_secs(30), || {
        let now = published(&lab, 1);
        now.len() == in_use.len() + 1 && in_use.iter().all(|b| now.contains(b))
    });
    let kept = published(&lab, 1);
    lab.until("n2 sees them go", Duration::from_secs(20), || {
        peer_blocks(&lab, 2, "n1") == kept.len()
            && blocks
                .iter()
                .filter(|b| !kept.contains(b))
                .all(|b| !lab.routes(2).iter().any(|r| r.starts_with(&b.to_string())))
    });
    let left_addrs: Vec<IpAddr> = left.iter().map(|p| p.1).collect();
    all_reachable(&n2_pod, &left_addrs);

    // Growing again claims again, and the new pods are reachable.
    assert_eq!(lab.run(&["add-pods", "1", "100"]).trim(), "100");
    let again = published(&lab, 1);
    assert!(again.len() > kept.len(), "{again:?}");
    let fresh: Vec<IpAddr> = pods_of_n1(&lab)
        .into_iter()
        .map(|p| p.1)
        .filter(|a| !left_addrs.contains(a))
        .collect();
    assert_eq!(fresh.len(), 100);
    lab.until("n2 routes the new blocks", Duration::from_secs(20), || {
        again
            .iter()
            .all(|b| lab.routes(2).iter().any(|r| r.starts_with(&b.to_string())))
    });
    all_reachable(&n2_pod, &fresh);
}
