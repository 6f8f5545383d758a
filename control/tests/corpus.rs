//! Replays the `gossip` fuzz corpus through the check the fuzz target runs,
//! so every input the fuzzer kept is a regression test on stable Rust.

use std::path::Path;

#[test]
fn gossip_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/gossip");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        control::fuzzing::gossip_datagram(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 8, "only {n} inputs");
}
