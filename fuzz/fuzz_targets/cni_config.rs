//! The CNI plugin's stdin (network configuration) and environment on
//! arbitrary bytes: a typed CNI error or a configuration, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weft::fuzzing::cni_config(data));
