//! What VXLAN and IP-in-IP share: the outer IP header on the way out, and on
//! the way in, its checks and the RFC 6040 ECN merge into the inner packet.

use crate::ecn::{self, Ecn};
use crate::error::{Error, Layer, Result};
use crate::ip::{Family, IpPacket};
use crate::ipv4::{Ipv4Header, Ipv4Packet};
use crate::ipv6::{Ipv6Header, Ipv6Packet};
use core::net::IpAddr;
use core::ops::Range;

/// Default outer TTL / hop limit.
pub const DEFAULT_TTL: u8 = 64;

/// The outer IP header a tunnel packet is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterIp {
    /// This node's underlay address.
    pub src: IpAddr,
    /// The peer's underlay address (same family as `src`).
    pub dst: IpAddr,
    /// Outer TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// IPv4 only: set Don't Fragment. weft sets it so that path MTU problems
    /// show up as ICMP errors instead of silent fragmentation; clear it to
    /// let the underlay fragment inner IPv4 packets that allow it.
    pub dont_frag: bool,
}

impl OuterIp {
    /// An outer header with the default TTL and DF set.
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        OuterIp {
            src,
            dst,
            ttl: DEFAULT_TTL,
            dont_frag: true,
        }
    }

    /// Length of the outer IP header.
    pub fn header_len(&self) -> usize {
        match self.src {
            IpAddr::V4(_) => crate::ipv4::HEADER_LEN,
            IpAddr::V6(_) => crate::ipv6::HEADER_LEN,
        }
    }

    /// Writes the outer IP header into `out[..header_len()]`. `tos` is the
    /// inner TOS (copied whole, RFC 6040 normal mode); `hash` is the inner
    /// flow hash (IPv6 flow label).
    pub(crate) fn write(
        &self,
        out: &mut [u8],
        protocol: u8,
        tos: u8,
        hash: u32,
        payload_len: usize,
    ) -> Result<()> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Header {
                src,
                dst,
                protocol,
                tos: ecn::encap_tos(tos),
                ttl: self.ttl,
                ident: 0,
                dont_frag: self.dont_frag,
                payload_len,
            }
            .write(out),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Header {
                src,
                dst,
                next_header: protocol,
                traffic_class: ecn::encap_tos(tos),
                flow_label: crate::flow::flow_label(hash),
                hop_limit: self.ttl,
                payload_len,
            }
            .write(out),
            _ => Err(Error::FamilyMismatch),
        }
    }
}

/// A received outer header that passed its checks. Addresses stay in the
/// packet until asked for (copying 17-byte `IpAddr`s around the hot path
/// costs more than reading them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outer {
    pub family: Family,
    pub ecn: Ecn,
    pub protocol: u8,
    pub payload: Range<usize>,
}

impl Outer {
    /// Source and destination addresses, read from the checked `packet`.
    /// Always inlined: returned through the stack, the 17-byte `IpAddr`s
    /// cost a store-forwarding stall (measured: +15 ns per decap).
    #[inline(always)]
    pub fn addrs(&self, packet: &[u8]) -> (IpAddr, IpAddr) {
        match self.family {
            Family::V4 => {
                let p = Ipv4Packet::new_unchecked(packet);
                (p.src().into(), p.dst().into())
            }
            Family::V6 => {
                let p = Ipv6Packet::new_unchecked(packet);
                (p.src().into(), p.dst().into())
            }
        }
    }
}

/// Checks an outer IP header: version, lengths, IPv4 header checksum, no
/// fragments (weft never reassembles outer packets).
#[inline]
pub(crate) fn parse_outer(packet: &[u8]) -> Result<Outer> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(packet)?;
            if !p.verify_checksum() {
                return Err(Error::Checksum { layer: Layer::Ipv4 });
            }
            if p.is_fragment() {
                return Err(Error::Unsupported {
                    layer: Layer::Ipv4,
                    what: "fragmented outer packet",
                });
            }
            Ok(Outer {
                family: Family::V4,
                ecn: Ecn::from_tos(p.tos()),
                protocol: p.protocol(),
                payload: p.header_len()..p.total_len(),
            })
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(packet)?;
            Ok(Outer {
                family: Family::V6,
                ecn: Ecn::from_tos(p.traffic_class()),
                protocol: p.next_header(),
                payload: crate::ipv6::HEADER_LEN..p.total_len(),
            })
        }
        Some(_) => Err(Error::Malformed {
            layer: Layer::Ipv4,
            what: "outer IP version is neither 4 nor 6",
        }),
        None => Err(Error::Truncated {
            layer: Layer::Ipv4,
            need: crate::ipv4::HEADER_LEN,
            have: 0,
        }),
    }
}

/// Checks the inner IP packet at the start of `inner` (which must be of
/// `family`), merges the outer ECN into it (RFC 6040) and returns its length
/// (link-layer padding after it excluded).
#[inline]
pub(crate) fn accept_inner(inner: &mut [u8], family: Family, outer_ecn: Ecn) -> Result<usize> {
    let mut p = IpPacket::new_checked(inner).map_err(|e| match e {
        Error::Truncated { need, have, .. } => Error::Truncated {
            layer: Layer::Inner,
            need,
            have,
        },
        Error::Malformed { what, .. } => Error::Malformed {
            layer: Layer::Inner,
            what,
        },
        other => other,
    })?;
    if p.family() != family {
        return Err(Error::Malformed {
            layer: Layer::Inner,
            what: "IP version differs from the declared type",
        });
    }
    let tos = p.tos();
    let inner_ecn = Ecn::from_tos(tos);
    let merged = ecn::decap(outer_ecn, inner_ecn)?;
    if merged != inner_ecn {
        p.set_tos(merged.apply(tos));
    }
    Ok(p.total_len())
}

/// A decapsulated packet: where the inner IP packet lies in the buffer that
/// was handed in, and what the outer headers said. The inner bytes are not
/// copied; take them with `&buf[d.inner.clone()]`. The outer addresses stay
/// in the buffer too ([`Decapsulated::outer_addrs`]): a small, aligned result
/// moves through registers, where two 17-byte `IpAddr`s cost a
/// store-forwarding stall in every caller (measured: ~15 ns per packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// Family of the outer header.
    pub outer_family: Family,
    /// VXLAN network identifier (None for IP-in-IP).
    pub vni: Option<u32>,
    /// Family of the inner packet.
    pub family: Family,
    /// Byte range of the inner IP packet.
    pub inner: Range<usize>,
}

impl Decapsulated {
    /// Outer source (the sending node's underlay address) and destination,
    /// read from `packet`, the buffer that was decapsulated.
    #[inline]
    pub fn outer_addrs(&self, packet: &[u8]) -> (IpAddr, IpAddr) {
        Outer {
            family: self.outer_family,
            ecn: Ecn::NotEct,
            protocol: 0,
            payload: 0..0,
        }
        .addrs(packet)
    }
}

/// Checks that `inner` lies inside `buf` with `need` bytes of headroom in
/// front of it, and returns where the headers start.
#[inline]
pub(crate) fn headroom(buf_len: usize, inner: &Range<usize>, need: usize) -> Result<usize> {
    if inner.start > inner.end || inner.end > buf_len {
        return Err(Error::NoRoom {
            need: inner.end,
            have: buf_len,
        });
    }
    inner.start.checked_sub(need).ok_or(Error::NoHeadroom {
        need,
        have: inner.start,
    })
}

/// Checks the inner packet handed to an encapsulator and returns its family,
/// TOS and flow hash.
#[inline]
pub(crate) fn inspect_inner(inner: &[u8]) -> Result<(Family, u8, u32)> {
    let first = *inner.first().ok_or(Error::Truncated {
        layer: Layer::Inner,
        need: 1,
        have: 0,
    })?;
    let (family, tos, min) = match first >> 4 {
        4 if inner.len() >= 20 => (Family::V4, inner[1], 20),
        6 if inner.len() >= 40 => (Family::V6, (inner[0] << 4) | (inner[1] >> 4), 40),
        4 | 6 => {
            let need = if first >> 4 == 4 { 20 } else { 40 };
            return Err(Error::Truncated {
                layer: Layer::Inner,
                need,
                have: inner.len(),
            });
        }
        _ => {
            return Err(Error::Malformed {
                layer: Layer::Inner,
                what: "IP version is neither 4 nor 6",
            })
        }
    };
    debug_assert!(inner.len() >= min);
    Ok((family, tos, crate::flow::flow_hash(inner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_checks() {
        assert_eq!(headroom(100, &(50..100), 50), Ok(0));
        assert_eq!(
            headroom(100, &(49..100), 50),
            Err(Error::NoHeadroom { need: 50, have: 49 })
        );
        assert!(headroom(100, &(50..101), 50).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 60..50;
        assert!(headroom(100, &backwards, 50).is_err());
    }

    #[test]
    fn outer_family_mismatch() {
        let o = OuterIp::new("10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap());
        assert_eq!(
            o.write(&mut [0u8; 40], 17, 0, 0, 0),
            Err(Error::FamilyMismatch)
        );
    }

    #[test]
    fn outer_rejects_fragments_and_bad_checksums() {
        let mut p = [0u8; 28];
        Ipv4Header {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 17,
            tos: 0,
            ttl: 64,
            ident: 1,
            dont_frag: false,
            payload_len: 8,
        }
        .write(&mut p)
        .unwrap();
        assert!(parse_outer(&p).is_ok());
        let mut frag = p;
        frag[6] = 0x20;
        Ipv4Packet::new_checked(&mut frag[..])
            .unwrap()
            .fill_checksum();
        assert!(matches!(parse_outer(&frag), Err(Error::Unsupported { .. })));
        let mut bad = p;
        bad[8] = 1;
        assert_eq!(
            parse_outer(&bad),
            Err(Error::Checksum { layer: Layer::Ipv4 })
        );
        assert!(matches!(
            parse_outer(&[0x70; 40]),
            Err(Error::Malformed {
                layer: Layer::Ipv4,
                ..
            })
        ));
        assert!(matches!(
            parse_outer(&[]),
            Err(Error::Truncated {
                layer: Layer::Ipv4,
                ..
            })
        ));
    }
}
