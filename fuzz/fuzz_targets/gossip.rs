//! Control datagrams from the network on arbitrary bytes: the auth layer,
//! then (sealed with the right key) the body decoders, foca and the record
//! merge. A refusal is counted, never a panic; the node's own block stays.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = control::fuzzing::gossip_datagram(data);
});
