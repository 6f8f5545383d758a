//! A lab of the repository's own `netns-lab/lab.sh`, with a unique prefix
//! and state directory, torn down by Drop (on failure too).

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A running (or about to run) lab.
pub struct Lab {
    /// Name prefix of its namespaces.
    pub prefix: String,
    /// Its state directory.
    pub state: PathBuf,
}

impl Lab {
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_with_env(args, &[])
    }

    /// `lab.sh ARGS` with extra environment variables (weftd inherits them).
    pub fn cmd_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let bin = Path::new(env!("CARGO_BIN_EXE_weftd")).parent().unwrap();
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/netns-lab/lab.sh"))
            .args(args)
            .env("WEFT_LAB_PREFIX", &self.prefix)
            .env("WEFT_LAB_STATE", &self.state)
            .env("WEFT_LAB_BIN", bin)
            .envs(env.iter().copied())
            .output()
            .expect("run netns-lab/lab.sh")
    }

    /// `lab.sh ARGS`, which must succeed; its output.
    pub fn run(&self, args: &[&str]) -> String {
        self.run_with_env(args, &[])
    }

    /// [`Lab::run`] with extra environment variables (weftd inherits them).
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.cmd_with_env(args, env);
        assert!(
            out.status.success(),
            "lab.sh {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `(pod namespace, IP, node)` per pod.
    pub fn pods(&self) -> Vec<(String, String, String)> {
        self.run(&["pods"])
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].into(), f[1].into(), f[2].into())
            })
            .collect()
    }

    pub fn ns(&self, k: usize) -> String {
        format!("{}-n{k}", self.prefix)
    }

    /// Remote-block routes (dev weft0) on node `k`.
    pub fn routes(&self, k: usize) -> Vec<String> {
        let out = super::ip(&["-n", &self.ns(k), "route", "show", "proto", "87"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }

    pub fn block_of(&self, k: usize) -> String {
        let text = std::fs::read_to_string(self.state.join(format!("blocks-n{k}.json"))).unwrap();
        let v: Json = serde_json::from_str(&text).unwrap();
        v["blocks"][0].as_str().unwrap().to_string()
    }

    /// Node `k`'s counters (the whole stats file), written after now.
    pub fn stats(&self, k: usize) -> Json {
        let path = self.state.join(format!("stats-n{k}.json"));
        let start = std::time::SystemTime::now();
        loop {
            if let Ok(m) = std::fs::metadata(&path) {
                if m.modified().unwrap() > start + Duration::from_millis(50) {
                    if let Ok(v) = serde_json::from_str::<Json>(
                        &std::fs::read_to_string(&path).unwrap_or_default(),
                    ) {
                        return v;
                    }
                }
            }
            assert!(
                start.elapsed().unwrap() < Duration::from_secs(10),
                "no fresh stats"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `weftctl --json status` of node `k` (weftd must answer).
    pub fn status(&self, k: usize) -> Json {
        self.weftctl(k, "status")
    }

    /// `weftctl --json CMD` of node `k` (weftd must answer).
    pub fn weftctl(&self, k: usize, cmd: &str) -> Json {
        let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
            .arg("--socket")
            .arg(self.state.join(format!("admin-n{k}.sock")))
            .args(["--json", cmd])
            .output()
            .expect("run weftctl");
        assert!(
            out.status.success(),
            "weftctl {cmd} on node {k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("weftctl --json gives JSON")
    }

    /// Where node `k`'s tunnels to its peer `name` go, as `weftctl status`
    /// shows it.
    pub fn peer_underlay(&self, k: usize, name: &str) -> String {
        let v = self.status(k);
        let peers = v["peers"].as_array().expect("status lists peers");
        let p = peers.iter().find(|p| p["name"] == name);
        p.unwrap_or_else(|| panic!("n{k} knows {name}: {v}"))["underlay"]
            .as_str()
            .unwrap_or_else(|| panic!("n{k} has an underlay address for {name}: {v}"))
            .to_string()
    }

    /// Node `k`'s gossip counters, from a stats file written after now.
    pub fn gossip_stats(&self, k: usize) -> Json {
        self.stats(k)["gossip"].clone()
    }

    pub fn all_pods_reach_all_pods(&self) {
        let pods = self.pods();
        for (from, _, _) in &pods {
            for (to, addrs, _) in &pods {
                if from == to {
                    continue;
                }
                for addr in addrs.split(',') {
                    let ok = (0..3).any(|_| {
                        Command::new("ip")
                            .args(["netns", "exec", from, "ping", "-c", "1", "-W", "1", addr])
                            .output()
                            .unwrap()
                            .status
                            .success()
                    });
                    assert!(ok, "{from} cannot reach {to} ({addr})");
                }
            }
        }
    }

    /// Waits until `cond` holds, polling; returns the time it took.
    pub fn until(&self, what: &str, limit: Duration, cond: impl Fn() -> bool) -> Duration {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        t0.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.cmd(&["down"]);
        if !out.status.success() {
            eprintln!("lab down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// A new lab handle; None if namespaces cannot be made and
/// WEFT_SKIP_NETNS=1 (fails loudly otherwise).
pub fn lab(tag: &str) -> Option<Lab> {
    let prefix = format!("{tag}{}", std::process::id());
    let probe = super::ip(&["netns", "add", &format!("{prefix}-probe")]);
    if !probe.status.success() {
        if std::env::var("WEFT_SKIP_NETNS").as_deref() == Ok("1") {
            return None;
        }
        panic!(
            "cannot create network namespaces ({}); run as root or set WEFT_SKIP_NETNS=1",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }
    super::ok(&["netns", "del", &format!("{prefix}-probe")]);
    Some(Lab {
        state: PathBuf::from(format!("/run/weft-test-{prefix}")),
        prefix,
    })
}
