//! TCP headers (RFC 9293): the fields segmentation and coalescing touch.

use crate::error::{need, Error, Layer, Result};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// FIN flag.
pub const FLAG_FIN: u8 = 0x01;
/// SYN flag.
pub const FLAG_SYN: u8 = 0x02;
/// RST flag.
pub const FLAG_RST: u8 = 0x04;
/// PSH flag.
pub const FLAG_PSH: u8 = 0x08;
/// ACK flag.
pub const FLAG_ACK: u8 = 0x10;
/// URG flag.
pub const FLAG_URG: u8 = 0x20;
/// ECE flag.
pub const FLAG_ECE: u8 = 0x40;
/// CWR flag.
pub const FLAG_CWR: u8 = 0x80;

/// A checked view of a TCP segment: the header with its options lies inside
/// the buffer; everything after it is payload.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// Checks the data offset against `buf`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        need(Layer::Tcp, HEADER_LEN, b.len())?;
        let off = usize::from(b[12] >> 4) * 4;
        if off < HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Tcp,
                what: "data offset below 5",
            });
        }
        need(Layer::Tcp, off, b.len())?;
        Ok(TcpSegment { buf })
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

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes([self.b()[4], self.b()[5], self.b()[6], self.b()[7]])
    }

    /// Acknowledgement number.
    pub fn ack(&self) -> u32 {
        u32::from_be_bytes([self.b()[8], self.b()[9], self.b()[10], self.b()[11]])
    }

    /// Header length with options.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[12] >> 4) * 4
    }

    /// The eight flag bits.
    pub fn flags(&self) -> u8 {
        self.b()[13]
    }

    /// Receive window.
    pub fn window(&self) -> u16 {
        u16::from_be_bytes([self.b()[14], self.b()[15]])
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[16], self.b()[17]])
    }

    /// Options bytes.
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }

    /// Payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_errors() {
        let mut s = [0u8; 28];
        s[0..2].copy_from_slice(&1234u16.to_be_bytes());
        s[2..4].copy_from_slice(&80u16.to_be_bytes());
        s[4..8].copy_from_slice(&7u32.to_be_bytes());
        s[8..12].copy_from_slice(&9u32.to_be_bytes());
        s[12] = 6 << 4;
        s[13] = FLAG_ACK | FLAG_PSH;
        s[14..16].copy_from_slice(&512u16.to_be_bytes());
        s[16..18].copy_from_slice(&0xabcdu16.to_be_bytes());
        let t = TcpSegment::new_checked(&s[..]).unwrap();
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq(), t.ack()),
            (1234, 80, 7, 9)
        );
        assert_eq!(
            (t.header_len(), t.flags(), t.window(), t.checksum()),
            (24, 0x18, 512, 0xabcd)
        );
        assert_eq!(t.options().len(), 4);
        assert_eq!(t.payload().len(), 4);
        assert!(matches!(
            TcpSegment::new_checked(&s[..23]),
            Err(Error::Truncated { .. })
        ));
        s[12] = 4 << 4;
        assert!(matches!(
            TcpSegment::new_checked(&s[..]),
            Err(Error::Malformed { .. })
        ));
    }
}
