//! weftd's other outside inputs: CNI socket lines, keyring, node key and
//! trusted-nodes files (`weft::fuzzing::local_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weft::fuzzing::local_input(data));
