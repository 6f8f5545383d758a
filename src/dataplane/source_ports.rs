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
use std::sync::Arc;

/// The sockets VXLAN datagrams leave from, one per source port.
#[derive(Debug, Clone)]
pub struct SourcePorts {
    sockets: Arc<[Arc<UnderlaySocket>]>,
    ports: Arc<[u16]>,
}

impl SourcePorts {
    /// Sockets and the ports they are bound to (at least one).
    pub fn new(sockets: Vec<(Arc<UnderlaySocket>, u16)>) -> SourcePorts {
        assert!(!sockets.is_empty(), "at least one source socket");
        let (sockets, ports): (Vec<_>, Vec<_>) = sockets.into_iter().unzip();
        SourcePorts {
            sockets: sockets.into(),
            ports: ports.into(),
        }
    }

    /// Every datagram from one socket (the VXLAN port itself, when the
    /// operator asks for a fixed source port).
    pub fn single(socket: Arc<UnderlaySocket>, port: u16) -> SourcePorts {
        SourcePorts::new(vec![(socket, port)])
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
        let last = (self.sockets.len() - 1).min(usize::from(u16::MAX)) as u16;
        usize::from(encap::flow::source_port(hash, 0, last))
    }

    /// Socket `i` (as [`Self::for_packet`] numbers them).
    #[inline]
    pub fn socket(&self, i: usize) -> &UnderlaySocket {
        &self.sockets[i]
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
            assert_eq!(s.socket(i).local_addr().unwrap().port(), s.port(i));
        }
        assert_eq!(s.for_packet(&udp4(40000)), s.for_packet(&udp4(40000)));
        let used: std::collections::HashSet<usize> =
            (40000..40200).map(|p| s.for_packet(&udp4(p))).collect();
        assert_eq!(used.len(), 16, "200 flows over 16 sockets");
        assert!(used.iter().all(|&i| i < 16));
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
