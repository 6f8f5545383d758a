//! Helpers the namespace tests share: running `ip`, and entering a named
//! network namespace before exec or on a thread.

#![allow(dead_code)]

pub mod flood;
pub mod lab;
pub mod traffic;

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
