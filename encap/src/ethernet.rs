//! Ethernet II headers (the inner frame of a VXLAN packet) and MAC addresses.

use crate::error::{need, Error, Layer, Result};
use core::fmt;
use core::str::FromStr;

/// Length of an Ethernet II header without VLAN tags.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group (multicast or broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// A locally administered unicast MAC derived from `seed` (e.g. a node
    /// name hash), stable across restarts.
    pub fn local_from_seed(seed: u64) -> MacAddr {
        let b = seed.to_be_bytes();
        MacAddr([(b[2] & 0xfc) | 0x02, b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error parsing a MAC address from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacParseError;

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a MAC address like 02:00:00:00:00:01")
    }
}

impl std::error::Error for MacParseError {}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or(MacParseError)?;
            if p.len() != 2 {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(MacAddr(out))
    }
}

/// A checked view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that `buf` holds a whole header.
    pub fn new_checked(buf: T) -> Result<Self> {
        need(Layer::Ethernet, HEADER_LEN, buf.as_ref().len())?;
        Ok(EthernetFrame { buf })
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        let b = self.buf.as_ref();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        let b = self.buf.as_ref();
        MacAddr([b[6], b[7], b[8], b[9], b[10], b[11]])
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[12], b[13]])
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

/// Writes an Ethernet II header into the first 14 bytes of `out`.
pub fn write_header(out: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) -> Result<()> {
    if out.len() < HEADER_LEN {
        return Err(Error::NoRoom {
            need: HEADER_LEN,
            have: out.len(),
        });
    }
    out[0..6].copy_from_slice(&dst.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_round_trip() {
        let m: MacAddr = "ee:ee:ee:ee:ee:ee".parse().unwrap();
        assert_eq!(m.to_string(), "ee:ee:ee:ee:ee:ee");
        assert_eq!("02-00-00-00-00-0A".parse::<MacAddr>().unwrap().0[5], 10);
        for bad in [
            "",
            "02:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn local_mac_is_unicast_and_local() {
        for seed in [0u64, 1, u64::MAX, 0xdead_beef] {
            let m = MacAddr::local_from_seed(seed);
            assert!(!m.is_multicast());
            assert_eq!(m.0[0] & 0x02, 0x02);
        }
    }

    #[test]
    fn frame_fields() {
        let mut f = [0u8; 20];
        write_header(
            &mut f,
            MacAddr::BROADCAST,
            MacAddr([2, 0, 0, 0, 0, 1]),
            ETHERTYPE_IPV6,
        )
        .unwrap();
        let v = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(v.dst(), MacAddr::BROADCAST);
        assert_eq!(v.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(v.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(v.payload().len(), 6);
        assert_eq!(
            EthernetFrame::new_checked(&f[..13]).unwrap_err(),
            Error::Truncated {
                layer: Layer::Ethernet,
                need: 14,
                have: 13
            }
        );
        assert!(write_header(&mut f[..10], MacAddr::BROADCAST, MacAddr::BROADCAST, 0).is_err());
    }
}
