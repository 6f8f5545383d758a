//! Every tunnel decoder on arbitrary bytes: no panic, and a success always
//! names an inner packet that lies in the buffer and parses.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encap::fuzzing::decap(data));
