//! Encapsulation overhead and the overlay MTU check.

use crate::ip::{Family, IpPacket};

/// VXLAN over IPv4: 20 IP + 8 UDP + 8 VXLAN + 14 inner Ethernet.
pub const VXLAN_V4_OVERHEAD: usize = 50;
/// VXLAN over IPv6: 40 IP + 8 UDP + 8 VXLAN + 14 inner Ethernet.
pub const VXLAN_V6_OVERHEAD: usize = 70;
/// IP-in-IP over IPv4.
pub const IPIP_V4_OVERHEAD: usize = 20;
/// IP-in-IP over IPv6.
pub const IPIP_V6_OVERHEAD: usize = 40;

/// How packets travel between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encapsulation {
    /// VXLAN over UDP.
    Vxlan,
    /// IP-in-IP.
    IpIp,
    /// Routed without encapsulation (same-subnet peers in CrossSubnet mode).
    None,
}

/// Bytes the encapsulation adds over an underlay of `underlay` family.
pub const fn overhead(encap: Encapsulation, underlay: Family) -> usize {
    match (encap, underlay) {
        (Encapsulation::Vxlan, Family::V4) => VXLAN_V4_OVERHEAD,
        (Encapsulation::Vxlan, Family::V6) => VXLAN_V6_OVERHEAD,
        (Encapsulation::IpIp, Family::V4) => IPIP_V4_OVERHEAD,
        (Encapsulation::IpIp, Family::V6) => IPIP_V6_OVERHEAD,
        (Encapsulation::None, _) => 0,
    }
}

/// The largest inner packet that fits an underlay of `underlay_mtu` bytes.
pub const fn overlay_mtu(underlay_mtu: usize, encap: Encapsulation, underlay: Family) -> usize {
    underlay_mtu.saturating_sub(overhead(encap, underlay))
}

/// What to do with an inner packet given the overlay MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuVerdict {
    /// It fits.
    Fits,
    /// Too big and must not be fragmented (IPv4 with DF, or any IPv6):
    /// answer with ICMP "fragmentation needed" / "packet too big".
    TooBig {
        /// The MTU to report.
        mtu: usize,
    },
    /// Too big, IPv4 without DF: may be sent with the outer DF cleared so
    /// the underlay fragments it, as a router would fragment it.
    Fragmentable,
}

/// Checks a (single, not super-) packet against the overlay MTU.
pub fn check<T: AsRef<[u8]>>(packet: &IpPacket<T>, overlay_mtu: usize) -> MtuVerdict {
    if packet.total_len() <= overlay_mtu {
        return MtuVerdict::Fits;
    }
    match packet {
        IpPacket::V4(p) if !p.dont_frag() => MtuVerdict::Fragmentable,
        _ => MtuVerdict::TooBig { mtu: overlay_mtu },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads() {
        assert_eq!(overhead(Encapsulation::Vxlan, Family::V4), 50);
        assert_eq!(overhead(Encapsulation::Vxlan, Family::V6), 70);
        assert_eq!(overhead(Encapsulation::IpIp, Family::V4), 20);
        assert_eq!(overhead(Encapsulation::IpIp, Family::V6), 40);
        assert_eq!(overhead(Encapsulation::None, Family::V6), 0);
        assert_eq!(overlay_mtu(1500, Encapsulation::Vxlan, Family::V4), 1450);
        assert_eq!(overlay_mtu(10, Encapsulation::Vxlan, Family::V4), 0);
        // The constants are the sums of the header lengths they stand for.
        assert_eq!(
            VXLAN_V4_OVERHEAD,
            crate::ipv4::HEADER_LEN + crate::udp::HEADER_LEN + crate::vxlan::PAYLOAD_OVERHEAD
        );
        assert_eq!(
            VXLAN_V6_OVERHEAD,
            crate::ipv6::HEADER_LEN + crate::udp::HEADER_LEN + crate::vxlan::PAYLOAD_OVERHEAD
        );
    }

    #[test]
    fn verdicts() {
        let mut p = [0u8; 100];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&100u16.to_be_bytes());
        let v = |p: &[u8], mtu| check(&IpPacket::new_checked(p).unwrap(), mtu);
        assert_eq!(v(&p, 100), MtuVerdict::Fits);
        assert_eq!(v(&p, 99), MtuVerdict::Fragmentable);
        p[6] = 0x40;
        assert_eq!(v(&p, 99), MtuVerdict::TooBig { mtu: 99 });
        let mut q = [0u8; 100];
        q[0] = 0x60;
        q[4..6].copy_from_slice(&60u16.to_be_bytes());
        assert_eq!(v(&q, 100), MtuVerdict::Fits);
        assert_eq!(v(&q, 80), MtuVerdict::TooBig { mtu: 80 });
    }
}
