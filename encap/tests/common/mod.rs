//! Packets the integration tests share, built with etherparse (an
//! implementation independent of this crate).

#![allow(dead_code)]

use encap::OuterIp;

/// Headroom reserved in front of inner packets.
pub const HEADROOM: usize = 128;

/// An IPv4 or IPv6 TCP (or UDP) packet between two pod addresses, with the
/// given TOS / traffic class and payload.
pub fn inner_packet(v6: bool, tcp: bool, tos: u8, payload: &[u8]) -> Vec<u8> {
    let b = if v6 {
        etherparse::PacketBuilder::ipv6(
            [0xfd, 0, 2, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            63,
        )
    } else {
        etherparse::PacketBuilder::ipv4([10, 244, 0, 2], [10, 244, 1, 2], 63)
    };
    let mut out = Vec::new();
    if tcp {
        b.tcp(40000, 5201, 1000, 64000)
            .ack(77)
            .write(&mut out, payload)
            .unwrap();
    } else {
        b.udp(40001, 40002).write(&mut out, payload).unwrap();
    }
    // etherparse has no TOS knob on the builder: patch it (with checksum) here.
    let mut p = encap::IpPacket::new_checked(&mut out[..]).unwrap();
    p.set_tos(tos);
    out
}

/// `inner` copied into a buffer after HEADROOM bytes, and its range.
pub fn with_headroom(inner: &[u8]) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut buf = vec![0u8; HEADROOM + inner.len()];
    buf[HEADROOM..].copy_from_slice(inner);
    (buf, HEADROOM..HEADROOM + inner.len())
}

/// The lab's underlay addresses of node 1 and node 2, IPv4 or IPv6.
pub fn outer(v6: bool) -> OuterIp {
    if v6 {
        OuterIp::new("fd00:99::1".parse().unwrap(), "fd00:99::2".parse().unwrap())
    } else {
        OuterIp::new("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap())
    }
}
