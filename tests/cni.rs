//! The `weft` CNI plugin run the way a container runtime runs it: the built
//! binary, environment variables, configuration on stdin, real network
//! namespaces (a "node" namespace the plugin treats as the host, and pod
//! namespaces), real veths, addresses and routes.
//!
//! Needs root and iproute2. Fails when it cannot run, unless
//! WEFT_SKIP_NETNS=1 is set. Everything is created under a unique name
//! prefix and removed by Drop guards, on failure too.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{enter, ip, ok, spawn_with_stdin};

static LAB: AtomicUsize = AtomicUsize::new(0);

/// A node namespace, its pods' namespaces and a state directory, all
/// removed on drop.
struct Lab {
    prefix: String,
    node: String,
    pods: std::sync::Mutex<Vec<String>>,
    state: PathBuf,
}

impl Lab {
    /// None when namespaces cannot be made and WEFT_SKIP_NETNS=1.
    fn new() -> Option<Lab> {
        let prefix = format!(
            "wc{}x{}",
            std::process::id(),
            LAB.fetch_add(1, Ordering::SeqCst)
        );
        let node = format!("{prefix}-node");
        let out = ip(&["netns", "add", &node]);
        if !out.status.success() {
            if std::env::var("WEFT_SKIP_NETNS").as_deref() == Ok("1") {
                eprintln!("skipped: cannot create network namespaces (WEFT_SKIP_NETNS=1)");
                return None;
            }
            panic!(
                "cannot create a network namespace ({}); run as root, or set WEFT_SKIP_NETNS=1",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let state = std::env::temp_dir().join(format!("{prefix}-state"));
        let lab = Lab {
            prefix,
            node,
            pods: Default::default(),
            state,
        };
        // A node like a real one: an uplink with a default route (proxy ARP
        // answers for 169.254.1.1 because it routes elsewhere), forwarding on.
        lab.node_ok(&[
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
        ]);
        lab.node_ok(&["link", "set", "uplink0", "up"]);
        lab.node_ok(&["link", "set", "uplink1", "up"]);
        lab.node_ok(&["link", "set", "lo", "up"]);
        lab.node_ok(&["addr", "add", "10.99.0.1/24", "dev", "uplink0"]);
        lab.node_ok(&["route", "add", "default", "via", "10.99.0.254"]);
        for s in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let out = Command::new("ip")
                .args(["netns", "exec", &lab.node, "sysctl", "-qw", s])
                .output()
                .unwrap();
            assert!(out.status.success(), "sysctl {s}");
        }
        Some(lab)
    }

    fn node_ok(&self, args: &[&str]) {
        let mut a = vec!["-n", &self.node];
        a.extend_from_slice(args);
        ok(&a);
    }

    fn pod(&self, name: &str) -> PathBuf {
        let ns = format!("{}-{name}", self.prefix);
        ok(&["netns", "add", &ns]);
        ok(&["-n", &ns, "link", "set", "lo", "up"]);
        self.pods.lock().unwrap().push(ns.clone());
        PathBuf::from(format!("/var/run/netns/{ns}"))
    }

    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "weft",
            "type": "weft",
            "mtu": 1400,
            "blocks": ["10.244.0.0/26", "fd00:244::/122"],
            "stateDir": self.state,
            "weftdSocket": self.state.join("weftd.sock"),
        })
    }

    /// The plugin as a runtime on this node would start it: in the node
    /// namespace (entered with setns before exec, so timings and signals
    /// concern the plugin alone), environment cleared and set.
    fn plugin(&self, command: &str, id: &str, netns: Option<&Path>) -> Command {
        self.plugin_binary(Path::new(env!("CARGO_BIN_EXE_weft")), command, id, netns)
    }

    /// As [`Lab::plugin`], for any CNI plugin binary.
    fn plugin_binary(
        &self,
        binary: &Path,
        command: &str,
        id: &str,
        netns: Option<&Path>,
    ) -> Command {
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = netns {
            cmd.env("CNI_NETNS", n);
        }
        use std::os::unix::process::CommandExt;
        // SAFETY: only an async-signal-safe system call between fork and exec.
        unsafe { cmd.pre_exec(enter(&self.node)) };
        cmd
    }

    /// Runs the plugin: exit status, stdout JSON, wall time.
    fn run(
        &self,
        command: &str,
        id: &str,
        netns: Option<&Path>,
        conf: &Value,
    ) -> (i32, Value, Duration) {
        run_with_stdin(self.plugin(command, id, netns), conf)
    }

    fn json(&self, ns: &str, args: &[&str]) -> Value {
        let mut a = vec!["-j", "-n", ns];
        a.extend_from_slice(args);
        let out = ip(&a);
        assert!(out.status.success(), "ip {a:?}");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
    }

    fn host_links(&self) -> Vec<String> {
        self.json(&self.node, &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .filter(|n| n.starts_with("weft") || n.starts_with("wtmp"))
            .collect()
    }

    fn host_routes(&self) -> usize {
        let v4 = self.json(&self.node, &["route", "show", "proto", "88"]);
        let v6 = self.json(&self.node, &["-6", "route", "show", "proto", "88"]);
        v4.as_array().unwrap().len() + v6.as_array().unwrap().len()
    }

    fn reserved(&self) -> Vec<String> {
        match std::fs::read(self.state.join("ipam/allocations.json")) {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b).expect("the IPAM state is never torn");
                v["allocations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["ip"].as_str().unwrap().to_string())
                    .collect()
            }
            Err(_) => vec![],
        }
    }

    fn ns_name(path: &Path) -> String {
        path.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.pods.lock().unwrap().drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
        let _ = ip(&["netns", "del", &self.node]);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn run_with_stdin(mut cmd: Command, conf: &Value) -> (i32, Value, Duration) {
    let start = Instant::now();
    let child = spawn_with_stdin(&mut cmd, conf.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (out.status.code().unwrap_or(-1), v, took)
}

fn ping(ns: &str, to: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn version_and_error_codes() {
    let Some(lab) = Lab::new() else { return };
    let (status, v, _) = lab.run("VERSION", "x", None, &Value::Null);
    assert_eq!(status, 0);
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));

    // Bad JSON: 6. Unsupported version: 1. A field of the wrong shape: 7.
    let pod = lab.pod("p0");
    let raw = |stdin: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.env_clear().stdin(Stdio::piped()).stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = spawn_with_stdin(&mut cmd, stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    let add_env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", pod.to_str().unwrap()),
    ];
    let (s, v) = raw("{not json", &add_env);
    assert_eq!((s, v["code"].as_u64()), (1, Some(6)), "{v}");
    let (s, v) = raw(
        r#"{"cniVersion":"0.3.1","name":"weft","type":"weft"}"#,
        &add_env,
    );
    assert_eq!((s, v["code"].as_u64()), (1, Some(1)), "{v}");
    let (s, v) = raw(
        r#"{"cniVersion":"1.1.0","name":"weft","type":"weft","mtu":"large"}"#,
        &add_env,
    );
    assert_eq!((s, v["code"].as_u64()), (1, Some(7)), "{v}");
    assert!(v["msg"].as_str().unwrap().contains("mtu"));
    let (s, v) = raw(
        r#"{"cniVersion":"1.0.0","name":"weft","type":"weft","blocks":["10.244.0.9/26"]}"#,
        &add_env,
    );
    assert_eq!(
        (s, v["code"].as_u64(), v["cniVersion"].as_str()),
        (1, Some(7), Some("1.0.0")),
        "{v}"
    );
    // Missing variables: 4.
    for missing in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"] {
        let env: Vec<_> = add_env
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let (s, v) = raw(&lab.conf("1.1.0").to_string(), &env);
        assert_eq!(
            (s, v["code"].as_u64()),
            (1, Some(4)),
            "without {missing}: {v}"
        );
    }
    // A namespace that does not exist: 3, and nothing reserved.
    let (s, v, _) = lab.run(
        "ADD",
        "c9",
        Some(Path::new("/var/run/netns/no-such-ns")),
        &lab.conf("1.1.0"),
    );
    assert_eq!((s, v["code"].as_u64()), (1, Some(3)), "{v}");
    assert!(lab.reserved().is_empty());
    // STATUS: 50 without weftd, 0 when its socket answers.
    let (s, v, _) = lab.run("STATUS", "", None, &lab.conf("1.1.0"));
    assert_eq!((s, v["code"].as_u64()), (1, Some(50)), "{v}");
    std::fs::create_dir_all(&lab.state).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(lab.state.join("weftd.sock")).unwrap();
    let (s, _, _) = lab.run("STATUS", "", None, &lab.conf("1.1.0"));
    assert_eq!(s, 0);
}

#[test]
fn add_check_del_with_real_pods() {
    let Some(lab) = Lab::new() else { return };
    let a = lab.pod("a");
    let b = lab.pod("b");
    let conf = lab.conf("1.1.0");
    let (s, ra, _) = lab.run("ADD", "pod-a", Some(&a), &conf);
    assert_eq!(s, 0, "{ra}");
    assert_eq!(ra["cniVersion"], "1.1.0");
    assert_eq!(ra["ips"][0]["address"], "10.244.0.1/32");
    assert_eq!(ra["ips"][1]["address"], "fd00:244::1/128");
    assert_eq!(ra["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(ra["interfaces"][1]["name"], "eth0");
    assert_eq!(ra["interfaces"][1]["sandbox"], a.to_str().unwrap());
    let host = ra["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(host.starts_with("weft") && host.len() == 15);

    // Pod side: the interface, its addresses, MTU and routes.
    let pod_ns = Lab::ns_name(&a);
    let link = &lab.json(&pod_ns, &["-d", "link", "show", "eth0"])[0];
    assert_eq!(link["mtu"], 1400);
    // The kernel's segment cap is left alone: a lower one (to fit one VXLAN
    // GSO send) cost plain routing and kernel VXLAN a quarter of their
    // four-stream throughput in the bench lab.
    assert_eq!(link["gso_max_segs"], 65535, "{link}");
    let routes = lab.json(&pod_ns, &["route", "show"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1"),
        "{routes}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["scope"] == "link"),
        "{routes}"
    );
    let routes6 = lab.json(&pod_ns, &["-6", "route", "show"]);
    assert!(
        routes6
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fe80::ecee:eeff:feee:eeee"),
        "{routes6}"
    );
    // Host side: fixed MAC, proxy ARP, host routes.
    let hl = &lab.json(&lab.node, &["link", "show", &host])[0];
    assert_eq!(hl["address"], "ee:ee:ee:ee:ee:ee");
    let proxy = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.node,
            "cat",
            &format!("/proc/sys/net/ipv4/conf/{host}/proxy_arp"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&proxy.stdout).trim(), "1");
    assert_eq!(lab.host_routes(), 2);

    // Two pods on one node reach each other through the node, both families.
    let (s, rb, _) = lab.run("ADD", "pod-b", Some(&b), &lab.conf("1.0.0"));
    assert_eq!(s, 0, "{rb}");
    assert!(rb["ips"][0].get("version").is_none());
    let pb = rb["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    let pb6 = rb["ips"][1]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/128")
        .to_string();
    assert!(ping(&pod_ns, &pb), "pod a pings pod b over IPv4");
    assert!(ping(&pod_ns, &pb6), "pod a pings pod b over IPv6");

    // ADD again: the same answer, nothing new.
    let (s, again, _) = lab.run("ADD", "pod-a", Some(&a), &conf);
    assert_eq!(s, 0);
    assert_eq!(again["ips"], ra["ips"]);
    assert_eq!(lab.reserved().len(), 4);

    // CHECK passes, then catches a removed address and a removed route.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = ra.clone();
    let (s, v, _) = lab.run("CHECK", "pod-a", Some(&a), &with_prev);
    assert_eq!(s, 0, "{v}");
    ok(&["-n", &pod_ns, "addr", "del", "10.244.0.1/32", "dev", "eth0"]);
    let (s, v, _) = lab.run("CHECK", "pod-a", Some(&a), &with_prev);
    assert_eq!((s, v["code"].as_u64()), (1, Some(100)), "{v}");
    assert!(v["details"].as_str().unwrap().contains("10.244.0.1"), "{v}");
    ok(&["-n", &pod_ns, "addr", "add", "10.244.0.1/32", "dev", "eth0"]);
    ok(&[
        "-n",
        &pod_ns,
        "route",
        "add",
        "169.254.1.1",
        "dev",
        "eth0",
        "scope",
        "link",
    ]);
    ok(&[
        "-n",
        &pod_ns,
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ]);
    let (s, v, _) = lab.run("CHECK", "pod-a", Some(&a), &with_prev);
    assert_eq!(s, 0, "{v}");
    lab.node_ok(&["route", "del", "10.244.0.1/32"]);
    let (s, v, _) = lab.run("CHECK", "pod-a", Some(&a), &with_prev);
    assert_eq!((s, v["code"].as_u64()), (1, Some(100)), "{v}");

    // DEL removes everything; DEL again still succeeds.
    for (id, ns) in [("pod-a", &a), ("pod-b", &b)] {
        let (s, v, _) = lab.run("DEL", id, Some(ns), &conf);
        assert_eq!(s, 0, "{v}");
    }
    let (s, _, _) = lab.run("DEL", "pod-a", None, &conf);
    assert_eq!(s, 0, "DEL without a netns, nothing left");
    assert!(lab.host_links().is_empty(), "{:?}", lab.host_links());
    assert_eq!(lab.host_routes(), 0);
    assert!(lab.reserved().is_empty());
    assert!(
        !ip(&["-n", &pod_ns, "link", "show", "eth0"])
            .status
            .success(),
        "eth0 left in the pod"
    );
}

/// Static addresses, as podman asks for a container's previous address on
/// restart: the `ips` capability (runtimeConfig) and `IP=` in CNI_ARGS are
/// honoured when the address is in a block and free; anything else is
/// code 7 and leaves nothing behind, never a different address.
#[test]
fn requested_addresses_are_given_or_refused() {
    let Some(lab) = Lab::new() else { return };
    let mut conf = lab.conf("1.0.0");
    conf["runtimeConfig"] = json!({ "ips": ["10.244.0.40/26"] });
    let p1 = lab.pod("ips1");
    let (status, out, _) = lab.run("ADD", "ips-one", Some(&p1), &conf);
    assert_eq!(status, 0, "{out}");
    assert_eq!(out["ips"][0]["address"], "10.244.0.40/32", "{out}");
    assert_eq!(
        out["ips"][1]["address"], "fd00:244::1/128",
        "the other family from the pool: {out}"
    );
    // CNI_ARGS IP=, both families.
    let p2 = lab.pod("ips2");
    let mut cmd = lab.plugin("ADD", "ips-two", Some(&p2));
    cmd.env("CNI_ARGS", "IgnoreUnknown=1;IP=10.244.0.41,fd00:244::21");
    let (status, out, _) = run_with_stdin(cmd, &lab.conf("1.0.0"));
    assert_eq!(status, 0, "{out}");
    assert_eq!(out["ips"][0]["address"], "10.244.0.41/32", "{out}");
    assert_eq!(out["ips"][1]["address"], "fd00:244::21/128", "{out}");
    // Taken, outside the blocks, the block's own address: code 7, nothing left.
    let before = lab.reserved();
    for (want, says) in [
        ("10.244.0.40", "in use"),
        ("10.244.9.1", "not in this node's blocks"),
        ("10.244.0.0", "network address"),
    ] {
        let p = lab.pod(&format!("ipsbad{}", want.replace('.', "")));
        let mut c = conf.clone();
        c["runtimeConfig"] = json!({ "ips": [want] });
        let (status, out, _) = lab.run("ADD", "ips-bad", Some(&p), &c);
        assert_eq!(status, 1, "{want}: {out}");
        assert_eq!(out["code"], 7, "{want}: {out}");
        assert!(out["msg"].as_str().unwrap().contains(says), "{want}: {out}");
        assert_eq!(lab.reserved(), before, "nothing reserved for {want}");
        let host = weft::podnet::host_ifname("ips-bad", "eth0");
        assert!(!lab.host_links().contains(&host), "no link left for {want}");
    }
    for (id, p) in [("ips-one", &p1), ("ips-two", &p2)] {
        let (status, out, _) = lab.run("DEL", id, Some(p), &lab.conf("1.0.0"));
        assert_eq!(status, 0, "{out}");
    }
    assert!(lab.reserved().is_empty());
}

#[test]
fn gc_releases_what_is_not_valid() {
    let Some(lab) = Lab::new() else { return };
    let conf = lab.conf("1.1.0");
    for (name, version) in [("g1", "0.4.0"), ("g2", "1.0.0"), ("g3", "1.1.0")] {
        let ns = lab.pod(name);
        let (s, v, _) = lab.run("ADD", name, Some(&ns), &lab.conf(version));
        assert_eq!(s, 0, "{v}");
        assert_eq!(v["cniVersion"], version);
        // 0.4.0 results name the IP version; later ones do not.
        assert_eq!(
            v["ips"][0].get("version").is_some(),
            version == "0.4.0",
            "{v}"
        );
    }
    assert_eq!(lab.host_links().len(), 3);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "g2", "ifname": "eth0" }]);
    let (s, v, _) = lab.run("GC", "", None, &gc);
    assert_eq!(s, 0, "{v}");
    assert_eq!(lab.host_links().len(), 1);
    assert_eq!(lab.reserved().len(), 2, "g2's two addresses stay");
    assert_eq!(lab.host_routes(), 2);
}

#[test]
fn failed_add_leaves_nothing_behind() {
    let Some(lab) = Lab::new() else { return };
    // A "namespace" that is a plain file: setns fails after the veth exists.
    std::fs::create_dir_all(&lab.state).unwrap();
    let fake = lab.state.join("not-a-netns");
    std::fs::write(&fake, b"").unwrap();
    let (s, v, _) = lab.run("ADD", "f1", Some(&fake), &lab.conf("1.1.0"));
    assert_eq!(s, 1, "{v}");
    assert!(lab.host_links().is_empty(), "{:?}", lab.host_links());
    assert!(lab.reserved().is_empty());
    // A full block: code 11, nothing reserved, nothing wired.
    let mut tiny = lab.conf("1.1.0");
    tiny["blocks"] = json!(["10.244.9.0/31"]);
    let p1 = lab.pod("t1");
    let p2 = lab.pod("t2");
    let (s, v, _) = lab.run("ADD", "t1", Some(&p1), &tiny);
    assert_eq!(s, 0, "{v}");
    let (s, v, _) = lab.run("ADD", "t2", Some(&p2), &tiny);
    assert_eq!((s, v["code"].as_u64()), (1, Some(11)), "{v}");
    assert_eq!(lab.reserved().len(), 1);
    assert_eq!(lab.host_links().len(), 1);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn concurrent_adds_and_many_cycles_leak_nothing() {
    let Some(lab) = Lab::new() else { return };
    let lab = std::sync::Arc::new(lab);
    let conf = lab.conf("1.1.0");
    // 50 concurrent ADDs: 50 distinct addresses per family.
    let pods: Vec<(String, PathBuf)> = (0..50)
        .map(|i| (format!("cc{i}"), lab.pod(&format!("cc{i}"))))
        .collect();
    let handles: Vec<_> = pods
        .iter()
        .cloned()
        .map(|(id, ns)| {
            let lab = lab.clone();
            let conf = conf.clone();
            std::thread::spawn(move || lab.run("ADD", &id, Some(&ns), &conf))
        })
        .collect();
    let mut v4 = std::collections::HashSet::new();
    for h in handles {
        let (s, v, _) = h.join().unwrap();
        assert_eq!(s, 0, "{v}");
        assert!(
            v4.insert(v["ips"][0]["address"].as_str().unwrap().to_string()),
            "address handed out twice: {v}"
        );
    }
    assert_eq!(v4.len(), 50);
    let reserved = lab.reserved();
    let unique: std::collections::HashSet<_> = reserved.iter().collect();
    assert_eq!((reserved.len(), unique.len()), (100, 100));
    for (id, ns) in &pods {
        let (s, v, _) = lab.run("DEL", id, Some(ns), &conf);
        assert_eq!(s, 0, "{v}");
    }
    assert!(lab.host_links().is_empty());
    assert_eq!(lab.host_routes(), 0);
    assert!(lab.reserved().is_empty());

    // 200 ADD/DEL cycles in one pod namespace.
    let ns = lab.pod("cycle");
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let id = format!("cycle{i}");
        let (s, v, t) = lab.run("ADD", &id, Some(&ns), &conf);
        assert_eq!(s, 0, "cycle {i}: {v}");
        adds.push(t);
        let (s, v, t) = lab.run("DEL", &id, Some(&ns), &conf);
        assert_eq!(s, 0, "cycle {i}: {v}");
        dels.push(t);
    }
    assert!(lab.host_links().is_empty());
    assert_eq!(lab.host_routes(), 0);
    assert!(lab.reserved().is_empty());
    let leftover = ip(&["-n", &Lab::ns_name(&ns), "-o", "link", "show"]);
    assert_eq!(
        String::from_utf8_lossy(&leftover.stdout).lines().count(),
        1,
        "only lo is left in the pod"
    );
    // Wall time as a runtime sees it (includes `ip netns exec`): reported, not asserted.
    eprintln!(
        "ADD median {:?}, DEL median {:?} over 200 cycles",
        median(adds),
        median(dels)
    );
}

#[test]
fn ipam_survives_kill_minus_nine() {
    let Some(lab) = Lab::new() else { return };
    let conf = lab.conf("1.1.0");
    // Start 30 ADDs and kill -9 every third one at a varying moment.
    let mut children = Vec::new();
    for i in 0..30 {
        let ns = lab.pod(&format!("k{i}"));
        let mut cmd = lab.plugin("ADD", &format!("k{i}"), Some(&ns));
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = spawn_with_stdin(&mut cmd, conf.to_string().as_bytes());
        children.push((i, ns, child));
    }
    for (i, _, child) in children.iter_mut() {
        if *i % 3 == 0 {
            std::thread::sleep(Duration::from_micros(300 * (*i as u64 % 7)));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for (_, _, child) in children.iter_mut() {
        let _ = child.wait();
    }
    // The state is whole and no address is held twice.
    let reserved = lab.reserved();
    let unique: std::collections::HashSet<_> = reserved.iter().collect();
    assert_eq!(
        reserved.len(),
        unique.len(),
        "an address was handed out twice: {reserved:?}"
    );
    // DEL for every container (as the runtime retries) leaves nothing.
    for (i, ns, _) in &children {
        let (s, v, _) = lab.run("DEL", &format!("k{i}"), Some(ns), &conf);
        assert_eq!(s, 0, "{v}");
    }
    assert!(lab.reserved().is_empty());
    assert!(lab.host_links().is_empty(), "{:?}", lab.host_links());
    assert_eq!(lab.host_routes(), 0);
}

/// The shipped conflist (deploy/cni/10-weft.conflist) run as a runtime runs
/// a chain: weft, then Debian's tuning, portmap and bandwidth plugins, each
/// given the previous result; CHECK in order; DEL in reverse.
///
/// Debian 12's portmap (1.1.1) CHECKs its IPv4 rules in ip6tables too
/// whenever ip6tables exists (fixed upstream later), so this test gives the
/// pod IPv4 only and shows portmap a PATH with `iptables` and no `ip6tables`.
#[test]
fn chain_with_the_reference_plugins() {
    let Some(lab) = Lab::new() else { return };
    // Where Debian put the reference plugins, as its package lists them.
    let listed = Command::new("dpkg")
        .args(["-L", "containernetworking-plugins"])
        .output();
    let portmap = listed.ok().filter(|o| o.status.success()).and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.ends_with("/portmap"))
            .map(PathBuf::from)
    });
    let Some(portmap) = portmap else {
        panic!("containernetworking-plugins is not installed (apt-get install containernetworking-plugins)");
    };
    let dir = portmap.parent().unwrap().to_path_buf();
    let list: Value = serde_json::from_str(include_str!("../deploy/cni/10-weft.conflist")).unwrap();
    let version = list["cniVersion"].as_str().unwrap();
    let pod = lab.pod("chain");
    let runtime_config =
        json!({ "portMappings": [{ "hostPort": 18080, "containerPort": 80, "protocol": "tcp" }] });
    let conf_for = |plugin: &Value, prev: Option<&Value>| {
        let mut c = plugin.clone();
        c["cniVersion"] = json!(version);
        c["name"] = list["name"].clone();
        if c["type"] == "weft" {
            // The test's own state directory and blocks, not the node's.
            c["stateDir"] = json!(lab.state);
            c["blocks"] = json!(["10.244.0.0/26"]);
            c["weftdSocket"] = json!(lab.state.join("weftd.sock"));
        }
        if c["type"] == "portmap" {
            c["runtimeConfig"] = runtime_config.clone();
        }
        if c["type"] == "bandwidth" {
            // 1 Gbit/s both ways (bandwidth 1.1.1's CHECK fails without a limit).
            c["runtimeConfig"] = json!({ "bandwidth": { "ingressRate": 1_000_000_000u64, "ingressBurst": 1_000_000_000u64, "egressRate": 1_000_000_000u64, "egressBurst": 1_000_000_000u64 } });
        }
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    };
    let bin = lab.state.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/usr/sbin/iptables", bin.join("iptables")).unwrap();
    let run = |plugin: &Value, command: &str, conf: &Value| {
        let kind = plugin["type"].as_str().unwrap();
        if kind == "weft" {
            lab.run(command, "chain-pod", Some(&pod), conf)
        } else {
            let mut cmd = lab.plugin_binary(&dir.join(kind), command, "chain-pod", Some(&pod));
            cmd.env("PATH", &bin);
            run_with_stdin(cmd, conf)
        }
    };
    let plugins = list["plugins"].as_array().unwrap();
    let mut prev: Option<Value> = None;
    for p in plugins {
        let (s, v, _) = run(p, "ADD", &conf_for(p, prev.as_ref()));
        assert_eq!(s, 0, "ADD {}: {v}", p["type"]);
        prev = Some(v);
    }
    let result = prev.unwrap();
    assert_eq!(
        result["ips"][0]["address"], "10.244.0.1/32",
        "weft's addresses survive the chain: {result}"
    );
    // tuning applied its sysctl in the pod; portmap installed its DNAT chain in the node.
    let somaxconn = Command::new("ip")
        .args([
            "netns",
            "exec",
            &Lab::ns_name(&pod),
            "sysctl",
            "-n",
            "net.core.somaxconn",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&somaxconn.stdout).trim(), "1024");
    let nat = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.node, "iptables", "-t", "nat", "-S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        nat().contains("18080"),
        "portmap's rule for host port 18080:\n{}",
        nat()
    );
    for p in plugins {
        let (s, v, _) = run(p, "CHECK", &conf_for(p, Some(&result)));
        assert_eq!(s, 0, "CHECK {}: {v}", p["type"]);
    }
    for p in plugins.iter().rev() {
        let (s, v, _) = run(p, "DEL", &conf_for(p, Some(&result)));
        assert_eq!(s, 0, "DEL {}: {v}", p["type"]);
    }
    assert!(!nat().contains("18080"), "portmap removed its rule");
    assert!(lab.host_links().is_empty());
    assert!(lab.reserved().is_empty());
}
