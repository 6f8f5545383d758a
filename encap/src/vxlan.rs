//! VXLAN (RFC 7348): the 8-byte header, and whole-packet encapsulation and
//! decapsulation around an inner Ethernet frame carrying an IP packet.
//!
//! Two depths, for the two ways weft sends:
//! - *payload*: VXLAN header + inner Ethernet (22 bytes) — the UDP payload,
//!   for a UDP socket where the kernel writes outer IP and UDP;
//! - *full*: outer IP + UDP + VXLAN + Ethernet (50 bytes over IPv4, 70 over
//!   IPv6), for raw sockets, captures and tests.
//!
//! Encapsulation writes into the headroom in front of the inner packet, in
//! the same buffer; decapsulation checks and returns the inner packet's byte
//! range. Neither copies the inner packet or allocates.

use crate::ecn::Ecn;
use crate::error::{need, Error, Layer, Result};
use crate::ethernet::{self, EthernetFrame, MacAddr};
use crate::ip::Family;
use crate::tunnel::{self, Decapsulated, OuterIp};
use crate::udp::{self, UdpPacket};
use core::ops::Range;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The IANA port for VXLAN.
pub const DEFAULT_PORT: u16 = 4789;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Bytes in front of the inner IP packet in a VXLAN UDP payload.
pub const PAYLOAD_OVERHEAD: usize = HEADER_LEN + ethernet::HEADER_LEN;
/// The most UDP payload one UDP GSO send carries (an IPv4 datagram's limit).
pub const GSO_MAX_BYTES: usize = 65_507;
/// The most datagrams the kernel cuts one UDP GSO send into.
pub const GSO_MAX_DATAGRAMS: usize = 64;

/// How many inner packets of up to `inner_mtu` bytes one UDP GSO send of
/// VXLAN datagrams carries: 44 at the usual overlay MTU of 1450. TCP
/// super-packets capped at this many segments leave in one send.
pub const fn gso_max_segments(inner_mtu: usize) -> usize {
    let n = GSO_MAX_BYTES / (inner_mtu + PAYLOAD_OVERHEAD);
    if n < 1 {
        1
    } else if n > GSO_MAX_DATAGRAMS {
        GSO_MAX_DATAGRAMS
    } else {
        n
    }
}

/// A VXLAN network identifier (24 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    /// A VNI, if `value` fits in 24 bits.
    pub fn new(value: u32) -> Option<Vni> {
        (value <= VNI_MAX).then_some(Vni(value))
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A checked view of a VXLAN header: 8 bytes present and the I flag set.
/// Reserved bits are ignored, as RFC 7348 requires of receivers.
#[derive(Debug, Clone, Copy)]
pub struct VxlanHeader<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Checks length and the I flag.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        need(Layer::Vxlan, HEADER_LEN, b.len())?;
        if b[0] & FLAG_I == 0 {
            return Err(Error::Malformed {
                layer: Layer::Vxlan,
                what: "I flag clear",
            });
        }
        Ok(VxlanHeader { buf })
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[0]
    }

    /// The VNI.
    pub fn vni(&self) -> Vni {
        let b = self.buf.as_ref();
        Vni(u32::from_be_bytes([0, b[4], b[5], b[6]]))
    }

    /// The bytes after the header (the inner Ethernet frame).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

/// Writes a VXLAN header (I flag, VNI, reserved bits zero) into `out[..8]`.
pub fn write_header(out: &mut [u8], vni: Vni) -> Result<()> {
    if out.len() < HEADER_LEN {
        return Err(Error::NoRoom {
            need: HEADER_LEN,
            have: out.len(),
        });
    }
    out[..4].copy_from_slice(&[FLAG_I, 0, 0, 0]);
    out[4..8].copy_from_slice(&(vni.0 << 8).to_be_bytes());
    Ok(())
}

/// How this node encapsulates towards one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanEncap {
    /// The VNI.
    pub vni: Vni,
    /// UDP destination port (default 4789).
    pub dst_port: u16,
    /// Inner source MAC: this node's VTEP MAC.
    pub src_mac: MacAddr,
    /// Inner destination MAC: the peer's VTEP MAC.
    pub dst_mac: MacAddr,
    /// Lowest UDP source port (default 49152).
    pub src_port_min: u16,
    /// Highest UDP source port (default 65535).
    pub src_port_max: u16,
}

impl VxlanEncap {
    /// Defaults for port and source-port range.
    pub fn new(vni: Vni, src_mac: MacAddr, dst_mac: MacAddr) -> Self {
        VxlanEncap {
            vni,
            dst_port: DEFAULT_PORT,
            src_mac,
            dst_mac,
            src_port_min: crate::flow::SRC_PORT_MIN,
            src_port_max: crate::flow::SRC_PORT_MAX,
        }
    }

    /// Writes VXLAN + inner Ethernet in the 22 bytes before `inner` and
    /// returns the offset where the UDP payload starts.
    #[inline]
    pub fn encap_payload(&self, buf: &mut [u8], inner: Range<usize>) -> Result<usize> {
        let start = tunnel::headroom(buf.len(), &inner, PAYLOAD_OVERHEAD)?;
        let (family, _, _) = tunnel::inspect_inner(&buf[inner])?;
        self.write_payload_headers(&mut buf[start..start + PAYLOAD_OVERHEAD], family);
        Ok(start)
    }

    #[inline]
    fn write_payload_headers(&self, out: &mut [u8], family: Family) {
        let ethertype = match family {
            Family::V4 => ethernet::ETHERTYPE_IPV4,
            Family::V6 => ethernet::ETHERTYPE_IPV6,
        };
        out[0..4].copy_from_slice(&[FLAG_I, 0, 0, 0]);
        out[4..8].copy_from_slice(&(self.vni.0 << 8).to_be_bytes());
        out[8..14].copy_from_slice(&self.dst_mac.0);
        out[14..20].copy_from_slice(&self.src_mac.0);
        out[20..22].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Writes outer IP + UDP + VXLAN + Ethernet in front of `inner` and
    /// returns the offset where the outer IP packet starts. The UDP checksum
    /// is zero over IPv4 and computed over IPv6.
    #[inline]
    pub fn encap(&self, buf: &mut [u8], inner: Range<usize>, outer: &OuterIp) -> Result<usize> {
        let ip_len = outer.header_len();
        let start = tunnel::headroom(
            buf.len(),
            &inner,
            ip_len + udp::HEADER_LEN + PAYLOAD_OVERHEAD,
        )?;
        let inner_len = inner.len();
        let (family, tos, hash) = tunnel::inspect_inner(&buf[inner.clone()])?;
        let udp_len = udp::HEADER_LEN + PAYLOAD_OVERHEAD + inner_len;
        let src_port = crate::flow::source_port(hash, self.src_port_min, self.src_port_max);
        let out = &mut buf[start..inner.end];
        outer.write(out, crate::ipv4::PROTO_UDP, tos, hash, udp_len)?;
        let (_, rest) = out.split_at_mut(ip_len);
        udp::write_header(rest, src_port, self.dst_port, udp_len - udp::HEADER_LEN)?;
        self.write_payload_headers(
            &mut rest[udp::HEADER_LEN..udp::HEADER_LEN + PAYLOAD_OVERHEAD],
            family,
        );
        if outer.src.is_ipv6() {
            udp::fill_checksum(rest, outer.src, outer.dst);
        }
        Ok(start)
    }
}

/// The inner packet found in a VXLAN UDP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInner {
    /// The VNI.
    pub vni: Vni,
    /// Inner Ethernet source (the sending VTEP's MAC).
    pub src_mac: MacAddr,
    /// Inner Ethernet destination.
    pub dst_mac: MacAddr,
    /// Inner IP family.
    pub family: Family,
    /// Range of the inner IP packet within the payload handed in.
    pub inner: Range<usize>,
}

/// What this node accepts on receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanDecap {
    /// The VNI accepted.
    pub vni: Vni,
    /// The UDP port VXLAN listens on (checked by full decapsulation).
    pub port: u16,
}

impl VxlanDecap {
    /// Checks a VXLAN UDP payload (VXLAN header, inner Ethernet, inner IP),
    /// applies the outer ECN to the inner packet (RFC 6040) and returns where
    /// the inner IP packet lies. `outer_ecn` comes from the outer header
    /// (IP_RECVTOS on a socket).
    #[inline]
    pub fn decap_payload(&self, payload: &mut [u8], outer_ecn: Ecn) -> Result<VxlanInner> {
        let (vni, family, len) = self.check_payload(payload, outer_ecn)?;
        let eth = EthernetFrame::new_checked(&payload[HEADER_LEN..])?;
        Ok(VxlanInner {
            vni,
            src_mac: eth.src(),
            dst_mac: eth.dst(),
            family,
            inner: PAYLOAD_OVERHEAD..PAYLOAD_OVERHEAD + len,
        })
    }

    /// The checks of [`VxlanDecap::decap_payload`]; returns VNI, inner family
    /// and inner length.
    #[inline(always)]
    fn check_payload(&self, payload: &mut [u8], outer_ecn: Ecn) -> Result<(Vni, Family, usize)> {
        let hdr = VxlanHeader::new_checked(&payload[..])?;
        let vni = hdr.vni();
        if vni != self.vni {
            return Err(Error::WrongVni {
                expected: self.vni.0,
                got: vni.0,
            });
        }
        let eth = EthernetFrame::new_checked(hdr.payload())?;
        let family = match eth.ethertype() {
            ethernet::ETHERTYPE_IPV4 => Family::V4,
            ethernet::ETHERTYPE_IPV6 => Family::V6,
            _ => {
                return Err(Error::Unsupported {
                    layer: Layer::Ethernet,
                    what: "inner EtherType is not IPv4 or IPv6",
                })
            }
        };
        let len = tunnel::accept_inner(&mut payload[PAYLOAD_OVERHEAD..], family, outer_ecn)?;
        Ok((vni, family, len))
    }

    /// Checks a whole VXLAN packet from its outer IP header on: outer IP
    /// (IPv4 checksum, no fragments), UDP (length, port, checksum where
    /// present — required over IPv6), then as [`VxlanDecap::decap_payload`].
    pub fn decap(&self, packet: &mut [u8]) -> Result<Decapsulated> {
        let outer = tunnel::parse_outer(packet)?;
        if outer.protocol != crate::ipv4::PROTO_UDP {
            return Err(Error::Unsupported {
                layer: Layer::Ipv4,
                what: "outer protocol is not UDP",
            });
        }
        let udp_range = outer.payload.clone();
        let udp = UdpPacket::new_checked(&packet[udp_range.clone()])?;
        if udp.dst_port() != self.port {
            return Err(Error::WrongPort {
                expected: self.port,
                got: udp.dst_port(),
            });
        }
        // A zero checksum over IPv4 means "none" (RFC 768); skip the addresses.
        if udp.checksum() != 0 || outer.family == Family::V6 {
            let (src, dst) = outer.addrs(packet);
            if !udp.verify_checksum(src, dst) {
                return Err(Error::Checksum { layer: Layer::Udp });
            }
        }
        let payload_start = udp_range.start + udp::HEADER_LEN;
        let payload_end = udp_range.start + udp.len();
        let (vni, family, len) =
            self.check_payload(&mut packet[payload_start..payload_end], outer.ecn)?;
        let inner_start = payload_start + PAYLOAD_OVERHEAD;
        Ok(Decapsulated {
            outer_family: outer.family,
            vni: Some(vni.0),
            family,
            inner: inner_start..inner_start + len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_segments_fill_one_send_and_stay_in_the_kernels_limits() {
        assert_eq!(gso_max_segments(1450), 44);
        assert_eq!(gso_max_segments(1500), 43);
        assert_eq!(gso_max_segments(9000), 7);
        assert_eq!(gso_max_segments(68), 64);
        assert_eq!(gso_max_segments(576), 64);
        assert_eq!(gso_max_segments(65_535), 1);
        for mtu in [576, 1280, 1400, 1450, 8950] {
            let n = gso_max_segments(mtu);
            assert!(n * (mtu + PAYLOAD_OVERHEAD) <= GSO_MAX_BYTES, "{mtu}");
            // As many as fit, unless the kernel's datagram count stops it.
            assert!(
                n == GSO_MAX_DATAGRAMS || (n + 1) * (mtu + PAYLOAD_OVERHEAD) > GSO_MAX_BYTES,
                "{mtu}"
            );
        }
    }

    #[test]
    fn header_round_trip_and_errors() {
        let mut h = [0u8; 8];
        write_header(&mut h, Vni::new(0xabcdef).unwrap()).unwrap();
        assert_eq!(h, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        let v = VxlanHeader::new_checked(&h[..]).unwrap();
        assert_eq!(v.vni().get(), 0xabcdef);
        assert_eq!(v.flags(), FLAG_I);
        // Reserved bits are ignored on receive.
        let mut r = h;
        r[0] |= 0xf7;
        r[1..4].fill(0xff);
        r[7] = 0xff;
        assert_eq!(
            VxlanHeader::new_checked(&r[..]).unwrap().vni().get(),
            0xabcdef
        );
        // I flag clear.
        let mut c = h;
        c[0] = 0;
        assert_eq!(
            VxlanHeader::new_checked(&c[..]).unwrap_err(),
            Error::Malformed {
                layer: Layer::Vxlan,
                what: "I flag clear"
            }
        );
        assert!(matches!(
            VxlanHeader::new_checked(&h[..7]),
            Err(Error::Truncated { .. })
        ));
        assert!(write_header(&mut h[..7], Vni::new(1).unwrap()).is_err());
        assert_eq!(Vni::new(VNI_MAX + 1), None);
        assert_eq!(Vni::new(VNI_MAX).map(Vni::get), Some(VNI_MAX));
    }
}
