//! Packaging: the Kubernetes manifests pass offline schema validation
//! (kubernetes-validate, which ships the API schemas; test.sh installs it
//! into target/k8s-validate), the ConfigMap's weftd.toml is a valid
//! configuration that agrees with the shipped CNI conflist, and the init
//! container's install script installs plugin and conflist.
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

/// The ConfigMap's weftd.toml, extracted with the validator's YAML parser.
fn configmap_toml(dir: &Path) -> String {
    let script = "import sys, yaml\nfor d in yaml.safe_load_all(open(sys.argv[1])):\n    if d and d['kind'] == 'ConfigMap':\n        sys.stdout.write(d['data']['weftd.toml'])\n";
    let out = python(dir)
        .args(["-c", script])
        .arg(Path::new(ROOT).join("deploy/k8s/weft.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
