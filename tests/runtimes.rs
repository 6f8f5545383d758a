//! Real container runtimes drive the shipped conflist on a lab cluster:
//! podman 4.3 with its CNI backend on two nodes and containerd 1.6's
//! `ctr run --cni`, through `netns-lab/runtimes.sh` (its header lists the
//! checks: addresses from the node's blocks, container <-> container across
//! nodes and <-> lab pod, port mapping, static addresses, weftd killed and
//! restarted under running containers, removal leaving nothing behind).
//! Here, in addition: nothing global is left in /etc, /var/lib or /run.
//!
//! Needs root and the runtimes (test.sh installs them). Fails when it
//! cannot run, unless WEFT_SKIP_NETNS=1 or WEFT_SKIP_RUNTIMES=1 is set.

mod support;

use std::path::Path;

/// What the runtimes could leave on the machine, as it is now.
fn global_state() -> Vec<String> {
    let mut seen = Vec::new();
    for dir in [
        "/run/containerd",
        "/run/libpod",
        "/run/containers",
        "/var/lib/containers",
        "/var/lib/cni",
        "/var/lib/containerd",
        "/etc/cni/net.d",
        "/opt/cni",
    ] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
                .collect();
            names.sort();
            seen.push(dir.to_string());
            seen.extend(names);
        }
    }
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("netns-") || name.starts_with("cni-") {
            seen.push(format!("/run/netns/{name}"));
        }
    }
    seen
}

#[test]
fn podman_and_containerd_drive_the_shipped_conflist() {
    if std::env::var("WEFT_SKIP_RUNTIMES").as_deref() == Ok("1") {
        eprintln!("skipped: WEFT_SKIP_RUNTIMES=1");
        return;
    }
    let Some(lab) = support::lab::lab("wrt") else {
        return;
    };
    lab.run(&["up", "--nodes", "2", "--pods", "1"]);
    lab.run(&["wait", "30"]);
    let before = global_state();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/netns-lab/runtimes.sh");
    let bin = Path::new(env!("CARGO_BIN_EXE_weftd")).parent().unwrap();
    let out = std::process::Command::new(script)
        .env("WEFT_LAB_PREFIX", &lab.prefix)
        .env("WEFT_LAB_STATE", &lab.state)
        .env("WEFT_LAB_BIN", bin)
        .output()
        .expect("run netns-lab/runtimes.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("runtimes: all checks passed"),
        "netns-lab/runtimes.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count() >= 15,
        "{stdout}"
    );
    assert_eq!(
        global_state(),
        before,
        "the runtimes left global state behind"
    );
    let temp_roots = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("weft-runtimes.")
        })
        .count();
    assert_eq!(temp_roots, 0, "the temporary root was not removed");
}
