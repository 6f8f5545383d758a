//! Many packets to one address in one `sendmmsg` call: how IP-in-IP sends
//! the segments of a TCP super-packet over its raw socket (raw sockets have
//! no segmentation offload, so batching syscalls is what is left).

use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Most packets per call (the split buffer's capacity).
pub const MAX_BATCH: usize = 64;

/// Reusable `sendmmsg` headers for one thread.
pub struct Batch {
    headers: MultiHeaders<SockaddrStorage>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            headers: MultiHeaders::preallocate(MAX_BATCH, None),
        }
    }
}

impl Batch {
    /// Sends `packets` (at most [`MAX_BATCH`]) to `to` on `sock`; returns
    /// how many the kernel took (a short count or an error stops early).
    pub fn send(&mut self, sock: &impl AsRawFd, packets: &[&[u8]], to: SocketAddr) -> usize {
        let n = packets.len().min(MAX_BATCH);
        let slices: [[IoSlice<'_>; 1]; MAX_BATCH] =
            std::array::from_fn(|i| [IoSlice::new(packets.get(i).copied().unwrap_or(&[]))]);
        let addrs = [Some(SockaddrStorage::from(to)); MAX_BATCH];
        let mut sent = 0;
        while sent < n {
            match sendmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                &slices[sent..n],
                &addrs[sent..n],
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let took = results.count();
                    if took == 0 {
                        break;
                    }
                    sent += took;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        sent
    }
}
