//! weftd's admin API request lines on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weft::fuzzing::admin_request(data));
