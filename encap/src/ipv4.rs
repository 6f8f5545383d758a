//! IPv4 headers (RFC 791): a checked view and a header writer.

use crate::checksum;
use crate::error::{need, Error, Layer, Result};
use core::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Protocol number of IPv4-in-IP (IP-in-IP).
pub const PROTO_IPIP: u8 = 4;
/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Protocol number of IPv6 encapsulated in IP.
pub const PROTO_IPV6: u8 = 41;
/// Protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

/// A checked view of an IPv4 packet: after [`Ipv4Packet::new_checked`] the
/// header, its options and the declared total length lie inside the buffer.
/// Bytes after the total length (link-layer padding) are ignored.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks, for a buffer already checked by
    /// [`Ipv4Packet::new_checked`] (accessors may panic otherwise).
    pub(crate) fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }

    /// Checks version, header length and total length against `buf`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        need(Layer::Ipv4, HEADER_LEN, b.len())?;
        if b[0] >> 4 != 4 {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "version is not 4",
            });
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if ihl < HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "header length below 20",
            });
        }
        need(Layer::Ipv4, ihl, b.len())?;
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total < ihl {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "total length below header length",
            });
        }
        need(Layer::Ipv4, total, b.len())?;
        Ok(Ipv4Packet { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[0] & 0x0f) * 4
    }

    /// The whole type-of-service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.b()[1]
    }

    /// Total length of the packet as declared by the header.
    pub fn total_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[2], self.b()[3]]))
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        u16::from_be_bytes([self.b()[6], self.b()[7]]) & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        u16::from_be_bytes([self.b()[6], self.b()[7]]) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[6], self.b()[7]]) & 0x1fff) * 8
    }

    /// True if this is any fragment of a larger datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[10], self.b()[11]])
    }

    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.b()[..self.header_len()]) == 0
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// The payload: from the end of the header to the declared total length.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Sets the total length (the header checksum is left to
    /// [`fill_checksum`](Self::fill_checksum)).
    pub fn set_total_len(&mut self, len: u16) {
        self.bm()[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the identification (the header checksum is left to
    /// [`fill_checksum`](Self::fill_checksum)).
    pub fn set_ident(&mut self, ident: u16) {
        self.bm()[4..6].copy_from_slice(&ident.to_be_bytes());
    }

    /// Sets the TTL and patches the header checksum incrementally.
    pub fn set_ttl(&mut self, ttl: u8) {
        let old = u16::from_be_bytes([self.b()[8], self.b()[9]]);
        self.bm()[8] = ttl;
        let new = u16::from_be_bytes([self.b()[8], self.b()[9]]);
        let c = checksum::update(self.checksum(), old, new);
        self.bm()[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// Sets the TOS byte and patches the header checksum incrementally.
    pub fn set_tos(&mut self, tos: u8) {
        let old = u16::from_be_bytes([self.b()[0], self.b()[1]]);
        self.bm()[1] = tos;
        let new = u16::from_be_bytes([self.b()[0], self.b()[1]]);
        let c = checksum::update(self.checksum(), old, new);
        self.bm()[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        self.bm()[10..12].fill(0);
        let c = checksum::checksum(&self.b()[..hl]);
        self.bm()[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// The fields of an IPv4 header without options, for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Type of service (DSCP and ECN).
    pub tos: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// Payload length in bytes (the header adds 20).
    pub payload_len: usize,
}

impl Ipv4Header {
    /// Writes the 20-byte header, checksum included, into `out[..20]`.
    pub fn write(&self, out: &mut [u8]) -> Result<()> {
        let total = HEADER_LEN + self.payload_len;
        if total > usize::from(u16::MAX) {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "total length above 65535",
            });
        }
        if out.len() < HEADER_LEN {
            return Err(Error::NoRoom {
                need: HEADER_LEN,
                have: out.len(),
            });
        }
        let h = &mut out[..HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags = if self.dont_frag { FLAG_DF } else { 0 };
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; 28] {
        let mut p = [0u8; 28];
        Ipv4Header {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: PROTO_UDP,
            tos: 0xb8,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
            payload_len: 8,
        }
        .write(&mut p)
        .unwrap();
        p
    }

    #[test]
    fn writes_and_reads_every_field() {
        let p = sample();
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.header_len(), 20);
        assert_eq!(v.tos(), 0xb8);
        assert_eq!(v.total_len(), 28);
        assert_eq!(v.ident(), 0x1234);
        assert!(v.dont_frag());
        assert!(!v.more_frags());
        assert_eq!(v.frag_offset(), 0);
        assert!(!v.is_fragment());
        assert_eq!(v.ttl(), 64);
        assert_eq!(v.protocol(), PROTO_UDP);
        assert!(v.verify_checksum());
        assert_eq!(v.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(v.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(v.payload().len(), 8);
        // etherparse agrees.
        let e = etherparse::Ipv4HeaderSlice::from_slice(&p).unwrap();
        assert_eq!(e.header_checksum(), v.checksum());
    }

    #[test]
    fn set_tos_keeps_checksum_valid() {
        let mut p = sample();
        let mut v = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        v.set_tos(0x03);
        assert_eq!(v.tos(), 3);
        assert!(v.verify_checksum());
    }

    #[test]
    fn rejects_bad_headers() {
        let p = sample();
        let mut bad = p;
        bad[0] = 0x65;
        assert!(matches!(
            Ipv4Packet::new_checked(&bad[..]),
            Err(Error::Malformed { .. })
        ));
        let mut bad = p;
        bad[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::new_checked(&bad[..]),
            Err(Error::Malformed { .. })
        ));
        let mut bad = p;
        bad[0] = 0x4f; // 60-byte header in a 28-byte buffer
        assert!(matches!(
            Ipv4Packet::new_checked(&bad[..]),
            Err(Error::Truncated { .. })
        ));
        let mut bad = p;
        bad[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&bad[..]),
            Err(Error::Malformed { .. })
        ));
        let mut bad = p;
        bad[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&bad[..]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Ipv4Packet::new_checked(&p[..19]),
            Err(Error::Truncated { .. })
        ));
        // Padding after the total length is accepted and ignored.
        let mut padded = [0u8; 40];
        padded[..28].copy_from_slice(&p);
        assert_eq!(
            Ipv4Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            8
        );
    }

    #[test]
    fn fragment_fields() {
        let mut p = sample();
        p[6..8].copy_from_slice(&(0x2000u16 | 3).to_be_bytes());
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert!(v.more_frags());
        assert_eq!(v.frag_offset(), 24);
        assert!(v.is_fragment());
        assert!(!v.dont_frag());
    }

    #[test]
    fn writer_rejects_oversize_and_small_buffer() {
        let h = Ipv4Header {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            protocol: 0,
            tos: 0,
            ttl: 1,
            ident: 0,
            dont_frag: false,
            payload_len: 65516,
        };
        assert!(h.write(&mut [0u8; 20]).is_err());
        assert!(Ipv4Header {
            payload_len: 0,
            ..h
        }
        .write(&mut [0u8; 19])
        .is_err());
    }
}
