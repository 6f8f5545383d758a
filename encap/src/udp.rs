//! UDP headers (RFC 768): a checked view, a writer and the checksum rules
//! VXLAN needs (zero allowed over IPv4, required over IPv6).

use crate::checksum::Checksum;
use crate::error::{need, Error, Layer, Result};
use core::net::IpAddr;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A checked view of a UDP datagram: the header and the declared length lie
/// inside the buffer.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks the header and the length field against `buf`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        need(Layer::Udp, HEADER_LEN, b.len())?;
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if len < HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Udp,
                what: "length below 8",
            });
        }
        need(Layer::Udp, len, b.len())?;
        Ok(UdpPacket { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.b()[0], self.b()[1]])
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }

    /// Length field: header plus payload.
    pub fn len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[4], self.b()[5]]))
    }

    /// Always false: a checked datagram has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[6], self.b()[7]])
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.len()]
    }

    /// Verifies the checksum for the given pseudo-header addresses. A zero
    /// checksum means "none" over IPv4 and is accepted there; over IPv6 it
    /// is an error (RFC 8200 section 8.1).
    #[inline]
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let sum = self.checksum();
        if sum == 0 {
            return src.is_ipv4();
        }
        let mut c = pseudo(src, dst, self.len() as u32);
        c.add(&self.b()[..self.len()]);
        c.fold() == 0xffff
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, len: u32) -> Checksum {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Checksum::pseudo_v4(s, d, 17, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => Checksum::pseudo_v6(s, d, 17, len),
        // Mixed families cannot carry UDP; a sum that never verifies.
        _ => {
            let mut c = Checksum::new();
            c.add_u16(1);
            c
        }
    }
}

/// Writes a UDP header into `out[..8]` with a zero checksum. `payload_len`
/// excludes the header.
pub fn write_header(
    out: &mut [u8],
    src_port: u16,
    dst_port: u16,
    payload_len: usize,
) -> Result<()> {
    let len = HEADER_LEN + payload_len;
    if len > usize::from(u16::MAX) {
        return Err(Error::Malformed {
            layer: Layer::Udp,
            what: "length above 65535",
        });
    }
    if out.len() < HEADER_LEN {
        return Err(Error::NoRoom {
            need: HEADER_LEN,
            have: out.len(),
        });
    }
    out[0..2].copy_from_slice(&src_port.to_be_bytes());
    out[2..4].copy_from_slice(&dst_port.to_be_bytes());
    out[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    out[6..8].fill(0);
    Ok(())
}

/// Computes and stores the checksum of the whole datagram `udp` (header and
/// payload, checksum field zero or not). A computed zero is sent as 0xffff.
pub fn fill_checksum(udp: &mut [u8], src: IpAddr, dst: IpAddr) {
    if udp.len() < HEADER_LEN {
        return;
    }
    udp[6..8].fill(0);
    let mut c = pseudo(src, dst, udp.len() as u32);
    c.add(udp);
    let mut sum = c.finish();
    if sum == 0 {
        sum = 0xffff;
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_checksum() {
        let mut d = [0u8; 12];
        write_header(&mut d, 50000, 4789, 4).unwrap();
        d[8..].copy_from_slice(b"weft");
        let v4s: IpAddr = "10.99.0.1".parse().unwrap();
        let v4d: IpAddr = "10.99.0.2".parse().unwrap();
        let v = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!((v.src_port(), v.dst_port(), v.len()), (50000, 4789, 12));
        assert_eq!(v.payload(), b"weft");
        assert!(!v.is_empty());
        // Zero checksum: fine over IPv4, rejected over IPv6.
        assert!(v.verify_checksum(v4s, v4d));
        let v6s: IpAddr = "fd00::1".parse().unwrap();
        let v6d: IpAddr = "fd00::2".parse().unwrap();
        assert!(!v.verify_checksum(v6s, v6d));
        fill_checksum(&mut d, v6s, v6d);
        let v = UdpPacket::new_checked(&d[..]).unwrap();
        assert!(v.verify_checksum(v6s, v6d));
        assert!(!v.verify_checksum(v6s, "fd00::3".parse().unwrap()));
        assert!(!v.verify_checksum(v4s, v6d));
        fill_checksum(&mut d, v4s, v4d);
        assert!(UdpPacket::new_checked(&d[..])
            .unwrap()
            .verify_checksum(v4s, v4d));
        d[9] ^= 1;
        assert!(!UdpPacket::new_checked(&d[..])
            .unwrap()
            .verify_checksum(v4s, v4d));
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut d = [0u8; 12];
        write_header(&mut d, 1, 2, 4).unwrap();
        assert!(matches!(
            UdpPacket::new_checked(&d[..7]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            UdpPacket::new_checked(&d[..11]),
            Err(Error::Truncated { .. })
        ));
        d[5] = 7;
        assert!(matches!(
            UdpPacket::new_checked(&d[..]),
            Err(Error::Malformed { .. })
        ));
        assert!(write_header(&mut d, 1, 2, 65528).is_err());
        assert!(write_header(&mut d[..7], 1, 2, 0).is_err());
    }
}
