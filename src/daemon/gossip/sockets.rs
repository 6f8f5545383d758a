//! The gossip sockets: one on each address this node's tunnels go over
//! (both families on a dual-stack underlay), and the address translation
//! that lets nodes of different underlay families talk.
//!
//! The agent knows each member by one gossip address, the one the member
//! advertises: its preferred underlay family's. A node without that
//! family sends to the member's address of the other family instead (same
//! port; a dual-stack member listens on both), and whatever a member sends
//! is handed to the agent as coming from its advertised address, whichever
//! family it arrived over.

use fdb::Snapshot;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

/// The gossip sockets, the advertised (preferred family) one first, each
/// with its family (true: IPv6).
pub struct GossipSockets {
    socks: Vec<(UdpSocket, bool)>,
}

impl GossipSockets {
    /// Binds `port` on each of `addrs` (the preferred family first).
    pub fn bind(addrs: &[IpAddr], port: u16) -> Result<GossipSockets, String> {
        let socks = addrs
            .iter()
            .map(|a| {
                let addr = SocketAddr::new(*a, port);
                let s = UdpSocket::bind(addr).map_err(|e| format!("gossip: bind {addr}: {e}"))?;
                super::receive_buffer(&s);
                s.set_nonblocking(true)
                    .map_err(|e| format!("gossip: {addr}: {e}"))?;
                Ok((s, a.is_ipv6()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if socks.is_empty() {
            return Err("gossip: no underlay address".into());
        }
        Ok(GossipSockets { socks })
    }

    /// The advertised gossip address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socks[0].0.local_addr()
    }

    fn of_family(&self, v6: bool) -> Option<&UdpSocket> {
        self.socks
            .iter()
            .find_map(|(s, is_v6)| (*is_v6 == v6).then_some(s))
    }

    /// Sends `datagram` to the member at gossip address `to`, over the
    /// member's other family when this node lacks `to`'s.
    pub fn send_to(&self, datagram: &[u8], to: SocketAddr, snap: &Snapshot) -> std::io::Result<()> {
        let to = match self.of_family(to.is_ipv6()) {
            Some(_) => to,
            None => reachable_address(to, snap).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::AddrNotAvailable,
                    "no underlay family in common with this member",
                )
            })?,
        };
        let sock = self
            .of_family(to.is_ipv6())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrNotAvailable))?;
        sock.send_to(datagram, to).map(|_| ())
    }

    /// Waits up to `timeout` for datagrams, then reads what is queued on
    /// every socket into `burst` (up to its limit). WouldBlock when nothing
    /// came.
    pub fn read(&self, burst: &mut super::Burst, timeout: Duration) -> std::io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds: Vec<PollFd<'_>> = self
            .socks
            .iter()
            .map(|(s, _)| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => return Err(std::io::ErrorKind::WouldBlock.into()),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        burst.clear();
        for (s, _) in &self.socks {
            burst.drain(s);
        }
        if burst.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

/// The member at gossip address `to` at its address of the other family
/// (same port), if fdb knows it there.
fn reachable_address(to: SocketAddr, snap: &Snapshot) -> Option<SocketAddr> {
    let node = snap.node_at(to.ip())?;
    let r = &snap.node(node)?.value;
    let other = if to.is_ipv6() {
        r.underlay_v4.map(IpAddr::V4)
    } else {
        r.underlay_v6.map(IpAddr::V6)
    };
    other.map(|ip| SocketAddr::new(ip, to.port()))
}

/// The address the agent knows the sender of a datagram from `from` by:
/// the sender's advertised (preferred family) address with `from`'s port,
/// when fdb knows the sender and it arrived over the other family.
pub fn advertised_address(from: SocketAddr, snap: &Snapshot) -> SocketAddr {
    snap.node_at(from.ip())
        .and_then(|n| snap.node(n))
        .and_then(|e| e.value.tunnel_address())
        .map_or(from, |ip| SocketAddr::new(ip, from.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdb::{Fdb, Meta, NodeId, NodeRecord, Source};

    /// A member preferring IPv6 with an IPv4 address too: an IPv4-only
    /// node reaches it at its IPv4 address, and what it sends from there is
    /// credited to its advertised IPv6 one; an unknown sender is left as is.
    #[test]
    fn members_are_reached_and_known_across_families() {
        let fdb = Fdb::new(NodeId::new("n1"), NodeRecord::default());
        let rec = NodeRecord {
            underlay_v4: Some("10.99.0.2".parse().unwrap()),
            underlay_v6: Some("fd00:99::2".parse().unwrap()),
            tunnel_v6: true,
            ..NodeRecord::default()
        };
        fdb.update(|t| t.upsert_node(NodeId::new("n2"), rec, Meta::new(Source::Static, 1)))
            .unwrap();
        let snap = fdb.snapshot();
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            reachable_address(a("[fd00:99::2]:7946"), &snap),
            Some(a("10.99.0.2:7946"))
        );
        assert_eq!(reachable_address(a("[fd00:99::9]:7946"), &snap), None);
        assert_eq!(
            advertised_address(a("10.99.0.2:7946"), &snap),
            a("[fd00:99::2]:7946")
        );
        assert_eq!(
            advertised_address(a("10.99.0.9:7946"), &snap),
            a("10.99.0.9:7946")
        );
        // Over loopback: an IPv4-only node's sockets send to the member's
        // IPv4 address when told its IPv6 one.
        let socks = GossipSockets::bind(&["127.0.0.1".parse().unwrap()], 0).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fdb = Fdb::new(NodeId::new("n1"), NodeRecord::default());
        let rec = NodeRecord {
            underlay_v4: Some("127.0.0.1".parse().unwrap()),
            underlay_v6: Some("fd00:99::3".parse().unwrap()),
            tunnel_v6: true,
            ..NodeRecord::default()
        };
        fdb.update(|t| t.upsert_node(NodeId::new("n3"), rec, Meta::new(Source::Static, 1)))
            .unwrap();
        let port = peer.local_addr().unwrap().port();
        let to = SocketAddr::new("fd00:99::3".parse().unwrap(), port);
        socks.send_to(b"hello", to, &fdb.snapshot()).unwrap();
        let mut buf = [0u8; 16];
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }
}
