//! weftd's configuration file on arbitrary bytes: a ConfigError naming a
//! key, or a valid configuration, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weft::fuzzing::weftd_config(data));
