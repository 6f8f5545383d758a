//! Many packets per syscall on IP-in-IP's raw sockets: one `sendmmsg` for
//! the segments of a TCP super-packet, one `recvmmsg` for whatever is
//! queued (raw sockets have no segmentation or receive offload, so
//! batching syscalls is what is left). The receive side also reads the
//! pods' packet sockets in veth attachment.

use super::udp_gso::Tos;
use nix::sys::socket::{recvmmsg, sendmmsg, sendmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::{IoSlice, IoSliceMut};
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
    /// Sends `packets` (at most [`MAX_BATCH`]) to `to` on `sock`, all with
    /// outer TOS `tos`; returns how many the kernel took (a short count or
    /// an error stops early).
    pub fn send(
        &mut self,
        sock: &impl AsRawFd,
        packets: &[&[u8]],
        to: SocketAddr,
        tos: u8,
    ) -> usize {
        let n = packets.len().min(MAX_BATCH);
        let tos = Tos::new(tos, to);
        let cmsg = tos.cmsg();
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
                cmsg.as_slice(),
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

/// Sends one packet to `to` on `sock` with outer TOS `tos` (the kernel
/// writes the outer header).
pub fn send_one(
    sock: &impl AsRawFd,
    packet: &[u8],
    to: SocketAddr,
    tos: u8,
) -> std::io::Result<()> {
    let tos = Tos::new(tos, to);
    let cmsg = tos.cmsg();
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(packet)],
        cmsg.as_slice(),
        MsgFlags::empty(),
        Some(&SockaddrStorage::from(to)),
    )?;
    Ok(())
}

/// Reusable `recvmmsg` headers for one thread.
pub struct RecvBatch {
    headers: MultiHeaders<SockaddrStorage>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            // Room for an IPv6 traffic class per packet (IPV6_RECVTCLASS,
            // set on IPv6 raw sockets, whose packets come without their
            // outer header). Allocated once, here.
            headers: MultiHeaders::preallocate(MAX_BATCH, Some(nix::cmsg_space!(i32))),
        }
    }
}

/// What one [`RecvBatch::recv`] got.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedPackets {
    /// Packets received (0: none was queued).
    pub count: usize,
    /// Each packet's length; `usize::MAX` for one cut short because it did
    /// not fit its slot.
    pub lens: [usize; MAX_BATCH],
    /// Each packet's sender (from the socket address).
    pub from: [Option<std::net::IpAddr>; MAX_BATCH],
    /// Each packet's outer traffic class, where the socket reports it (IPv6
    /// raw sockets with IPV6_RECVTCLASS); 0 otherwise.
    pub tclass: [u8; MAX_BATCH],
}

impl RecvBatch {
    /// Receives, without waiting, up to [`MAX_BATCH`] packets from `sock`
    /// (as many as `buf` has slots for) into `buf`, packet k at
    /// `buf[k * slot + skip..(k + 1) * slot]`.
    pub fn recv(
        &mut self,
        sock: &impl std::os::fd::AsFd,
        buf: &mut [u8],
        slot: usize,
        skip: usize,
    ) -> std::io::Result<ReceivedPackets> {
        // As many packets as `buf` has slots for, at most MAX_BATCH.
        let slots = (buf.len() / slot.max(1)).min(MAX_BATCH);
        let mut chunks = buf.chunks_exact_mut(slot);
        let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] = std::array::from_fn(|_| {
            let chunk = chunks.next().unwrap_or_default();
            let from = skip.min(chunk.len());
            [IoSliceMut::new(&mut chunk[from..])]
        });
        let mut got = ReceivedPackets {
            count: 0,
            lens: [0; MAX_BATCH],
            from: [None; MAX_BATCH],
            tclass: [0; MAX_BATCH],
        };
        let results = match recvmmsg(
            sock.as_fd().as_raw_fd(),
            &mut self.headers,
            iovs[..slots].iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(got),
            Err(e) => return Err(e.into()),
        };
        for (k, msg) in results.enumerate() {
            got.lens[k] = if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                usize::MAX
            } else {
                msg.bytes
            };
            got.from[k] = msg.address.and_then(|a| {
                a.as_sockaddr_in6()
                    .map(|a| std::net::IpAddr::V6(a.ip()))
                    .or_else(|| a.as_sockaddr_in().map(|a| std::net::IpAddr::V4(a.ip())))
            });
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let nix::sys::socket::ControlMessageOwned::Ipv6TClass(tc) = c {
                        got.tclass[k] = tc as u8;
                    }
                }
            }
            got.count = k + 1;
        }
        Ok(got)
    }
}

/// The count of packets `sock` dropped for want of buffer space since it
/// was made (`SO_MEMINFO`'s drops), or None if the kernel does not say.
///
/// By hand because neither nix nor socket2 has `SO_MEMINFO`; and not the
/// `SO_RXQ_OVFL` control message as on the UDP sockets: nix's `recvmmsg`
/// does not restore each header's control length between calls, so after
/// the first call the kernel has no room to put it.
#[allow(unsafe_code)]
pub fn socket_drops(sock: &impl AsRawFd) -> Option<u32> {
    use nix::libc;
    // SK_MEMINFO_VARS is 9 (include/uapi/linux/sock_diag.h); drops last.
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; SK_MEMINFO_DROPS + 1];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info` and sets
    // `len` to what it wrote.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize >= std::mem::size_of_val(&info)).then_some(info[SK_MEMINFO_DROPS])
}
