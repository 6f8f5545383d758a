//! Single VXLAN datagrams gathered over one turn at the pods' side (a TUN
//! queue or a worker's ports) and sent together at its end: each run of
//! equal-size datagrams to one peer from one source port with one outer
//! TOS — a burst of small UDP packets, TCP ACKs, pings — leaves in one UDP
//! GSO `sendmsg` instead of one syscall each, and the receiving node's UDP
//! GRO takes it in one read.
//!
//! Datagrams are copied into an arena (they are at most an MTU, and the
//! read buffer is needed for the next packet); order is kept.

use super::counters::{DropReason, WorkerCounters};
use super::source_ports::SourcePorts;
use super::sys::udp_gso;
use std::net::SocketAddr;

/// Most datagrams gathered before they are sent (the kernel's UDP GSO
/// limit on segments per send).
const MAX_ITEMS: usize = 64;
/// Largest UDP payload one send may carry.
const MAX_SEND: usize = 65_507;

/// Where a datagram goes and how: what its outer headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// The peer's address and VXLAN port.
    pub to: SocketAddr,
    /// The source socket ([`SourcePorts`] index), hence the source port.
    pub via: usize,
    /// Outer TOS / traffic class.
    pub tos: u8,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    at: usize,
    len: usize,
    inner_len: usize,
    outer: Outer,
}

/// Datagrams waiting to be sent, in arrival order.
pub struct PendingSends {
    arena: Vec<u8>,
    used: usize,
    items: Vec<Item>,
}

impl PendingSends {
    /// Room for `MAX_ITEMS` datagrams of up to `max_datagram` bytes.
    pub fn new(max_datagram: usize) -> PendingSends {
        PendingSends {
            arena: vec![0u8; MAX_ITEMS * max_datagram.max(1)],
            used: 0,
            items: Vec::with_capacity(MAX_ITEMS),
        }
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds `datagram` (carrying an inner packet of `inner_len` bytes) to
    /// go as `outer` says, sending what waits first when there is no room.
    pub fn push(
        &mut self,
        sources: &SourcePorts,
        counters: &WorkerCounters,
        datagram: &[u8],
        inner_len: usize,
        outer: Outer,
    ) {
        if datagram.len() > self.arena.len() {
            return counters.dropped(DropReason::BadInner);
        }
        if self.items.len() == MAX_ITEMS || self.used + datagram.len() > self.arena.len() {
            self.flush(sources, counters);
        }
        self.arena[self.used..self.used + datagram.len()].copy_from_slice(datagram);
        self.items.push(Item {
            at: self.used,
            len: datagram.len(),
            inner_len,
            outer,
        });
        self.used += datagram.len();
    }

    /// Sends everything that waits: a run of datagrams to one address from
    /// one source socket with one TOS, all of one size but the last, goes
    /// in one GSO send.
    pub fn flush(&mut self, sources: &SourcePorts, counters: &WorkerCounters) {
        let mut i = 0;
        while i < self.items.len() {
            let first = self.items[i];
            let most = (MAX_SEND / first.len).max(1);
            let mut j = i + 1;
            while j < self.items.len() && j - i < most {
                let next = self.items[j];
                if next.outer != first.outer || next.len > first.len {
                    break;
                }
                j += 1;
                if next.len < first.len {
                    break; // a shorter one can only close a GSO run
                }
            }
            let last = self.items[j - 1];
            let bytes = &self.arena[first.at..last.at + last.len];
            let Outer { to, via, tos } = first.outer;
            if udp_gso::send(sources.socket(via, to.ip()), bytes, first.len, to, tos).is_ok() {
                let inner: usize = self.items[i..j].iter().map(|it| it.inner_len).sum();
                counters.sent((j - i) as u64, inner as u64);
            } else {
                // A run the kernel refuses whole (a datagram over the path
                // MTU, which only a single send may fragment): one by one.
                for it in &self.items[i..j] {
                    let one = &self.arena[it.at..it.at + it.len];
                    match udp_gso::send(sources.socket(via, to.ip()), one, it.len, to, tos) {
                        Ok(_) => {
                            counters.sent(1, it.inner_len as u64);
                        }
                        Err(_) => counters.dropped(DropReason::IoError),
                    }
                }
            }
            i = j;
        }
        self.items.clear();
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::sys::udp_gso::UnderlaySocket;
    use std::sync::Arc;
    use std::time::Duration;

    /// Two source sockets and a receiver.
    fn pair() -> (SourcePorts, std::net::UdpSocket) {
        let sources = SourcePorts::new(
            (0..2)
                .map(|_| {
                    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let port = s.local_addr().unwrap().port();
                    (Arc::new(UnderlaySocket::new(s)), port)
                })
                .collect(),
        );
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (sources, rx)
    }

    /// Datagrams arrive whole, in order, with their own sizes, outer TOS
    /// and source port, whatever runs they were grouped in; the counters
    /// count each one.
    #[test]
    fn runs_of_sizes_and_addresses_arrive_whole_and_in_order() {
        let (tx, rx) = pair();
        let (_, other) = pair();
        assert!(udp_gso::enable_recv_tos(&rx));
        let counters = WorkerCounters::default();
        let mut p = PendingSends::new(1500);
        let sizes = [100usize, 100, 100, 60, 100, 1500, 1500, 7, 100, 100, 100];
        // ECT(0), Not-ECT, CE and a DSCP with ECT(1): a change of TOS
        // splits a run, as a change of size, address or source port does.
        let tos = [2u8, 2, 0, 3, 3, 0xb9, 0xb9, 0, 2, 2, 2];
        let via = [0usize, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1];
        let to = rx.local_addr().unwrap();
        for (k, &n) in sizes.iter().enumerate() {
            let d = vec![k as u8; n];
            // One datagram to another address in the middle splits a run.
            if k == 4 {
                let elsewhere = Outer {
                    to: other.local_addr().unwrap(),
                    via: 0,
                    tos: 0,
                };
                p.push(&tx, &counters, &[0xee; 100], 50, elsewhere);
            }
            let outer = Outer {
                to,
                via: via[k],
                tos: tos[k],
            };
            p.push(&tx, &counters, &d, n / 2, outer);
        }
        assert!(!p.is_empty());
        p.flush(&tx, &counters);
        assert!(p.is_empty());
        let mut buf = [0u8; 2048];
        let mut control = udp_gso::RecvControl::default();
        for (k, &n) in sizes.iter().enumerate() {
            let got = udp_gso::recv(&rx, &mut buf, &mut control).unwrap();
            assert_eq!(got.len, n, "datagram {k}");
            assert_eq!(got.tos, tos[k], "datagram {k}");
            assert_eq!(got.from.port(), tx.port(via[k]), "datagram {k}");
            assert!(buf[..got.len].iter().all(|&b| b == k as u8), "datagram {k}");
        }
        assert_eq!(other.recv(&mut buf).unwrap(), 100);
        let sent = counters
            .tx_packets
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(sent, sizes.len() as u64 + 1);
        let bytes = counters.tx_bytes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            bytes,
            sizes.iter().map(|n| n / 2).sum::<usize>() as u64 + 50
        );
    }

    /// More datagrams than one send may carry are sent anyway, in order.
    #[test]
    fn more_than_a_batch_flushes_on_the_way() {
        let (tx, rx) = pair();
        let counters = WorkerCounters::default();
        let mut p = PendingSends::new(200);
        let to = rx.local_addr().unwrap();
        for k in 0..100u8 {
            p.push(&tx, &counters, &[k; 200], 150, Outer { to, via: 1, tos: 0 });
        }
        p.flush(&tx, &counters);
        let mut buf = [0u8; 2048];
        for k in 0..100u8 {
            assert_eq!(rx.recv(&mut buf).unwrap(), 200);
            assert_eq!(buf[0], k);
        }
    }
}
