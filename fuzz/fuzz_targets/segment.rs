//! TCP and UDP split, TCP coalesce, on arbitrary bytes: no panic; what split accepts,
//! coalesce merges back into the same number of segments.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encap::fuzzing::segment(data));
