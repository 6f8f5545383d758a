//! Encapsulation of arbitrary inner bytes: no panic; a well-formed inner
//! packet decapsulates to itself in every mode and family.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encap::fuzzing::encap_round_trip(data));
