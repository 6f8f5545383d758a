//! Two node namespaces joined by one underlay veth (`u1` 10.99.0.1/24 in
//! node 1, `u2` 10.99.0.2/24 in node 2), with the namespaces, daemons and
//! files a test adds to them; all of it removed on drop, whatever happened.

#![allow(dead_code)]

use super::{enter, first_netns, ip, ok, wait_until_up};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static N: AtomicUsize = AtomicUsize::new(0);

/// The two nodes and what a test added.
pub struct TwoNodes {
    /// Unique prefix of every namespace name (`TAG<pid>x<n>`).
    pub prefix: String,
    /// A scratch directory for configurations, sockets and state.
    pub dir: PathBuf,
    /// Namespaces to delete, in creation order.
    pub namespaces: Vec<String>,
    /// Daemons to kill, one slot per node.
    pub daemons: Vec<Option<Child>>,
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        for d in self.daemons.iter_mut().flatten() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TwoNodes {
    /// Builds them, namespaces named after `tag`; None if namespaces cannot
    /// be made and WEFT_SKIP_NETNS=1 (otherwise that fails the test).
    pub fn new(tag: &str) -> Option<TwoNodes> {
        let prefix = format!(
            "{tag}{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        if !first_netns(&format!("{prefix}-n1")) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("{prefix}-dir"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = TwoNodes {
            prefix: prefix.clone(),
            dir,
            namespaces: vec![format!("{prefix}-n1")],
            daemons: vec![None, None],
        };
        let (n1, n2) = (c.node(1), c.node(2));
        ok(&["netns", "add", &n2]);
        c.namespaces.push(n2.clone());
        ok(&[
            "-n", &n1, "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &n2,
        ]);
        for (k, ns, dev) in [(1, &n1, "u1"), (2, &n2, "u2")] {
            let addr = format!("10.99.0.{k}/24");
            ok(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ok(&["-n", ns, "link", "set", dev, "up"]);
            ok(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Some(c)
    }

    /// Node `k`'s namespace (1 or 2).
    pub fn node(&self, k: usize) -> String {
        format!("{}-n{k}", self.prefix)
    }

    /// Where weftd on node `k` writes its stats (tests' configurations
    /// point it here).
    pub fn stats_path(&self, k: usize) -> PathBuf {
        self.dir.join(format!("stats{k}.json"))
    }

    /// weftd's counters on node `k`, from a stats file written after this
    /// call began.
    pub fn stats(&self, k: usize) -> serde_json::Value {
        super::fresh_json(&self.stats_path(k), &format!("stats from node {k}"))
    }

    /// Starts weftd with `config` in node `k` (a stale stats file removed
    /// first) and waits until `ready` says it is up.
    pub fn start_weftd(&mut self, k: usize, config: &Path, ready: impl Fn(&TwoNodes) -> bool) {
        let _ = std::fs::remove_file(self.stats_path(k));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weftd"));
        cmd.env_clear()
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: setns only, between fork and exec.
        unsafe { cmd.pre_exec(enter(&self.node(k))) };
        let mut d = cmd.spawn().unwrap();
        wait_until_up(&mut d, &format!("weftd on node {k}"), || ready(self));
        self.daemons[k - 1] = Some(d);
    }

    /// Kills node `k`'s daemon with SIGKILL.
    pub fn kill_weftd(&mut self, k: usize) {
        let mut d = self.daemons[k - 1].take().unwrap();
        d.kill().unwrap();
        d.wait().unwrap();
    }

    /// How many routes weft (protocol 87) has in node `k`, both families.
    pub fn weft_routes(&self, k: usize) -> usize {
        super::weft_route_lines(&self.node(k)).lines().count()
    }

    /// A further namespace named `PREFIX-suffix`, loopback up; deleted on
    /// drop.
    pub fn namespace(&mut self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.prefix);
        ok(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ok(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }
}

/// A pod the CNI plugin wired: its namespace and addresses.
pub struct Pod {
    /// Its network namespace.
    pub ns: String,
    /// Its IPv4 address.
    pub v4: IpAddr,
    /// Its IPv6 address.
    pub v6: IpAddr,
}

impl Pod {
    /// The pod in `ns`, with the two addresses (IPv4 first) of the CNI
    /// ADD result `v`.
    pub fn from_add(ns: String, v: &serde_json::Value) -> Pod {
        let addr = |i: usize| -> IpAddr {
            v["ips"][i]["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("address {i} in the CNI result: {v}"))
        };
        Pod {
            ns,
            v4: addr(0),
            v6: addr(1),
        }
    }
}
