//! The header views and the ICMP error builders on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| encap::fuzzing::headers(data));
