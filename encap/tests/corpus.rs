//! Replays the checked-in fuzz corpora (fuzz/corpus/<target>/) through the
//! same checks the fuzz targets run, so every input a fuzzer ever kept is a
//! regression test on stable Rust.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        check(&data);
        n += 1;
    }
    assert!(
        n >= 5,
        "{target}: only {n} corpus inputs in {}",
        dir.display()
    );
    eprintln!("{target}: {n} inputs replayed");
}

#[test]
fn decap_corpus() {
    replay("decap", encap::fuzzing::decap);
}

#[test]
fn headers_corpus() {
    replay("headers", encap::fuzzing::headers);
}

#[test]
fn segment_corpus() {
    replay("segment", encap::fuzzing::segment);
}

#[test]
fn encap_corpus() {
    replay("encap", encap::fuzzing::encap_round_trip);
}
