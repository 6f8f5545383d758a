//! Packaging: the Kubernetes manifests pass offline schema validation
//! (kubernetes-validate, which ships the API schemas; test.sh installs it
//! into target/k8s-validate), the ConfigMap's weftd.toml is a valid
//! configuration that agrees with the shipped CNI conflist, the init
//! container's install script installs plugin and conflist, and node keys
//! are provisioned: the node-key init container makes and keeps the key and
//! holds weftd back until the node is trusted, and trust-nodes.sh builds the
//! trusted-nodes file from the nodes' announcements without changing a key
//! it already lists.
//!
//! Fails when the validator is missing, unless WEFT_SKIP_K8S_VALIDATE=1.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use weft::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn validator() -> Option<PathBuf> {
    let dir = std::env::var_os("WEFT_K8S_VALIDATE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/k8s-validate"));
    if dir.join("kubernetes_validate").is_dir() {
        return Some(dir);
    }
    if std::env::var("WEFT_SKIP_K8S_VALIDATE").as_deref() == Ok("1") {
        return None;
    }
    panic!(
        "kubernetes-validate is not installed in {} (./test.sh installs it: \
         python3 -m pip install --target target/k8s-validate kubernetes-validate==1.37.0); \
         set WEFT_SKIP_K8S_VALIDATE=1 to skip",
        dir.display()
    );
}

/// python3 with the validator's packages on its path.
fn python(dir: &Path) -> Command {
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", dir);
    c
}

fn validate(dir: &Path, version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = python(dir)
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .args(files)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn manifests_pass_schema_validation_and_typos_do_not() {
    let Some(dir) = validator() else { return };
    let files = manifests();
    assert!(files.len() >= 2);
    for version in ["1.29.0", "1.31.0"] {
        let (ok, text) = validate(&dir, version, &files);
        assert!(ok, "kubernetes {version}: {text}");
        assert!(text.contains("daemonset/weft"), "{text}");
    }
    // The validator does catch a mistake (a misspelt field, strict mode).
    let bad = std::env::temp_dir().join(format!("weft-bad-{}.yaml", std::process::id()));
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/k8s/weft.yaml")).unwrap();
    std::fs::write(&bad, text.replace("hostNetwork: true", "hostNetwrk: true")).unwrap();
    let (ok, out) = validate(&dir, "1.31.0", std::slice::from_ref(&bad));
    std::fs::remove_file(&bad).unwrap();
    assert!(!ok, "a misspelt field passed: {out}");
}

/// The first document of `kind` in weft.yaml as JSON, through the
/// validator's YAML parser.
fn weft_yaml(dir: &Path, kind: &str) -> Value {
    let script = "import sys, yaml, json\nfor d in yaml.safe_load_all(open(sys.argv[1])):\n    if d and d['kind'] == sys.argv[2]:\n        json.dump(d, sys.stdout)\n        break\n";
    let out = python(dir)
        .args(["-c", script])
        .arg(Path::new(ROOT).join("deploy/k8s/weft.yaml"))
        .arg(kind)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no {kind} in weft.yaml: {e}"))
}

/// The ConfigMap's weftd.toml.
fn configmap_toml(dir: &Path) -> String {
    weft_yaml(dir, "ConfigMap")["data"]["weftd.toml"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn configmap_and_conflist_agree() {
    let Some(dir) = validator() else { return };
    let cfg = Config::from_toml(&configmap_toml(&dir), "ConfigMap weft-config").unwrap();
    assert!(cfg.gossip.enabled);
    assert!(cfg.metrics.listen.ip().is_loopback());
    let list: Value = serde_json::from_str(include_str!("../deploy/cni/10-weft.conflist")).unwrap();
    let weft = &list["plugins"][0];
    assert_eq!(weft["type"], "weft");
    assert_eq!(
        weft["weftdSocket"].as_str().unwrap(),
        cfg.cni_socket.to_str().unwrap()
    );
    assert_eq!(
        weft["blocksFile"].as_str().unwrap(),
        cfg.gossip.blocks_file.to_str().unwrap()
    );
    assert!(
        weft.get("blocks").is_none(),
        "blocks come from weftd's claims"
    );
    assert!(
        weft.get("mtu").is_none(),
        "the MTU comes from weftd, which reads the underlay's"
    );
    assert_eq!(
        weft["stateDir"].as_str().unwrap(),
        cfg.cni_state_dir.to_str().unwrap(),
        "weftd reads the pods the plugin records"
    );
    // The key file lies in the Secret's mount, the sockets in /run/weft.
    let yaml = std::fs::read_to_string(Path::new(ROOT).join("deploy/k8s/weft.yaml")).unwrap();
    assert!(cfg.gossip.key_file.unwrap().starts_with("/etc/weft/key"));
    assert!(yaml.contains("mountPath: /etc/weft/key"));
    assert!(cfg.admin_socket.starts_with("/run/weft") && yaml.contains("mountPath: /run/weft"));
    assert!(
        yaml.contains(cfg.admin_socket.to_str().unwrap()),
        "probes use the admin socket"
    );
}

#[test]
fn install_cni_puts_plugin_and_conflist_in_place() {
    let tmp = std::env::temp_dir().join(format!("weft-install-cni-{}", std::process::id()));
    let (bin, conf) = (tmp.join("opt/cni/bin"), tmp.join("etc/cni/net.d"));
    let out = Command::new(Path::new(ROOT).join("deploy/image/install-cni.sh"))
        .env("WEFT_SRC_BIN", env!("CARGO_BIN_EXE_weft"))
        .env(
            "WEFT_SRC_CONF",
            Path::new(ROOT).join("deploy/cni/10-weft.conflist"),
        )
        .arg(&bin)
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(bin.join("weft"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let installed = std::fs::read_to_string(conf.join("10-weft.conflist")).unwrap();
    assert_eq!(installed, include_str!("../deploy/cni/10-weft.conflist"));
    // The installed plugin runs (VERSION needs no namespace).
    let v = Command::new(bin.join("weft"))
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("supportedVersions"));
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The mount paths of a container by volume name, and whether any is a subPath.
fn mounts(container: &Value) -> Vec<(String, String, bool)> {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
                m.get("subPath").is_some(),
            )
        })
        .collect()
}

#[test]
fn manifests_provision_node_keys() {
    let Some(dir) = validator() else { return };
    let cfg = Config::from_toml(&configmap_toml(&dir), "ConfigMap weft-config").unwrap();
    let key_file = cfg.gossip.node_key_file.expect("node keys are on");
    let trusted_file = cfg
        .gossip
        .trusted_nodes_file
        .expect("trusted-nodes file set");
    let ds = weft_yaml(&dir, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let init = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "node-key")
        .expect("a node-key init container");
    let weftd = &spec["containers"][0];
    // The init container is told the same two paths weftd reads.
    let cmd: Vec<&str> = init["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd,
        [
            "/usr/local/bin/node-key",
            key_file.to_str().unwrap(),
            trusted_file.to_str().unwrap()
        ]
    );
    assert_eq!(init["env"][0]["name"], "WEFT_NODE_NAME");
    let volumes = spec["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap().clone();
    for c in [init, weftd] {
        let m = mounts(c);
        // The key lives on the host (it survives restarts and upgrades)...
        let (key_vol, _, _) = m
            .iter()
            .find(|(_, path, _)| key_file.starts_with(path))
            .expect("the key file's directory is mounted");
        assert!(volume(key_vol)["hostPath"].is_object(), "{key_vol}");
        // ...the trusted-nodes file comes from the operator's ConfigMap,
        // mounted as a directory so that its updates reach the pod.
        let (t_vol, _, sub) = m
            .iter()
            .find(|(_, path, _)| trusted_file.starts_with(path))
            .expect("the trusted-nodes file's directory is mounted");
        assert!(!sub, "a subPath mount never sees ConfigMap updates");
        let cm = volume(t_vol);
        assert_eq!(cm["configMap"]["name"], "weft-trusted-nodes");
        assert_eq!(cm["configMap"]["optional"], true);
    }
    // The example ConfigMap carries the file under the name weftd reads.
    let example =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/k8s/trusted-nodes.example.yaml"))
            .unwrap();
    let file_name = trusted_file.file_name().unwrap().to_str().unwrap();
    assert!(example.contains(&format!("  {file_name}: |")));
}

/// A fresh directory of its own (tests run in parallel).
fn scratch(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("weft-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn node_key_script(key: &Path, trusted: &Path) -> Command {
    let mut c = Command::new(Path::new(ROOT).join("deploy/image/node-key.sh"));
    c.arg(key)
        .arg(trusted)
        .env("WEFT_NODE_NAME", "node-7")
        .env("WEFT_WEFTD", env!("CARGO_BIN_EXE_weftd"))
        .env("WEFT_TRUST_POLL_S", "1");
    c
}

/// The public key a `weft-trust:` line announces for `name`.
fn announced(stdout: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(stdout);
    let prefix = format!("weft-trust: {name} ");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no announcement in {text}"));
    line.to_string()
}

#[test]
fn node_key_init_container_makes_keeps_and_waits_for_trust() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = scratch("node-key");
    let (key, trusted) = (
        tmp.join("state/node.key"),
        tmp.join("trusted/trusted-nodes"),
    );

    // First start: a key is made, private to its owner, and announced.
    let out = node_key_script(&key, &trusted)
        .env("WEFT_TRUST_NO_WAIT", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = announced(&out.stdout, "node-7");
    let made = std::fs::read_to_string(&key).unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let node_key = weft::daemon::gossip::load_node_key(&key).expect("weftd accepts the key");
    assert_eq!(node_key.public_hex(), public);
    assert_eq!(std::fs::read_dir(key.parent().unwrap()).unwrap().count(), 1);

    // A restart keeps the key (the node's identity).
    let out = node_key_script(&key, &trusted)
        .env("WEFT_TRUST_NO_WAIT", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(announced(&out.stdout, "node-7"), public);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), made);

    // It waits while the file is missing, and while it lists the node with
    // another key (a host reinstalled, or someone posing as it)...
    let stdout = tmp.join("stdout");
    let mut child = node_key_script(&key, &trusted)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .spawn()
        .unwrap();
    let still_waiting = |child: &mut std::process::Child| {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        child.try_wait().unwrap().is_none()
    };
    assert!(
        still_waiting(&mut child),
        "went on without a trusted-nodes file"
    );
    std::fs::create_dir_all(trusted.parent().unwrap()).unwrap();
    let other = control::identity::NodeKey::generate().public_hex();
    std::fs::write(&trusted, format!("node-7 {other}\n")).unwrap();
    assert!(still_waiting(&mut child), "went on with another key listed");
    // ...and a commented-out line does not count.
    std::fs::write(&trusted, format!("# node-7 {public}\nnode-8 {other}\n")).unwrap();
    assert!(still_waiting(&mut child), "went on with a commented line");

    // Listed (with an allowed range, as trust-nodes.sh keeps them): it ends,
    // and weftd's own check accepts the pair.
    let text = trust_nodes(
        &format!("weft-trust: node-7 {public}\n"),
        &std::fs::read_to_string(&trusted).unwrap(),
    )
    .0;
    std::fs::write(
        &trusted,
        text.replace(&public, &format!("{public} 10.244.0.0/20")),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still waiting once listed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success());
    let log = std::fs::read_to_string(&stdout).unwrap();
    assert!(
        log.contains(&format!(
            "waiting until {} lists this node",
            trusted.display()
        )),
        "{log}"
    );
    assert!(log.contains("lists node-7 with another key"), "{log}");
    assert!(log.contains("node-7 is trusted"), "{log}");
    let listed = weft::daemon::gossip::load_trusted_nodes(&trusted, "node-7", &node_key)
        .expect("weftd accepts the file");
    assert_eq!(listed.len(), 2);

    // Without a node name it refuses, saying why.
    let out = node_key_script(&key, &trusted)
        .env_remove("WEFT_NODE_NAME")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WEFT_NODE_NAME"));
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Runs trust-nodes.sh on announcements and a current file: (stdout, stderr).
fn trust_nodes(logs: &str, current: &str) -> (String, String) {
    let (out, err, code) = trust_nodes_with(logs, current, &[]);
    assert_eq!(code, 0, "{err}");
    (out, err)
}

/// The same with more arguments: (stdout, stderr, exit status).
fn trust_nodes_with(logs: &str, current: &str, args: &[&str]) -> (String, String, i32) {
    let tmp = scratch("trust-nodes");
    std::fs::write(tmp.join("logs"), logs).unwrap();
    std::fs::write(tmp.join("current"), current).unwrap();
    let out = Command::new(Path::new(ROOT).join("deploy/k8s/trust-nodes.sh"))
        .arg("--logs")
        .arg(tmp.join("logs"))
        .arg("--current")
        .arg(tmp.join("current"))
        .args(args)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn trust_nodes_gives_each_new_node_a_range_of_its_own() {
    use control::identity::{NodeKey, TrustedNodes};
    let [a, b, c, d, e] = [(); 5].map(|_| NodeKey::generate().public_hex());
    // Listed ranges (any overlap with a candidate counts) are taken; IPv6
    // ranges and ranges outside the pool do not matter.
    let current =
        format!("node-a {a} 10.244.0.0/20\nnode-b {b} 10.244.40.0/22 fd00::/64 10.9.0.0/16\n");
    let logs = format!("weft-trust: node-c {c}\nweft-trust: node-d {d}\nweft-trust: node-e {e}\n");
    let (out, err, code) = trust_nodes_with(&logs, &current, &["--ranges", "10.244.0.0/16:20"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("{current}node-c {c} 10.244.16.0/20\nnode-d {d} 10.244.48.0/20\nnode-e {e} 10.244.64.0/20\n")
    );
    let file = TrustedNodes::parse(&out).unwrap();
    assert_eq!(
        file.get("node-d").unwrap().allowed,
        ["10.244.48.0/20".parse().unwrap()]
    );
    // No ranges overlap.
    let v4: Vec<ipnet::IpNet> = ["node-a", "node-b", "node-c", "node-d", "node-e"]
        .iter()
        .flat_map(|n| file.get(n).unwrap().allowed.clone())
        .filter(|r| {
            r.addr().is_ipv4() && "10.244.0.0/16".parse::<ipnet::IpNet>().unwrap().contains(r)
        })
        .collect();
    for (i, x) in v4.iter().enumerate() {
        for y in &v4[i + 1..] {
            assert!(!x.contains(y) && !y.contains(x), "{x} and {y} overlap");
        }
    }
    // A full pool: the node left without a range is not added, and the
    // exit status says so.
    let (out, err, code) = trust_nodes_with(&logs, &current, &["--ranges", "10.244.0.0/18:20"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        out.contains("node-c") && out.contains("node-d") && !out.contains("node-e"),
        "{out}"
    );
    assert!(
        err.contains("no free /20 left in 10.244.0.0/18 for node-e"),
        "{err}"
    );
    // Malformed: refused before anything is printed.
    for bad in [
        "10.244.0.1/16:20",
        "10.244.0.0/16",
        "10.244.0.0/20:16",
        "fd00::/48:64",
    ] {
        let (out, _, code) = trust_nodes_with(&logs, &current, &["--ranges", bad]);
        assert_eq!((code, out.as_str()), (2, ""), "{bad}");
    }
}

#[test]
fn trust_nodes_adds_new_nodes_and_never_changes_a_listed_key() {
    use control::identity::NodeKey;
    let [a, b, b2, c] = [(); 4].map(|_| NodeKey::generate().public_hex());
    let current = format!("# production\nnode-a {a} 10.244.0.0/20\nnode-b {b}");
    let logs = format!(
        "[pod/weft-1/node-key] weft-trust: node-a {a}\n\
         [pod/weft-2/node-key] weft-trust: node-b {b2}\n\
         [pod/weft-3/node-key] node-key: waiting until ...\n\
         [pod/weft-3/node-key] weft-trust: node-c {}\n\
         [pod/weft-3/node-key] weft-trust: node-c {c}\n\
         weft-trust: node-d 1234\n",
        c.to_uppercase()
    );
    let (out, err) = trust_nodes(&logs, &current);
    // Existing lines stay as they were (comment and allowed range too), the
    // new node is added once, a changed key is reported and not applied,
    // and a malformed announcement is ignored.
    assert_eq!(
        out,
        format!("# production\nnode-a {a} 10.244.0.0/20\nnode-b {b}\nnode-c {c}\n")
    );
    assert!(
        err.contains(&format!("node-b announces key {b2} but is listed with {b}")),
        "{err}"
    );
    assert!(err.contains("1 node(s) added, 1 conflicting"), "{err}");
    // What it writes is a file weftd reads.
    control::identity::TrustedNodes::parse(&out).unwrap();
    // From nothing: every announced node.
    let (out, _) = trust_nodes(&logs, "");
    assert_eq!(out, format!("node-a {a}\nnode-b {b2}\nnode-c {c}\n"));
}
