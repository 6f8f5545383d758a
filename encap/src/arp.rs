//! ARP for IPv4 over Ethernet (RFC 826): reading a request, writing the
//! reply. weftd answers requests that arrive inside VXLAN (from a Linux
//! vxlan peer, say) from its tables, so nothing is flooded.

use crate::error::{Error, Layer, Result};
use crate::ethernet::MacAddr;
use core::net::Ipv4Addr;

/// The ARP EtherType.
pub const ETHERTYPE: u16 = 0x0806;
/// Ethernet header plus an IPv4 ARP message.
pub const FRAME_LEN: usize = 14 + 28;

/// An ARP request: who has `target_ip`, tell `sender_ip` at `sender_mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The asker's MAC.
    pub sender_mac: MacAddr,
    /// The asker's IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// The address asked about.
    pub target_ip: Ipv4Addr,
}

/// True if the Ethernet frame carries ARP.
pub fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 && u16::from_be_bytes([frame[12], frame[13]]) == ETHERTYPE
}

/// Reads an IPv4-over-Ethernet ARP request from an Ethernet frame.
pub fn parse_request(frame: &[u8]) -> Result<Request> {
    if frame.len() < FRAME_LEN {
        return Err(Error::Truncated {
            layer: Layer::Arp,
            need: FRAME_LEN,
            have: frame.len(),
        });
    }
    if !is_arp(frame) {
        return Err(Error::Unsupported {
            layer: Layer::Arp,
            what: "not an ARP frame",
        });
    }
    let a = &frame[14..FRAME_LEN];
    let bad = |what| {
        Err(Error::Malformed {
            layer: Layer::Arp,
            what,
        })
    };
    if a[0..2] != [0, 1] || a[2..4] != [0x08, 0x00] || a[4] != 6 || a[5] != 4 {
        return bad("not IPv4 over Ethernet");
    }
    if a[6..8] != [0, 1] {
        return Err(Error::Unsupported {
            layer: Layer::Arp,
            what: "not a request",
        });
    }
    let mac = |b: &[u8]| MacAddr(b.try_into().expect("6 bytes"));
    let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    Ok(Request {
        sender_mac: mac(&a[8..14]),
        sender_ip: ip(&a[14..18]),
        target_ip: ip(&a[24..28]),
    })
}

/// Writes the Ethernet frame answering `req` with `answer` (the MAC that
/// has the target address) into `out`; returns its length ([`FRAME_LEN`]).
pub fn write_reply(out: &mut [u8], req: &Request, answer: MacAddr) -> Result<usize> {
    if out.len() < FRAME_LEN {
        return Err(Error::Truncated {
            layer: Layer::Buffer,
            need: FRAME_LEN,
            have: out.len(),
        });
    }
    out[0..6].copy_from_slice(&req.sender_mac.0);
    out[6..12].copy_from_slice(&answer.0);
    out[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    let a = &mut out[14..FRAME_LEN];
    a[0..8].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    a[8..14].copy_from_slice(&answer.0);
    a[14..18].copy_from_slice(&req.target_ip.octets());
    a[18..24].copy_from_slice(&req.sender_mac.0);
    a[24..28].copy_from_slice(&req.sender_ip.octets());
    Ok(FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 10, 244, 2, 0]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[10, 244, 1, 0]);
        f
    }

    #[test]
    fn request_then_reply() {
        let req = parse_request(&request()).unwrap();
        assert_eq!(req.target_ip, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(req.sender_ip, Ipv4Addr::new(10, 244, 2, 0));
        let mut out = [0u8; FRAME_LEN];
        let me = MacAddr([0x7a, 1, 2, 3, 4, 5]);
        assert_eq!(write_reply(&mut out, &req, me).unwrap(), FRAME_LEN);
        // Field by field, as RFC 826 lays them out.
        assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 2], "to the asker");
        assert_eq!(&out[6..12], &me.0);
        assert_eq!(&out[12..14], &[0x08, 0x06]);
        assert_eq!(&out[14..22], &[0, 1, 0x08, 0, 6, 4, 0, 2], "an IPv4 reply");
        assert_eq!(&out[22..28], &me.0, "sender hardware: the answer");
        assert_eq!(
            &out[28..32],
            &[10, 244, 1, 0],
            "sender protocol: the target"
        );
        assert_eq!(&out[32..38], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&out[38..42], &[10, 244, 2, 0]);
    }

    #[test]
    fn refusals() {
        let f = request();
        for cut in 0..FRAME_LEN {
            assert!(parse_request(&f[..cut]).is_err());
        }
        let mut reply = f.clone();
        reply[21] = 2;
        assert!(matches!(
            parse_request(&reply),
            Err(Error::Unsupported { .. })
        ));
        let mut v6 = f.clone();
        v6[16] = 0x86;
        assert!(matches!(parse_request(&v6), Err(Error::Malformed { .. })));
        let mut ip = f;
        ip[13] = 0;
        assert!(!is_arp(&ip));
    }
}
