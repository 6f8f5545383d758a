//! IPv6 headers (RFC 8200): a checked view and a header writer.
//!
//! Extension headers are not walked: weft treats the first next-header value
//! as the payload protocol, so a packet with extension headers is forwarded
//! whole, hashed on addresses only, and never segmented or coalesced.

use crate::error::{need, Error, Layer, Result};
use core::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Next-header value of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// The minimum link MTU every IPv6 link supports.
pub const MIN_MTU: usize = 1280;

/// A checked view of an IPv6 packet: after [`Ipv6Packet::new_checked`] the
/// fixed header and the declared payload lie inside the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks, for a buffer already checked by
    /// [`Ipv6Packet::new_checked`] (accessors may panic otherwise).
    pub(crate) fn new_unchecked(buf: T) -> Self {
        Ipv6Packet { buf }
    }

    /// Checks version and payload length against `buf`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        need(Layer::Ipv6, HEADER_LEN, b.len())?;
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed {
                layer: Layer::Ipv6,
                what: "version is not 6",
            });
        }
        let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if plen == 0 && b[6] == 0 {
            return Err(Error::Unsupported {
                layer: Layer::Ipv6,
                what: "jumbogram",
            });
        }
        need(Layer::Ipv6, HEADER_LEN + plen, b.len())?;
        Ok(Ipv6Packet { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = self.b();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Payload length as declared.
    pub fn payload_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[4], self.b()[5]]))
    }

    /// Total length: header plus payload.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Next header (the payload protocol when there are no extension headers).
    pub fn next_header(&self) -> u8 {
        self.b()[6]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[7]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[8..24]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[24..40]);
        Ipv6Addr::from(a)
    }

    /// The payload, up to the declared length.
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buf.as_mut()[4..6].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hops: u8) {
        self.buf.as_mut()[7] = hops;
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buf.as_mut();
        b[0] = 0x60 | (tc >> 4);
        b[1] = (tc << 4) | (b[1] & 0x0f);
    }
}

/// The fields of a fixed IPv6 header, for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// Flow label (low 20 bits used).
    pub flow_label: u32,
    /// Hop limit.
    pub hop_limit: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Ipv6Header {
    /// Writes the 40-byte header into `out[..40]`.
    pub fn write(&self, out: &mut [u8]) -> Result<()> {
        if self.payload_len > usize::from(u16::MAX) {
            return Err(Error::Malformed {
                layer: Layer::Ipv6,
                what: "payload length above 65535",
            });
        }
        if out.len() < HEADER_LEN {
            return Err(Error::NoRoom {
                need: HEADER_LEN,
                have: out.len(),
            });
        }
        let word =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xfffff);
        out[0..4].copy_from_slice(&word.to_be_bytes());
        out[4..6].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
        out[6] = self.next_header;
        out[7] = self.hop_limit;
        out[8..24].copy_from_slice(&self.src.octets());
        out[24..40].copy_from_slice(&self.dst.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; 48] {
        let mut p = [0u8; 48];
        Ipv6Header {
            src: "fd00::1".parse().unwrap(),
            dst: "fd00::2".parse().unwrap(),
            next_header: 17,
            traffic_class: 0xb9,
            flow_label: 0xabcde,
            hop_limit: 63,
            payload_len: 8,
        }
        .write(&mut p)
        .unwrap();
        p
    }

    #[test]
    fn writes_and_reads_every_field() {
        let p = sample();
        let v = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.traffic_class(), 0xb9);
        assert_eq!(v.flow_label(), 0xabcde);
        assert_eq!(v.payload_len(), 8);
        assert_eq!(v.total_len(), 48);
        assert_eq!(v.next_header(), 17);
        assert_eq!(v.hop_limit(), 63);
        assert_eq!(v.src(), "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.dst(), "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.payload().len(), 8);
        let e = etherparse::Ipv6HeaderSlice::from_slice(&p).unwrap();
        assert_eq!(e.traffic_class(), 0xb9);
        assert_eq!(u32::from(e.flow_label()), 0xabcde);
    }

    #[test]
    fn set_traffic_class_keeps_flow_label() {
        let mut p = sample();
        let mut v = Ipv6Packet::new_checked(&mut p[..]).unwrap();
        v.set_traffic_class(0x02);
        assert_eq!(v.traffic_class(), 0x02);
        assert_eq!(v.flow_label(), 0xabcde);
        assert_eq!(p[0] >> 4, 6);
    }

    #[test]
    fn rejects_bad_headers() {
        let p = sample();
        let mut bad = p;
        bad[0] = 0x40;
        assert!(matches!(
            Ipv6Packet::new_checked(&bad[..]),
            Err(Error::Malformed { .. })
        ));
        let mut bad = p;
        bad[5] = 9;
        assert!(matches!(
            Ipv6Packet::new_checked(&bad[..]),
            Err(Error::Truncated { .. })
        ));
        let mut bad = p;
        bad[4..7].fill(0);
        assert!(matches!(
            Ipv6Packet::new_checked(&bad[..]),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            Ipv6Packet::new_checked(&p[..39]),
            Err(Error::Truncated { .. })
        ));
    }
}
