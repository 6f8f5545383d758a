//! encap → decap is the identity for arbitrary inner packets, in every mode
//! and family; and every decap error path is reachable and typed.

use encap::ecn::Ecn;
use encap::vxlan::{Vni, VxlanDecap, VxlanEncap};
use encap::{ipip, Error, Family, Layer, MacAddr, OuterIp};
use proptest::prelude::*;
use std::net::IpAddr;

mod common;
use common::{inner_packet, outer, with_headroom, HEADROOM};

fn vx() -> (VxlanEncap, VxlanDecap) {
    let vni = Vni::new(4242).unwrap();
    (
        VxlanEncap::new(
            vni,
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
        ),
        VxlanDecap { vni, port: 4789 },
    )
}

proptest! {
    #[test]
    fn vxlan_identity(v6_in: bool, v6_out: bool, tcp: bool, tos in 0u8..=255, payload in proptest::collection::vec(any::<u8>(), 0..1400)) {
        // A CE outer over Not-ECT is a drop, not an identity: exclude it here.
        let inner = inner_packet(v6_in, tcp, tos, &payload);
        let (mut buf, range) = with_headroom(&inner);
        let (enc, dec) = vx();
        let o = outer(v6_out);
        let start = enc.encap(&mut buf, range.clone(), &o).unwrap();
        prop_assert_eq!(HEADROOM - start, encap::mtu::overhead(encap::Encapsulation::Vxlan, if v6_out { Family::V6 } else { Family::V4 }));
        // etherparse reads the outer packet as IP/UDP to 4789 carrying our bytes.
        let e = etherparse::SlicedPacket::from_ip(&buf[start..]).unwrap();
        match e.transport { Some(etherparse::TransportSlice::Udp(u)) => {
            prop_assert_eq!(u.destination_port(), 4789);
            prop_assert!((encap::flow::SRC_PORT_MIN..=encap::flow::SRC_PORT_MAX).contains(&u.source_port()));
        } _ => prop_assert!(false, "outer not UDP") }
        let d = dec.decap(&mut buf[start..]).unwrap();
        prop_assert_eq!(d.vni, Some(4242));
        prop_assert_eq!(d.outer_addrs(&buf[start..]), (o.src, o.dst));
        prop_assert_eq!(d.family, if v6_in { Family::V6 } else { Family::V4 });
        prop_assert_eq!(&buf[start..][d.inner.clone()], &inner[..]);
    }

    #[test]
    fn vxlan_payload_identity(v6_in: bool, tcp: bool, tos in 0u8..=255, payload in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let inner = inner_packet(v6_in, tcp, tos, &payload);
        let (mut buf, range) = with_headroom(&inner);
        let (enc, dec) = vx();
        let start = enc.encap_payload(&mut buf, range).unwrap();
        prop_assert_eq!(HEADROOM - start, 22);
        let got = dec.decap_payload(&mut buf[start..], Ecn::NotEct).unwrap();
        prop_assert_eq!(got.src_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        prop_assert_eq!(got.dst_mac, MacAddr([2, 0, 0, 0, 0, 2]));
        prop_assert_eq!(&buf[start..][got.inner.clone()], &inner[..]);
    }

    #[test]
    fn ipip_identity(v6_in: bool, v6_out: bool, tcp: bool, tos in 0u8..=255, payload in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let inner = inner_packet(v6_in, tcp, tos, &payload);
        let (mut buf, range) = with_headroom(&inner);
        let o = outer(v6_out);
        let start = ipip::encap(&mut buf, range, &o).unwrap();
        prop_assert_eq!(HEADROOM - start, if v6_out { 40 } else { 20 });
        let proto = if v6_in { 41 } else { 4 };
        let outer_proto = if v6_out { buf[start + 6] } else { buf[start + 9] };
        prop_assert_eq!(outer_proto, proto);
        let d = ipip::decap(&mut buf[start..]).unwrap();
        prop_assert_eq!(d.vni, None);
        prop_assert_eq!(&buf[start..][d.inner.clone()], &inner[..]);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), ecn in 0u8..4) {
        let (_, dec) = vx();
        let mut b = bytes.clone();
        let _ = dec.decap(&mut b);
        let mut b = bytes.clone();
        let _ = dec.decap_payload(&mut b, Ecn::from_tos(ecn));
        let mut b = bytes.clone();
        let _ = ipip::decap(&mut b);
    }
}

#[test]
fn dscp_and_ecn_copied_to_outer() {
    let inner = inner_packet(false, true, 0xb9, b"x"); // EF + ECT(1)
    for v6 in [false, true] {
        let (mut buf, range) = with_headroom(&inner);
        let start = ipip::encap(&mut buf, range, &outer(v6)).unwrap();
        let outer_tos = encap::IpPacket::new_checked(&buf[start..]).unwrap().tos();
        assert_eq!(outer_tos, 0xb9);
    }
}

/// Sets the outer ECN of an encapsulated packet (fixing the IPv4 checksum).
fn set_outer_ecn(pkt: &mut [u8], ecn: Ecn) {
    let mut p = encap::IpPacket::new_checked(pkt).unwrap();
    let tos = p.tos();
    p.set_tos(ecn.apply(tos));
}

#[test]
fn ce_mark_survives_the_tunnel() {
    for v6 in [false, true] {
        let inner = inner_packet(v6, true, 0x02, b"payload"); // ECT(0)
        let (mut buf, range) = with_headroom(&inner);
        let (enc, dec) = vx();
        let start = enc.encap(&mut buf, range, &outer(false)).unwrap();
        set_outer_ecn(&mut buf[start..], Ecn::Ce);
        let d = dec.decap(&mut buf[start..]).unwrap();
        let inner_pkt = encap::IpPacket::new_checked(&buf[start..][d.inner.clone()]).unwrap();
        assert_eq!(Ecn::from_tos(inner_pkt.tos()), Ecn::Ce);
        if let encap::IpPacket::V4(p) = inner_pkt {
            assert!(p.verify_checksum(), "inner IPv4 checksum patched");
        }
    }
}

#[test]
fn ce_over_not_ect_is_dropped() {
    let inner = inner_packet(false, false, 0x00, b"payload");
    let (mut buf, range) = with_headroom(&inner);
    let start = ipip::encap(&mut buf, range, &outer(false)).unwrap();
    set_outer_ecn(&mut buf[start..], Ecn::Ce);
    assert_eq!(ipip::decap(&mut buf[start..]), Err(Error::EcnCeOverNotEct));
}

fn vxlan_v4_packet() -> (Vec<u8>, usize) {
    let inner = inner_packet(false, false, 0, b"hello");
    let (mut buf, range) = with_headroom(&inner);
    let (enc, _) = vx();
    let start = enc.encap(&mut buf, range, &outer(false)).unwrap();
    (buf, start)
}

#[test]
fn vxlan_decap_error_paths() {
    let (_, dec) = vx();
    let (buf, start) = vxlan_v4_packet();
    let pkt = &buf[start..];
    let check = |mutate: &dyn Fn(&mut Vec<u8>), want: &dyn Fn(&Error) -> bool, name: &str| {
        let mut p = pkt.to_vec();
        mutate(&mut p);
        let got = dec.decap(&mut p).unwrap_err();
        assert!(want(&got), "{name}: got {got:?}");
    };
    let fix_ip = |p: &mut Vec<u8>| {
        p[10..12].fill(0);
        let c = encap::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    };
    check(
        &|p| p.truncate(10),
        &|e| {
            matches!(
                e,
                Error::Truncated {
                    layer: Layer::Ipv4,
                    ..
                }
            )
        },
        "short outer",
    );
    check(
        &|p| p[8] = 1,
        &|e| *e == Error::Checksum { layer: Layer::Ipv4 },
        "ip checksum",
    );
    check(
        &|p| {
            p[9] = 6;
            fix_ip(p)
        },
        &|e| matches!(e, Error::Unsupported { .. }),
        "not udp",
    );
    check(
        &|p| {
            p[6] = 0x20;
            fix_ip(p)
        },
        &|e| matches!(e, Error::Unsupported { .. }),
        "fragment",
    );
    check(
        &|p| p[22..24].copy_from_slice(&4790u16.to_be_bytes()),
        &|e| {
            *e == Error::WrongPort {
                expected: 4789,
                got: 4790,
            }
        },
        "port",
    );
    check(
        &|p| p[24..26].copy_from_slice(&4u16.to_be_bytes()),
        &|e| {
            matches!(
                e,
                Error::Malformed {
                    layer: Layer::Udp,
                    ..
                }
            )
        },
        "udp len",
    );
    check(
        &|p| p[26..28].copy_from_slice(&1u16.to_be_bytes()),
        &|e| *e == Error::Checksum { layer: Layer::Udp },
        "udp checksum",
    );
    check(
        &|p| p[28] = 0,
        &|e| {
            matches!(
                e,
                Error::Malformed {
                    layer: Layer::Vxlan,
                    ..
                }
            )
        },
        "I flag",
    );
    check(
        &|p| p[32..35].copy_from_slice(&[0, 0, 7]),
        &|e| {
            *e == Error::WrongVni {
                expected: 4242,
                got: 7,
            }
        },
        "vni",
    );
    check(
        &|p| p[48..50].copy_from_slice(&0x0806u16.to_be_bytes()),
        &|e| {
            matches!(
                e,
                Error::Unsupported {
                    layer: Layer::Ethernet,
                    ..
                }
            )
        },
        "arp",
    );
    check(
        &|p| p[48..50].copy_from_slice(&0x86ddu16.to_be_bytes()),
        &|e| {
            matches!(
                e,
                Error::Malformed {
                    layer: Layer::Inner,
                    ..
                }
            )
        },
        "type mismatch",
    );
    check(
        &|p| p[50] = 0x35,
        &|e| {
            matches!(
                e,
                Error::Malformed {
                    layer: Layer::Inner,
                    ..
                }
            )
        },
        "inner ihl",
    );
    check(
        &|p| p[52..54].copy_from_slice(&2000u16.to_be_bytes()),
        &|e| {
            matches!(
                e,
                Error::Truncated {
                    layer: Layer::Inner,
                    ..
                }
            )
        },
        "inner length",
    );
}

#[test]
fn ipv6_outer_requires_udp_checksum() {
    let inner = inner_packet(false, false, 0, b"hello");
    let (mut buf, range) = with_headroom(&inner);
    let (enc, dec) = vx();
    let start = enc.encap(&mut buf, range, &outer(true)).unwrap();
    let mut zeroed = buf[start..].to_vec();
    zeroed[46..48].fill(0);
    assert_eq!(
        dec.decap(&mut zeroed),
        Err(Error::Checksum { layer: Layer::Udp })
    );
    let mut bad = buf[start..].to_vec();
    bad[46] ^= 0x55;
    assert_eq!(
        dec.decap(&mut bad),
        Err(Error::Checksum { layer: Layer::Udp })
    );
    assert!(dec.decap(&mut buf[start..]).is_ok());
}

#[test]
fn ipv4_outer_accepts_udp_checksum_either_way() {
    let (buf, start) = vxlan_v4_packet();
    let (_, dec) = vx();
    let mut p = buf[start..].to_vec();
    assert_eq!(
        u16::from_be_bytes([p[26], p[27]]),
        0,
        "sent with zero checksum"
    );
    let (s, d): (IpAddr, IpAddr) = ("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap());
    encap::udp::fill_checksum(&mut p[20..], s, d);
    assert_ne!(u16::from_be_bytes([p[26], p[27]]), 0);
    assert!(dec.decap(&mut p).is_ok());
}

#[test]
fn ipip_error_paths() {
    let inner = inner_packet(true, true, 0, b"abc");
    let (mut buf, range) = with_headroom(&inner);
    let start = ipip::encap(&mut buf, range, &outer(false)).unwrap();
    let mut wrong = buf[start..].to_vec();
    wrong[9] = 4; // says IPv4 inside, carries IPv6
    wrong[10..12].fill(0);
    let c = encap::checksum::checksum(&wrong[..20]);
    wrong[10..12].copy_from_slice(&c.to_be_bytes());
    assert!(matches!(
        ipip::decap(&mut wrong),
        Err(Error::Malformed {
            layer: Layer::Inner,
            ..
        })
    ));
    let mut udp = buf[start..].to_vec();
    udp[9] = 17;
    udp[10..12].fill(0);
    let c = encap::checksum::checksum(&udp[..20]);
    udp[10..12].copy_from_slice(&c.to_be_bytes());
    assert!(matches!(
        ipip::decap(&mut udp),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn encap_error_paths() {
    let inner = inner_packet(false, true, 0, b"abc");
    let (enc, _) = vx();
    let mut small = vec![0u8; 10 + inner.len()];
    small[10..].copy_from_slice(&inner);
    let r = 10..small.len();
    assert_eq!(
        enc.encap(&mut small, r.clone(), &outer(false)),
        Err(Error::NoHeadroom { need: 50, have: 10 })
    );
    assert_eq!(
        ipip::encap(&mut small, r.clone(), &outer(true)),
        Err(Error::NoHeadroom { need: 40, have: 10 })
    );
    let mixed = OuterIp::new("10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap());
    let (mut buf, range) = with_headroom(&inner);
    assert_eq!(
        ipip::encap(&mut buf, range.clone(), &mixed),
        Err(Error::FamilyMismatch)
    );
    let mut garbage = vec![0u8; HEADROOM + 30];
    garbage[HEADROOM] = 0x75;
    assert!(matches!(
        enc.encap(&mut garbage, HEADROOM..HEADROOM + 30, &outer(false)),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        enc.encap_payload(&mut garbage, HEADROOM..HEADROOM,),
        Err(Error::Truncated { .. })
    ));
    assert!(enc
        .encap(&mut buf, range.start..range.end + 1, &outer(false))
        .is_err());
}

#[test]
fn outer_ttl_and_df_configurable() {
    let inner = inner_packet(false, true, 0, b"abc");
    let (mut buf, range) = with_headroom(&inner);
    let mut o = outer(false);
    o.ttl = 5;
    o.dont_frag = false;
    let start = ipip::encap(&mut buf, range, &o).unwrap();
    match encap::IpPacket::new_checked(&buf[start..]).unwrap() {
        encap::IpPacket::V4(p) => {
            assert_eq!(p.ttl(), 5);
            assert!(!p.dont_frag());
            assert!(p.verify_checksum());
        }
        _ => unreachable!(),
    }
    let (mut buf, range) = with_headroom(&inner);
    let mut o6 = outer(true);
    o6.ttl = 7;
    let start = ipip::encap(&mut buf, range, &o6).unwrap();
    let p = encap::ipv6::Ipv6Packet::new_checked(&buf[start..]).unwrap();
    assert_eq!(p.hop_limit(), 7);
    assert_ne!(p.flow_label(), 0, "flow label from the inner flow hash");
}

#[test]
fn source_port_stable_per_flow_and_varies_across_flows() {
    let (enc, _) = vx();
    let port_of = |src_port: u16, payload: &[u8]| {
        let mut inner = inner_packet(false, true, 0, payload);
        inner[20..22].copy_from_slice(&src_port.to_be_bytes());
        let (mut buf, range) = with_headroom(&inner);
        let start = enc.encap(&mut buf, range, &outer(false)).unwrap();
        u16::from_be_bytes([buf[start + 20], buf[start + 21]])
    };
    assert_eq!(port_of(1000, b"a"), port_of(1000, b"bbbbbb"));
    let distinct: std::collections::HashSet<u16> = (1000..1100).map(|p| port_of(p, b"x")).collect();
    assert!(
        distinct.len() > 90,
        "100 flows gave only {} source ports",
        distinct.len()
    );
}
