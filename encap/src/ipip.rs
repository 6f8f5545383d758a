//! IP-in-IP: IPv4 (protocol 4) or IPv6 (protocol 41) inside an outer IPv4
//! or IPv6 header (RFC 2003, RFC 4213, RFC 2473). 20 bytes of overhead over
//! IPv4, 40 over IPv6. Like VXLAN, it writes into the headroom in front of
//! the inner packet and decapsulates to a byte range, without copying.

use crate::error::{Error, Layer, Result};
use crate::ip::Family;
use crate::ipv4::{PROTO_IPIP, PROTO_IPV6};
use crate::tunnel::{self, Decapsulated, OuterIp};
use core::ops::Range;

/// The outer protocol number for an inner family.
pub fn protocol_for(family: Family) -> u8 {
    match family {
        Family::V4 => PROTO_IPIP,
        Family::V6 => PROTO_IPV6,
    }
}

/// Writes the outer header in front of `inner` and returns where it starts.
#[inline]
pub fn encap(buf: &mut [u8], inner: Range<usize>, outer: &OuterIp) -> Result<usize> {
    let hl = outer.header_len();
    let start = tunnel::headroom(buf.len(), &inner, hl)?;
    let (family, tos, hash) = tunnel::inspect_inner(&buf[inner.clone()])?;
    outer.write(
        &mut buf[start..start + hl],
        protocol_for(family),
        tos,
        hash,
        inner.len(),
    )?;
    Ok(start)
}

/// Checks a whole IP-in-IP packet (outer IPv4 checksum, no outer fragments,
/// protocol 4 or 41, a well-formed inner packet of that family), merges the
/// outer ECN into the inner packet and returns where the inner packet lies.
#[inline]
pub fn decap(packet: &mut [u8]) -> Result<Decapsulated> {
    let outer = tunnel::parse_outer(packet)?;
    let family = match outer.protocol {
        PROTO_IPIP => Family::V4,
        PROTO_IPV6 => Family::V6,
        _ => {
            return Err(Error::Unsupported {
                layer: Layer::Ipv4,
                what: "outer protocol is not 4 or 41",
            })
        }
    };
    let at = outer.payload.start;
    let len = tunnel::accept_inner(&mut packet[at..outer.payload.end], family, outer.ecn)?;
    Ok(Decapsulated {
        outer_family: outer.family,
        vni: None,
        family,
        inner: at..at + len,
    })
}
