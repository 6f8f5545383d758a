//! The outer UDP source port of a VXLAN datagram, chosen per inner flow
//! (RFC 7348 section 5): underlay routers spread flows over equal-cost
//! paths by it, and the receiving node's NIC (RSS) and SO_REUSEPORT spread
//! them over queues and weftd workers. One flow keeps one port, so its
//! packets stay in order.
//!
//! A UDP socket sends from the port it is bound to, and UDP GSO needs a
//! real UDP socket, so each source port is a send-only socket; the flow
//! hash ([`encap::flow::flow_hash`]) picks one. The sockets are shared by
//! all workers (sends on one UDP socket need no lock between threads).
//! This is the one place the choice is made: the data path, `weftctl
//! trace` and the benches ask [`SourcePorts`].

use super::sys::udp_gso::UnderlaySocket;
use std::net::IpAddr;
use std::sync::Arc;

/// One family's sockets, one per source port.
type Sockets = Arc<[Arc<UnderlaySocket>]>;

/// The sockets VXLAN datagrams leave from, one per source port and
/// underlay family (a dual-stack node has both, at the same ports).
#[derive(Debug, Clone)]
pub struct SourcePorts {
    v4: Option<Sockets>,
    v6: Option<Sockets>,
    ports: Arc<[u16]>,
}

impl SourcePorts {
    /// Sockets of one family and the ports they are bound to (at least
    /// one).
    pub fn new(sockets: Vec<(Arc<UnderlaySocket>, u16)>) -> SourcePorts {
        let (sockets, ports): (Vec<_>, Vec<_>) = sockets.into_iter().unzip();
        SourcePorts::per_family(vec![sockets], ports)
    }

    /// For each port, its socket in each family this node tunnels over
    /// (at least one port; the same families for every port).
    pub fn dual(sockets: Vec<(Vec<Arc<UnderlaySocket>>, u16)>) -> SourcePorts {
        let (per_port, ports): (Vec<_>, Vec<_>) = sockets.into_iter().unzip();
        let families = per_port.first().map_or(0, Vec::len);
        let by_family = (0..families)
            .map(|f| per_port.iter().map(|s| Arc::clone(&s[f])).collect())
            .collect();
        SourcePorts::per_family(by_family, ports)
    }

    fn per_family(by_family: Vec<Vec<Arc<UnderlaySocket>>>, ports: Vec<u16>) -> SourcePorts {
        assert!(!ports.is_empty(), "at least one source socket");
        let (mut v4, mut v6) = (None, None);
        for sockets in by_family {
            assert_eq!(sockets.len(), ports.len(), "a socket per port");
            let is_v6 = sockets[0].local_addr().is_ok_and(|a| a.is_ipv6());
            let slot = if is_v6 { &mut v6 } else { &mut v4 };
            *slot = Some(sockets.into());
        }
        SourcePorts {
            v4,
            v6,
            ports: ports.into(),
        }
    }

    /// Every datagram from one socket per family (the VXLAN port itself,
    /// when the operator asks for a fixed source port).
    pub fn single(sockets: Vec<Arc<UnderlaySocket>>, port: u16) -> SourcePorts {
        SourcePorts::dual(vec![(sockets, port)])
    }

    /// Which socket carries the flow of `inner` (an IP packet).
    #[inline]
    pub fn for_packet(&self, inner: &[u8]) -> usize {
        self.for_hash(encap::flow::flow_hash(inner))
    }

    /// Which socket carries a flow of hash `hash`: the hash mapped onto the
    /// sockets as Linux maps it onto its port range (multiply-shift).
    #[inline]
    pub fn for_hash(&self, hash: u32) -> usize {
        let last = (self.ports.len() - 1).min(usize::from(u16::MAX)) as u16;
        usize::from(encap::flow::source_port(hash, 0, last))
    }

    /// Socket `i` (as [`Self::for_packet`] numbers them) of the family of
    /// `to`, the peer's address. [`next_hop`](super::next_hop::next_hop)
    /// only picks families this node has; were it another, the other
    /// family's socket is returned and its send fails (counted).
    #[inline]
    pub fn socket(&self, i: usize, to: IpAddr) -> &UnderlaySocket {
        let (want, other) = if to.is_ipv6() {
            (&self.v6, &self.v4)
        } else {
            (&self.v4, &self.v6)
        };
        let sockets = want
            .as_ref()
            .or(other.as_ref())
            .expect("at least one family");
        &sockets[i]
    }

    /// The source port of socket `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Every source port, in socket order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(n: usize) -> SourcePorts {
        SourcePorts::new(
            (0..n)
                .map(|_| {
                    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let port = s.local_addr().unwrap().port();
                    (Arc::new(UnderlaySocket::new(s)), port)
                })
                .collect(),
        )
    }

    fn udp4(src_port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 244, 1, 2]);
        p[16..20].copy_from_slice(&[10, 244, 2, 2]);
        p[20..22].copy_from_slice(&src_port.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p
    }

    /// One flow always takes one socket; many flows use most of them; the
    /// sockets really are bound to the ports reported.
    #[test]
    fn flows_keep_one_port_and_spread_over_all() {
        let s = sources(16);
        for i in 0..16 {
            let to = "127.0.0.1".parse().unwrap();
            assert_eq!(s.socket(i, to).local_addr().unwrap().port(), s.port(i));
        }
        assert_eq!(s.for_packet(&udp4(40000)), s.for_packet(&udp4(40000)));
        let used: std::collections::HashSet<usize> =
            (40000..40200).map(|p| s.for_packet(&udp4(p))).collect();
        assert_eq!(used.len(), 16, "200 flows over 16 sockets");
        assert!(used.iter().all(|&i| i < 16));
    }

    /// On a dual-stack underlay each port has a socket per family, and a
    /// datagram leaves from the one of its peer's family.
    #[test]
    fn a_dual_stack_node_sends_from_the_peers_family() {
        let s = SourcePorts::dual(
            (0..4)
                .map(|_| {
                    let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let port = v4.local_addr().unwrap().port();
                    let v6 = std::net::UdpSocket::bind(("::1", port))
                        .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
                        .unwrap();
                    let both = vec![
                        Arc::new(UnderlaySocket::new(v4)),
                        Arc::new(UnderlaySocket::new(v6)),
                    ];
                    (both, port)
                })
                .collect(),
        );
        for i in 0..4 {
            let v4 = s
                .socket(i, "10.0.0.1".parse().unwrap())
                .local_addr()
                .unwrap();
            let v6 = s
                .socket(i, "fd00::1".parse().unwrap())
                .local_addr()
                .unwrap();
            assert!(v4.is_ipv4() && v6.is_ipv6(), "{v4} {v6}");
            assert_eq!(v4.port(), s.port(i));
        }
    }

    /// With one socket, every flow takes it (no index out of range).
    #[test]
    fn a_single_port_carries_everything() {
        let s = sources(1);
        for p in 0..100 {
            assert_eq!(s.for_packet(&udp4(p)), 0);
        }
        assert_eq!(s.for_hash(u32::MAX), 0);
    }
}
