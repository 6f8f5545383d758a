//! IPv6 neighbour discovery (RFC 4861), the one exchange a first-hop router
//! on a point-to-point link must answer: a neighbour solicitation for its
//! address, answered with a neighbour advertisement carrying its MAC. weftd
//! answers these itself on pod veths in veth-attach mode (no kernel stack
//! behind them), as it answers ARP (see [`crate::arp`]).

use crate::checksum::Checksum;
use crate::error::{Error, Layer, Result};
use crate::ethernet::MacAddr;
use core::net::Ipv6Addr;

/// The IPv6 EtherType.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOUR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// Ethernet + IPv6 + an advertisement with a target link-layer option.
pub const ADVERT_FRAME_LEN: usize = 14 + 40 + 32;

const ICMPV6: u8 = 58;

/// A neighbour solicitation: `asker_ip` at `asker_mac` asks who has `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicitation {
    /// The asker's MAC (Ethernet source).
    pub asker_mac: MacAddr,
    /// The asker's address; unspecified (::) for duplicate address detection.
    pub asker_ip: Ipv6Addr,
    /// The address asked about.
    pub target: Ipv6Addr,
}

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Icmp,
        what,
    }
}

/// True if the Ethernet frame carries an ICMPv6 neighbour solicitation
/// (IPv6 with ICMPv6 as the first next header; a cheap test before
/// [`parse_solicitation`]).
pub fn is_solicitation(frame: &[u8]) -> bool {
    frame.len() > 14 + 40
        && u16::from_be_bytes([frame[12], frame[13]]) == ETHERTYPE_IPV6
        && frame[14 + 6] == ICMPV6
        && frame[14 + 40] == NEIGHBOUR_SOLICITATION
}

fn ip6(b: &[u8]) -> Ipv6Addr {
    let a: [u8; 16] = b.try_into().expect("16 bytes");
    Ipv6Addr::from(a)
}

/// Reads a neighbour solicitation from an Ethernet frame, with every check
/// RFC 4861 section 7.1.1 asks of a receiver that matters here: hop limit
/// 255 (it came from the link), code 0, length, checksum, a target that is
/// not multicast.
pub fn parse_solicitation(frame: &[u8]) -> Result<Solicitation> {
    if frame.len() < 14 + 40 + 24 {
        return Err(Error::Truncated {
            layer: Layer::Icmp,
            need: 14 + 40 + 24,
            have: frame.len(),
        });
    }
    if !is_solicitation(frame) {
        return Err(Error::Unsupported {
            layer: Layer::Icmp,
            what: "not a neighbour solicitation",
        });
    }
    let ip = &frame[14..];
    if ip[0] >> 4 != 6 {
        return Err(malformed("not IPv6"));
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if payload_len < 24 || 40 + payload_len > ip.len() {
        return Err(malformed("bad payload length"));
    }
    if ip[7] != 255 {
        return Err(malformed("hop limit is not 255"));
    }
    let (src, dst) = (ip6(&ip[8..24]), ip6(&ip[24..40]));
    let icmp = &ip[40..40 + payload_len];
    if icmp[1] != 0 {
        return Err(malformed("code is not 0"));
    }
    let mut sum = Checksum::pseudo_v6(src, dst, ICMPV6, payload_len as u32);
    sum.add(icmp);
    if sum.fold() != 0xffff {
        return Err(Error::Checksum { layer: Layer::Icmp });
    }
    let target = ip6(&icmp[8..24]);
    if target.is_multicast() {
        return Err(malformed("multicast target"));
    }
    Ok(Solicitation {
        asker_mac: MacAddr(frame[6..12].try_into().expect("6 bytes")),
        asker_ip: src,
        target,
    })
}

/// Writes the Ethernet frame advertising `answer` as the MAC of the
/// solicited target into `out` (solicited, override, and the router flag
/// when `router`); returns its length ([`ADVERT_FRAME_LEN`]). A
/// solicitation from the unspecified address (duplicate address detection)
/// is refused: the pod is probing its own address, not asking for ours.
pub fn write_advertisement(
    out: &mut [u8],
    sol: &Solicitation,
    answer: MacAddr,
    router: bool,
) -> Result<usize> {
    if sol.asker_ip.is_unspecified() {
        return Err(Error::Unsupported {
            layer: Layer::Icmp,
            what: "duplicate address detection is not answered",
        });
    }
    if out.len() < ADVERT_FRAME_LEN {
        return Err(Error::Truncated {
            layer: Layer::Buffer,
            need: ADVERT_FRAME_LEN,
            have: out.len(),
        });
    }
    let out = &mut out[..ADVERT_FRAME_LEN];
    out[0..6].copy_from_slice(&sol.asker_mac.0);
    out[6..12].copy_from_slice(&answer.0);
    out[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut out[14..];
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&sol.target.octets());
    ip[24..40].copy_from_slice(&sol.asker_ip.octets());
    let icmp = &mut ip[40..72];
    icmp.fill(0);
    icmp[0] = NEIGHBOUR_ADVERTISEMENT;
    // R (router), S (solicited), O (override).
    icmp[4] = if router { 0x80 } else { 0 } | 0x40 | 0x20;
    icmp[8..24].copy_from_slice(&sol.target.octets());
    icmp[24] = 2; // target link-layer address option
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&answer.0);
    let mut sum = Checksum::pseudo_v6(sol.target, sol.asker_ip, ICMPV6, 32);
    sum.add(icmp);
    let c = sum.finish();
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(ADVERT_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
    const POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    /// A solicitation for the gateway as Linux sends it (with etherparse).
    fn solicitation(src: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
        use etherparse::{Icmpv6Type, PacketBuilder};
        let mut body = Vec::new();
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&GW.octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&POD_MAC);
        let mut out = Vec::new();
        PacketBuilder::ethernet2(POD_MAC, [0x33, 0x33, 0xff, 0xee, 0xee, 0xee])
            .ipv6(
                src.octets(),
                [
                    0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xee, 0xee, 0xee,
                ],
                hop_limit,
            )
            .icmpv6(Icmpv6Type::Unknown {
                type_u8: NEIGHBOUR_SOLICITATION,
                code_u8: 0,
                bytes5to8: [0; 4],
            })
            .write(&mut out, &body[4..])
            .unwrap();
        out
    }

    #[test]
    fn solicitation_then_advertisement() {
        let pod: Ipv6Addr = "fd00:244:0:1::5".parse().unwrap();
        let f = solicitation(pod, 255);
        assert!(is_solicitation(&f));
        let sol = parse_solicitation(&f).unwrap();
        assert_eq!(sol.target, GW);
        assert_eq!(sol.asker_ip, pod);
        assert_eq!(sol.asker_mac, MacAddr(POD_MAC));
        let mut out = [0u8; ADVERT_FRAME_LEN];
        let me = MacAddr([0xee; 6]);
        assert_eq!(
            write_advertisement(&mut out, &sol, me, true).unwrap(),
            ADVERT_FRAME_LEN
        );
        // An independent reading of what was written.
        let p = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!("ethernet")
        };
        assert_eq!(eth.destination(), POD_MAC);
        assert_eq!(eth.source(), me.0);
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!("ipv6")
        };
        assert_eq!(ip.header().source_addr(), GW);
        assert_eq!(ip.header().destination_addr(), pod);
        assert_eq!(ip.header().hop_limit(), 255);
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("icmpv6")
        };
        assert_eq!(icmp.type_u8(), NEIGHBOUR_ADVERTISEMENT);
        assert_eq!(
            icmp.icmp_type()
                .calc_checksum(GW.octets(), pod.octets(), icmp.payload())
                .unwrap(),
            icmp.checksum(),
            "checksum"
        );
        assert_eq!(icmp.bytes5to8()[0], 0xe0, "router, solicited, override");
        assert_eq!(&icmp.payload()[..16], &GW.octets());
        assert_eq!(
            &icmp.payload()[16..24],
            &[2, 1, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]
        );
    }

    #[test]
    fn refusals() {
        let pod: Ipv6Addr = "fd00:244:0:1::5".parse().unwrap();
        let f = solicitation(pod, 255);
        for cut in 0..f.len() {
            assert!(parse_solicitation(&f[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            parse_solicitation(&solicitation(pod, 64)).is_err(),
            "hop limit"
        );
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            parse_solicitation(&bad),
            Err(Error::Checksum { .. })
        ));
        let dad = parse_solicitation(&solicitation(Ipv6Addr::UNSPECIFIED, 255)).unwrap();
        assert!(write_advertisement(&mut [0u8; 128], &dad, MacAddr([0xee; 6]), true).is_err());
    }
}
