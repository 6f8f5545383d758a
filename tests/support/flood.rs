//! Hostile VXLAN datagrams and a flooder, shared by tests/hostile.rs and
//! the lab's flood bench (examples/vxlan_flood.rs).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// What is wrong with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 10 bytes: shorter than a VXLAN header and an Ethernet header.
    Truncated,
    /// A VNI the receiver does not serve.
    WrongVni,
    /// The I flag clear (RFC 7348: must be set).
    IFlagClear,
    /// Well-formed, but the inner source is in no block of the sender.
    SpoofedInner,
    /// Well-formed in every way (hostile only if sent from a non-member).
    Valid,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Truncated,
        Kind::WrongVni,
        Kind::IFlagClear,
        Kind::SpoofedInner,
        Kind::Valid,
    ];

    /// Parses a kind's name (as `--kind` takes it).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Truncated => "truncated",
            Kind::WrongVni => "wrong-vni",
            Kind::IFlagClear => "i-flag-clear",
            Kind::SpoofedInner => "spoofed-inner",
            Kind::Valid => "valid",
        }
    }
}

/// One VXLAN datagram (UDP payload) of `kind` for VNI `vni`, carrying an
/// ICMP echo from `inner_src` (replaced by 10.250.0.1 for SpoofedInner) to
/// `inner_dst`, addressed to VTEP MAC `dst_mac`.
pub fn datagram(
    kind: Kind,
    vni: u32,
    inner_src: Ipv4Addr,
    inner_dst: Ipv4Addr,
    dst_mac: [u8; 6],
) -> Vec<u8> {
    let src = if kind == Kind::SpoofedInner {
        Ipv4Addr::new(10, 250, 0, 1)
    } else {
        inner_src
    };
    let vni = if kind == Kind::WrongVni {
        vni ^ 0x5a5a
    } else {
        vni
    };
    let mut out = vec![
        0x08,
        0,
        0,
        0,
        (vni >> 16) as u8,
        (vni >> 8) as u8,
        vni as u8,
        0,
    ];
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xfe], dst_mac)
        .ipv4(src.octets(), inner_dst.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, &[0u8; 56])
        .expect("writes to a Vec");
    match kind {
        Kind::Truncated => out.truncate(10),
        Kind::IFlagClear => out[0] = 0,
        _ => {}
    }
    out
}

/// Sends `packets` round robin from `src` to `dst` as fast as one thread
/// can for `dur`, from the network namespace `ns`; returns how many.
pub fn flood(
    ns: &str,
    src: Ipv4Addr,
    dst: SocketAddr,
    packets: Vec<Vec<u8>>,
    dur: Duration,
) -> u64 {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("namespace exists");
    std::thread::spawn(move || {
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let s = UdpSocket::bind((src, 0)).expect("bind the flood socket");
        let t0 = Instant::now();
        let mut sent = 0u64;
        while t0.elapsed() < dur {
            for p in &packets {
                for _ in 0..64 {
                    if s.send_to(p, dst).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
        sent
    })
    .join()
    .expect("flood thread")
}
