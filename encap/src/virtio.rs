//! The virtio-net header a TUN device with `IFF_VNET_HDR` puts in front of
//! every packet (10 bytes, little-endian as in virtio 1.0; Linux's
//! `struct virtio_net_hdr`). It carries the offload state: a TCP
//! super-packet's segment size (GSO) and where a partial checksum must be
//! completed (NEEDS_CSUM).

use crate::error::{need, Error, Layer, Result};
use crate::ip::Family;
use crate::segment::{Coalesced, Transport};

/// Length of the header (without the `num_buffers` field of mergeable
/// receive buffers, which TUN does not use).
pub const HEADER_LEN: usize = 10;
/// Flag: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; complete it over the data from `csum_start`.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// Flag: the checksum was already verified.
pub const FLAG_DATA_VALID: u8 = 2;

/// What kind of super-packet, if any, follows the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    /// A single packet.
    None,
    /// A TCP over IPv4 super-packet.
    TcpV4,
    /// A TCP over IPv6 super-packet.
    TcpV6,
    /// A UDP super-packet (USO: segment the payload at `gso_size`).
    UdpL4,
}

/// A decoded virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `FLAG_NEEDS_CSUM` and/or `FLAG_DATA_VALID`.
    pub flags: u8,
    /// Kind of super-packet.
    pub gso_type: GsoType,
    /// The ECN bit of gso_type: the super-packet had CWR set, segments after
    /// the first must clear it (TCP's own rule, which `split_tcp` applies).
    pub gso_ecn: bool,
    /// Length of the headers (IP + transport) of a super-packet.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// The header of a plain packet with nothing to complete.
    pub const NONE: VirtioNetHdr = VirtioNetHdr {
        flags: 0,
        gso_type: GsoType::None,
        gso_ecn: false,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decodes the first 10 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VirtioNetHdr> {
        need(Layer::Buffer, HEADER_LEN, buf.len())?;
        let le = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
        let gso_type = match buf[1] & 0x7f {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            _ => {
                return Err(Error::Unsupported {
                    layer: Layer::Buffer,
                    what: "virtio-net GSO type",
                })
            }
        };
        if buf[0] & !(FLAG_NEEDS_CSUM | FLAG_DATA_VALID) != 0 {
            return Err(Error::Unsupported {
                layer: Layer::Buffer,
                what: "virtio-net flags",
            });
        }
        let hdr = VirtioNetHdr {
            flags: buf[0],
            gso_type,
            gso_ecn: buf[1] & 0x80 != 0,
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        };
        if hdr.gso_type != GsoType::None && hdr.gso_size == 0 {
            return Err(Error::Malformed {
                layer: Layer::Buffer,
                what: "virtio-net GSO with a segment size of zero",
            });
        }
        Ok(hdr)
    }

    /// Encodes into the first 10 bytes of `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<()> {
        if out.len() < HEADER_LEN {
            return Err(Error::NoRoom {
                need: HEADER_LEN,
                have: out.len(),
            });
        }
        let ty = match self.gso_type {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
        } | if self.gso_ecn { 0x80 } else { 0 };
        out[0] = self.flags;
        out[1] = ty;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        Ok(())
    }

    /// The header of a plain packet whose transport checksum (at
    /// `csum_start + csum_offset`) holds the pseudo-header sum for the
    /// receiver to finish.
    pub fn needs_checksum(csum_start: usize, csum_offset: usize) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: FLAG_NEEDS_CSUM,
            csum_start: csum_start as u16,
            csum_offset: csum_offset as u16,
            ..VirtioNetHdr::NONE
        }
    }

    /// The header for writing a coalesced super-packet (finished with
    /// `ChecksumFill::Partial`) to a TUN device: GSO TCP (or UDP_L4) with the
    /// segment size, NEEDS_CSUM at the transport checksum. A single segment
    /// goes as a plain packet that still needs its checksum completed.
    pub fn for_coalesced(c: &Coalesced) -> VirtioNetHdr {
        let gso_type = match (c.segments > 1, c.transport, c.family) {
            (false, _, _) => GsoType::None,
            (true, Transport::Udp, _) => GsoType::UdpL4,
            (true, Transport::Tcp, Family::V4) => GsoType::TcpV4,
            (true, Transport::Tcp, Family::V6) => GsoType::TcpV6,
        };
        VirtioNetHdr {
            flags: FLAG_NEEDS_CSUM,
            gso_type,
            gso_ecn: false,
            hdr_len: c.header_len as u16,
            gso_size: if c.segments > 1 { c.mss as u16 } else { 0 },
            csum_start: c.csum_start as u16,
            csum_offset: c.csum_offset as u16,
        }
    }
}

/// Completes a partial checksum (NEEDS_CSUM): the field at `csum_start +
/// csum_offset` holds the pseudo-header sum; sum from `csum_start` to the end
/// and store the complement (0 sent as 0xffff, valid for TCP and required
/// for UDP).
pub fn complete_checksum(packet: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<()> {
    let at = csum_start.saturating_add(csum_offset);
    if at.saturating_add(2) > packet.len() {
        return Err(Error::Truncated {
            layer: Layer::Buffer,
            need: at.saturating_add(2),
            have: packet.len(),
        });
    }
    let mut c = crate::checksum::checksum(&packet[csum_start..]);
    if c == 0 {
        c = 0xffff;
    }
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let h = VirtioNetHdr {
            flags: FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV6,
            gso_ecn: true,
            hdr_len: 72,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; 10];
        h.write(&mut b).unwrap();
        assert_eq!(b, [1, 0x84, 72, 0, 0x94, 0x05, 40, 0, 16, 0]);
        assert_eq!(VirtioNetHdr::parse(&b), Ok(h));
        VirtioNetHdr::NONE.write(&mut b).unwrap();
        assert_eq!(b, [0; 10]);
        assert_eq!(VirtioNetHdr::parse(&b), Ok(VirtioNetHdr::NONE));
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        assert!(matches!(
            VirtioNetHdr::parse(&[0; 9]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            VirtioNetHdr::parse(&[0, 3, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            VirtioNetHdr::parse(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            VirtioNetHdr::parse(&[0, 1, 40, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Malformed { .. })
        ));
        assert!(VirtioNetHdr::NONE.write(&mut [0u8; 9]).is_err());
    }

    #[test]
    fn completes_a_partial_checksum() {
        // A UDP datagram whose checksum field holds the pseudo-header sum.
        let mut p = vec![0u8; 20 + 8 + 5];
        crate::ipv4::Ipv4Header {
            src: [10, 0, 0, 1].into(),
            dst: [10, 0, 0, 2].into(),
            protocol: 17,
            tos: 0,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            payload_len: 13,
        }
        .write(&mut p)
        .unwrap();
        crate::udp::write_header(&mut p[20..], 1000, 2000, 5).unwrap();
        p[28..].copy_from_slice(b"hello");
        let pseudo = crate::checksum::Checksum::pseudo_v4(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            17,
            13,
        )
        .fold();
        p[26..28].copy_from_slice(&pseudo.to_be_bytes());
        complete_checksum(&mut p, 20, 6).unwrap();
        let u = crate::udp::UdpPacket::new_checked(&p[20..]).unwrap();
        assert!(u.verify_checksum("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()));
        assert!(complete_checksum(&mut p, 20, 20).is_err());
        assert!(complete_checksum(&mut p, usize::MAX, 6).is_err());
    }

    #[test]
    fn header_for_a_coalesced_packet() {
        let c = Coalesced {
            len: 20 + 20 + 3 * 1000,
            segments: 3,
            mss: 1000,
            family: Family::V4,
            transport: Transport::Tcp,
            csum_start: 20,
            csum_offset: 16,
            header_len: 40,
        };
        let h = VirtioNetHdr::for_coalesced(&c);
        assert_eq!(
            (h.gso_type, h.gso_size, h.hdr_len, h.flags),
            (GsoType::TcpV4, 1000, 40, FLAG_NEEDS_CSUM)
        );
        let one = VirtioNetHdr::for_coalesced(&Coalesced { segments: 1, ..c });
        assert_eq!((one.gso_type, one.gso_size), (GsoType::None, 0));
        assert_eq!(
            VirtioNetHdr::for_coalesced(&Coalesced {
                family: Family::V6,
                ..c
            })
            .gso_type,
            GsoType::TcpV6
        );
        let udp = VirtioNetHdr::for_coalesced(&Coalesced {
            transport: Transport::Udp,
            csum_offset: 6,
            header_len: 28,
            ..c
        });
        assert_eq!(
            (udp.gso_type, udp.gso_size, udp.hdr_len, udp.csum_offset),
            (GsoType::UdpL4, 1000, 28, 6)
        );
    }
}
