//! A family-agnostic view of an IP packet: what the tunnel needs to know
//! about the packet it carries.

use crate::error::{Error, Layer, Result};
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use core::net::IpAddr;

/// IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A checked view of an IPv4 or IPv6 packet.
#[derive(Debug, Clone, Copy)]
pub enum IpPacket<T> {
    /// An IPv4 packet.
    V4(Ipv4Packet<T>),
    /// An IPv6 packet.
    V6(Ipv6Packet<T>),
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Checks `buf` as IPv4 or IPv6, by its version nibble.
    pub fn new_checked(buf: T) -> Result<Self> {
        match buf.as_ref().first().map(|b| b >> 4) {
            Some(4) => Ok(IpPacket::V4(Ipv4Packet::new_checked(buf)?)),
            Some(6) => Ok(IpPacket::V6(Ipv6Packet::new_checked(buf)?)),
            Some(_) => Err(Error::Malformed {
                layer: Layer::Inner,
                what: "IP version is neither 4 nor 6",
            }),
            None => Err(Error::Truncated {
                layer: Layer::Inner,
                need: 1,
                have: 0,
            }),
        }
    }

    /// The packet's family.
    pub fn family(&self) -> Family {
        match self {
            IpPacket::V4(_) => Family::V4,
            IpPacket::V6(_) => Family::V6,
        }
    }

    /// TOS byte (IPv4) or traffic class (IPv6).
    pub fn tos(&self) -> u8 {
        match self {
            IpPacket::V4(p) => p.tos(),
            IpPacket::V6(p) => p.traffic_class(),
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.src().into(),
            IpPacket::V6(p) => p.src().into(),
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.dst().into(),
            IpPacket::V6(p) => p.dst().into(),
        }
    }

    /// Payload protocol (IPv6: the first next header).
    pub fn protocol(&self) -> u8 {
        match self {
            IpPacket::V4(p) => p.protocol(),
            IpPacket::V6(p) => p.next_header(),
        }
    }

    /// Header length (IPv6: the fixed 40 bytes).
    pub fn header_len(&self) -> usize {
        match self {
            IpPacket::V4(p) => p.header_len(),
            IpPacket::V6(_) => crate::ipv6::HEADER_LEN,
        }
    }

    /// Declared total length.
    pub fn total_len(&self) -> usize {
        match self {
            IpPacket::V4(p) => p.total_len(),
            IpPacket::V6(p) => p.total_len(),
        }
    }

    /// True for an IPv4 fragment (the transport header may be absent).
    pub fn is_fragment(&self) -> bool {
        match self {
            IpPacket::V4(p) => p.is_fragment(),
            IpPacket::V6(p) => p.next_header() == 44,
        }
    }

    /// The payload after the (fixed) header.
    pub fn payload(&self) -> &[u8] {
        match self {
            IpPacket::V4(p) => p.payload(),
            IpPacket::V6(p) => p.payload(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IpPacket<T> {
    /// Sets TOS / traffic class (IPv4: checksum patched).
    pub fn set_tos(&mut self, tos: u8) {
        match self {
            IpPacket::V4(p) => p.set_tos(tos),
            IpPacket::V6(p) => p.set_traffic_class(tos),
        }
    }
}

/// The fixed header of an IPv4 or IPv6 packet whose rest need not be in
/// the buffer: headers built ahead of a payload gathered from elsewhere,
/// or a super-packet whose length fields the offload owns. Only the
/// version and the header's own length are checked.
#[derive(Debug, Clone, Copy)]
pub struct IpHeader<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> IpHeader<T> {
    /// Checks the version and that the whole header (IPv4 options
    /// included) is in `buf`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        let need = match b.first().map(|v| v >> 4) {
            Some(4) => match b.first().map(|v| usize::from(v & 0x0f) * 4) {
                Some(ihl) if ihl >= crate::ipv4::HEADER_LEN => ihl,
                _ => {
                    return Err(Error::Malformed {
                        layer: Layer::Ipv4,
                        what: "header length below 20",
                    })
                }
            },
            Some(6) => crate::ipv6::HEADER_LEN,
            Some(_) => {
                return Err(Error::Malformed {
                    layer: Layer::Inner,
                    what: "IP version is neither 4 nor 6",
                })
            }
            None => 1,
        };
        if b.len() < need {
            return Err(Error::Truncated {
                layer: Layer::Inner,
                need,
                have: b.len(),
            });
        }
        Ok(IpHeader { buf })
    }

    /// The packet's family.
    pub fn family(&self) -> Family {
        if self.buf.as_ref()[0] >> 4 == 4 {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match self.family() {
            Family::V4 => Ipv4Packet::new_unchecked(self.buf.as_ref()).dst().into(),
            Family::V6 => Ipv6Packet::new_unchecked(self.buf.as_ref()).dst().into(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IpHeader<T> {
    /// Takes one hop off the IPv4 TTL (header checksum patched) or the
    /// IPv6 hop limit; false, and nothing changed, if it would reach 0.
    pub fn decrement_ttl(&mut self) -> bool {
        match self.family() {
            Family::V4 => {
                let mut p = Ipv4Packet::new_unchecked(self.buf.as_mut());
                let ttl = p.ttl();
                if ttl <= 1 {
                    return false;
                }
                p.set_ttl(ttl - 1);
            }
            Family::V6 => {
                let mut p = Ipv6Packet::new_unchecked(self.buf.as_mut());
                let hops = p.hop_limit();
                if hops <= 1 {
                    return false;
                }
                p.set_hop_limit(hops - 1);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_version() {
        assert!(matches!(
            IpPacket::new_checked(&[][..]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            IpPacket::new_checked(&[0x50u8; 40][..]),
            Err(Error::Malformed { .. })
        ));
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[3] = 20;
        let p = IpPacket::new_checked(&v4[..]).unwrap();
        assert_eq!(p.family(), Family::V4);
        assert_eq!(p.header_len(), 20);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[6] = 59;
        let p = IpPacket::new_checked(&v6[..]).unwrap();
        assert_eq!(p.family(), Family::V6);
        assert_eq!(p.protocol(), 59);
        assert_eq!(p.total_len(), 40);
    }
}
