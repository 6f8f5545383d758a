//! ICMP errors a router owes the sender of an oversized packet: ICMPv4
//! "fragmentation needed" (RFC 792, RFC 1191) and ICMPv6 "packet too big"
//! (RFC 4443), with the next-hop MTU.
//!
//! The rules of RFC 1812 4.3.2.7 and RFC 4443 2.4(e) decide when no error
//! may be sent: not about an ICMP error, not about a non-initial fragment,
//! not to an unspecified, loopback, broadcast or multicast source.

use crate::checksum::{self, Checksum};
use crate::error::{Error, Layer, Result};
use crate::ipv4::{Ipv4Header, Ipv4Packet, PROTO_ICMP};
use crate::ipv6::{Ipv6Header, Ipv6Packet, PROTO_ICMPV6};
use core::net::{Ipv4Addr, Ipv6Addr};

/// ICMPv4 type "destination unreachable".
pub const V4_DEST_UNREACHABLE: u8 = 3;
/// ICMPv4 code "fragmentation needed and DF set".
pub const V4_CODE_FRAG_NEEDED: u8 = 4;
/// ICMPv6 type "packet too big".
pub const V6_PACKET_TOO_BIG: u8 = 2;
/// The largest ICMPv4 error weft sends (RFC 1812: 576 bytes).
pub const V4_MAX_ERROR_LEN: usize = 576;
/// The largest ICMPv6 error weft sends (the IPv6 minimum MTU).
pub const V6_MAX_ERROR_LEN: usize = crate::ipv6::MIN_MTU;
/// Hop limit / TTL of the errors weft sends.
pub const ERROR_TTL: u8 = 64;

const ICMP_HEADER_LEN: usize = 8;

fn suppressed(what: &'static str) -> Error {
    Error::Unsupported {
        layer: Layer::Icmp,
        what,
    }
}

/// Builds, in `out`, a whole IPv4 packet from `router` to the sender of
/// `offending` saying "fragmentation needed", with next-hop MTU `mtu`, and
/// quoting as much of `offending` as fits in 576 bytes. Returns its length.
pub fn frag_needed_v4(
    offending: &[u8],
    router: Ipv4Addr,
    mtu: u16,
    out: &mut [u8],
) -> Result<usize> {
    let p = Ipv4Packet::new_checked(offending)?;
    let src = p.src();
    if src.is_unspecified() || src.is_loopback() || src.is_broadcast() || src.is_multicast() {
        return Err(suppressed("no ICMP error to this source address"));
    }
    if p.dst().is_broadcast() || p.dst().is_multicast() {
        return Err(suppressed(
            "no ICMP error about a broadcast or multicast packet",
        ));
    }
    if p.frag_offset() != 0 {
        return Err(suppressed("no ICMP error about a non-initial fragment"));
    }
    if p.protocol() == PROTO_ICMP {
        let ty = p.payload().first().copied();
        // Only the informational types (echo, timestamp, ...) may draw an error.
        if !matches!(ty, Some(0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)) {
            return Err(suppressed("no ICMP error about an ICMP error"));
        }
    }
    let quote = p.total_len().min(V4_MAX_ERROR_LEN - 20 - ICMP_HEADER_LEN);
    let total = 20 + ICMP_HEADER_LEN + quote;
    if out.len() < total {
        return Err(Error::NoRoom {
            need: total,
            have: out.len(),
        });
    }
    Ipv4Header {
        src: router,
        dst: src,
        protocol: PROTO_ICMP,
        tos: 0xc0,
        ttl: ERROR_TTL,
        ident: 0,
        dont_frag: false,
        payload_len: ICMP_HEADER_LEN + quote,
    }
    .write(out)?;
    let icmp = &mut out[20..total];
    icmp[0] = V4_DEST_UNREACHABLE;
    icmp[1] = V4_CODE_FRAG_NEEDED;
    icmp[2..6].fill(0);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&offending[..quote]);
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Builds, in `out`, a whole IPv6 packet from `router` to the sender of
/// `offending` saying "packet too big" with MTU `mtu`, quoting as much of
/// `offending` as fits in 1280 bytes. Returns its length.
pub fn packet_too_big_v6(
    offending: &[u8],
    router: Ipv6Addr,
    mtu: u32,
    out: &mut [u8],
) -> Result<usize> {
    let p = Ipv6Packet::new_checked(offending)?;
    let src = p.src();
    if src.is_unspecified() || src.is_loopback() || src.is_multicast() {
        return Err(suppressed("no ICMP error to this source address"));
    }
    if p.next_header() == PROTO_ICMPV6 {
        // Types below 128 are errors.
        if p.payload().first().is_none_or(|t| *t < 128) {
            return Err(suppressed("no ICMP error about an ICMP error"));
        }
    }
    let quote = p.total_len().min(V6_MAX_ERROR_LEN - 40 - ICMP_HEADER_LEN);
    let plen = ICMP_HEADER_LEN + quote;
    let total = 40 + plen;
    if out.len() < total {
        return Err(Error::NoRoom {
            need: total,
            have: out.len(),
        });
    }
    Ipv6Header {
        src: router,
        dst: src,
        next_header: PROTO_ICMPV6,
        traffic_class: 0,
        flow_label: 0,
        hop_limit: ERROR_TTL,
        payload_len: plen,
    }
    .write(out)?;
    let icmp = &mut out[40..total];
    icmp[0] = V6_PACKET_TOO_BIG;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&offending[..quote]);
    let mut c = Checksum::pseudo_v6(router, src, PROTO_ICMPV6, plen as u32);
    c.add(icmp);
    let sum = c.finish();
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_packet(len: usize, proto: u8, src: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0xa5u8; len];
        Ipv4Header {
            src: src.into(),
            dst: Ipv4Addr::new(10, 244, 1, 2),
            protocol: proto,
            tos: 0,
            ttl: 63,
            ident: 7,
            dont_frag: true,
            payload_len: len - 20,
        }
        .write(&mut p)
        .unwrap();
        p
    }

    #[test]
    fn frag_needed_fields() {
        let big = v4_packet(1500, 6, [10, 244, 0, 2]);
        let mut out = [0u8; 600];
        let n = frag_needed_v4(&big, Ipv4Addr::new(169, 254, 1, 1), 1450, &mut out).unwrap();
        assert_eq!(n, 576);
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), PROTO_ICMP);
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(ip.src(), Ipv4Addr::new(169, 254, 1, 1));
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450);
        assert_eq!(checksum::checksum(icmp), 0);
        assert_eq!(&icmp[8..], &big[..548]);
        // A small offending packet is quoted whole.
        let small = v4_packet(60, 17, [10, 244, 0, 2]);
        let n = frag_needed_v4(&small, Ipv4Addr::new(169, 254, 1, 1), 50, &mut out).unwrap();
        assert_eq!(n, 20 + 8 + 60);
        // etherparse reads it as what it is.
        let e = etherparse::SlicedPacket::from_ip(&out[..n]).unwrap();
        match e.transport {
            Some(etherparse::TransportSlice::Icmpv4(i)) => assert!(matches!(
                i.icmp_type(),
                etherparse::Icmpv4Type::DestinationUnreachable(
                    etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                        next_hop_mtu: 50
                    }
                )
            )),
            other => panic!("not ICMPv4: {other:?}"),
        }
    }

    #[test]
    fn frag_needed_suppressed() {
        let r = Ipv4Addr::new(169, 254, 1, 1);
        let mut out = [0u8; 600];
        let mut icmp_err = v4_packet(100, PROTO_ICMP, [10, 244, 0, 2]);
        icmp_err[20] = 3;
        assert!(matches!(
            frag_needed_v4(&icmp_err, r, 50, &mut out),
            Err(Error::Unsupported { .. })
        ));
        icmp_err[20] = 8; // echo request: allowed
        assert!(frag_needed_v4(&icmp_err, r, 50, &mut out).is_ok());
        let mut frag = v4_packet(100, 6, [10, 244, 0, 2]);
        frag[7] = 1;
        assert!(frag_needed_v4(&frag, r, 50, &mut out).is_err());
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            assert!(frag_needed_v4(&v4_packet(100, 6, src), r, 50, &mut out).is_err());
        }
        assert!(matches!(
            frag_needed_v4(&v4_packet(100, 6, [10, 0, 0, 1]), r, 50, &mut out[..100]),
            Err(Error::NoRoom { .. })
        ));
        assert!(frag_needed_v4(&[0x45, 0], r, 50, &mut out).is_err());
    }

    fn v6_packet(len: usize, nh: u8) -> Vec<u8> {
        let mut p = vec![0x5au8; len];
        Ipv6Header {
            src: "fd00:244::2".parse().unwrap(),
            dst: "fd00:244:1::2".parse().unwrap(),
            next_header: nh,
            traffic_class: 0,
            flow_label: 1,
            hop_limit: 63,
            payload_len: len - 40,
        }
        .write(&mut p)
        .unwrap();
        p
    }

    #[test]
    fn packet_too_big_fields() {
        let big = v6_packet(1500, 6);
        let mut out = [0u8; 1400];
        let router: Ipv6Addr = "fe80::1".parse().unwrap();
        let n = packet_too_big_v6(&big, router, 1430, &mut out).unwrap();
        assert_eq!(n, 1280);
        let ip = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.next_header(), PROTO_ICMPV6);
        assert_eq!(ip.dst(), "fd00:244::2".parse::<Ipv6Addr>().unwrap());
        let icmp = ip.payload();
        assert_eq!(icmp[0], 2);
        assert_eq!(
            u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
            1430
        );
        let mut c = Checksum::pseudo_v6(router, ip.dst(), PROTO_ICMPV6, icmp.len() as u32);
        c.add(icmp);
        assert_eq!(c.fold(), 0xffff);
        let e = etherparse::SlicedPacket::from_ip(&out[..n]).unwrap();
        match e.transport {
            Some(etherparse::TransportSlice::Icmpv6(i)) => {
                assert_eq!(
                    i.icmp_type(),
                    etherparse::Icmpv6Type::PacketTooBig { mtu: 1430 }
                )
            }
            other => panic!("not ICMPv6: {other:?}"),
        }
    }

    #[test]
    fn packet_too_big_suppressed() {
        let router: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut out = [0u8; 1400];
        let mut err = v6_packet(100, PROTO_ICMPV6);
        err[40] = 1;
        assert!(packet_too_big_v6(&err, router, 1280, &mut out).is_err());
        err[40] = 128; // echo request
        assert!(packet_too_big_v6(&err, router, 1280, &mut out).is_ok());
        let mut unspec = v6_packet(100, 6);
        unspec[8..24].fill(0);
        assert!(packet_too_big_v6(&unspec, router, 1280, &mut out).is_err());
        assert!(packet_too_big_v6(&v6_packet(100, 6), router, 1280, &mut out[..50]).is_err());
    }
}
