//! Helpers the namespace tests share: running `ip`, and entering a named
//! network namespace before exec or on a thread.

#![allow(dead_code)]

pub mod flood;
pub mod lab;
pub mod traffic;
pub mod two_nodes;

use std::process::{Command, Output};

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 (ip) is installed")
}

/// Runs `ip ARGS` and fails the test if it fails.
pub fn ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the nftables `script` (commands, one a line, as `nft -f` reads
/// them: no shell quoting) in namespace `ns`; fails the test if it fails.
/// Returns what nft printed (listings).
pub fn nft(ns: &str, script: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A closure that moves the calling thread (or a child between fork and
/// exec) into the named network namespace.
pub fn enter(ns: &str) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    move || {
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
    }
}

/// Spawns `cmd` (stdin piped) and writes `input` to it. A child may exit
/// before reading (a CNI VERSION, or one killed on purpose): a broken pipe
/// is not a failure.
pub fn spawn_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Child {
    use std::io::Write;
    let mut child = cmd.stdin(std::process::Stdio::piped()).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    child
}

/// Creates network namespace `name`, a test's first: false if that is not
/// possible and WEFT_SKIP_NETNS=1 asks to skip; a loud failure otherwise.
pub fn first_netns(name: &str) -> bool {
    let probe = ip(&["netns", "add", name]);
    if probe.status.success() {
        return true;
    }
    if std::env::var("WEFT_SKIP_NETNS").as_deref() == Ok("1") {
        return false;
    }
    panic!(
        "cannot create network namespaces ({}); run as root or set WEFT_SKIP_NETNS=1",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// Waits (10 s at most) until `ready()`; fails with the daemon's stderr if
/// `daemon` exits first, and kills it if it never gets ready.
pub fn wait_until_up(daemon: &mut std::process::Child, what: &str, ready: impl Fn() -> bool) {
    use std::io::Read;
    let start = std::time::Instant::now();
    while !ready() {
        if let Ok(Some(status)) = daemon.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = daemon.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited ({status}): {err}");
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("{what} did not come up in 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The JSON file at `path` (weftd's stats file, rewritten every 500 ms)
/// once it has been written after this call began.
pub fn fresh_json(path: &std::path::Path, what: &str) -> serde_json::Value {
    let asked = std::time::SystemTime::now();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let fresh = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > asked);
        if fresh {
            if let Ok(v) = serde_json::from_slice(&std::fs::read(path).unwrap_or_default()) {
                return v;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no fresh {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// weft's routes (protocol 87) in namespace `ns`, both families, as `ip
/// route` prints them.
pub fn weft_route_lines(ns: &str) -> String {
    let v4 = ip(&["-n", ns, "route", "show", "proto", "87"]);
    let v6 = ip(&["-n", ns, "-6", "route", "show", "proto", "87"]);
    String::from_utf8_lossy(&v4.stdout).to_string() + &String::from_utf8_lossy(&v6.stdout)
}
