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

/// The seed for the node-key path is accepted whole, so the fuzzer starts
/// from records that pass the signature check and mutates from there.
#[test]
fn the_signed_records_seed_passes_the_signature_checks() {
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/gossip/seed-signed-records");
    let c = control::fuzzing::gossip_datagram(&std::fs::read(&seed).unwrap()).unwrap();
    assert!(c.dropped.is_empty(), "{c:?}");
    // The agent's own node record and claim, and the seed's three.
    assert_eq!((c.owners, c.records), (2, 5), "{c:?}");
    // One flipped byte in a signature is refused as such.
    let mut bad = std::fs::read(&seed).unwrap();
    let n = bad.len();
    bad[n - 10] ^= 1;
    let c = control::fuzzing::gossip_datagram(&bad).unwrap();
    assert_eq!(c.dropped("record_bad_signature"), 1, "{c:?}");
}
