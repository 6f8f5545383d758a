//! Replays the fuzz corpora for outside input the root package parses (CNI
//! configuration, weftd configuration, admin requests, CNI socket lines
//! and key files) through the checks the fuzz targets
//! run, so every input a fuzzer kept is a regression test on stable Rust.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        check(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 2, "{target}: only {n} inputs");
}

#[test]
fn cni_config_corpus() {
    replay("cni_config", weft::fuzzing::cni_config);
}

#[test]
fn weftd_config_corpus() {
    replay("weftd_config", weft::fuzzing::weftd_config);
}

/// The inputs that once found defects stay in the corpora by name:
/// `cargo fuzz cmin` drops any input whose features others cover, and has
/// dropped these before.
#[test]
fn named_regressions_and_seeds_are_kept() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for kept in [
        "weftd_config/regression-empty-key",
        "weftd_config/regression-deep-regex-nesting",
        "segment/seed-tcp4",
        "segment/seed-tcp6",
        "segment/seed-udp-gso-v4",
        "gossip/seed-signed-records",
        "gossip/seed-status",
        "weftd_config/seed-every-key",
        "weftd_config/seed-every-key-other-values",
        "local_input/seed-cni-added",
        "local_input/seed-keyring",
        "local_input/seed-node-key",
        "local_input/seed-trusted-nodes",
    ] {
        assert!(root.join(kept).is_file(), "fuzz/corpus/{kept} is missing");
    }
}

#[test]
fn admin_request_corpus() {
    replay("admin_request", weft::fuzzing::admin_request);
}

#[test]
fn local_input_corpus() {
    replay("local_input", weft::fuzzing::local_input);
}
