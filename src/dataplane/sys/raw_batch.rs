//! Many packets per syscall on IP-in-IP's raw sockets: one `sendmmsg` for
//! the segments of a TCP super-packet, one `recvmmsg` for whatever is
//! queued (raw sockets have no segmentation or receive offload, so
//! batching syscalls is what is left). The receive side also reads the
//! pods' packet sockets in veth attachment.

use super::udp_gso::Tos;
use nix::libc;
use nix::sys::socket::{sendmmsg, sendmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Most packets per call (the split buffer's capacity).
pub const MAX_BATCH: usize = 64;

/// Reusable `sendmmsg` headers for one thread.
pub struct Batch {
    headers: MultiHeaders<SockaddrStorage>,
    /// Each message's destination (reused: no allocation, and only as
    /// many 128-byte addresses written as there are messages).
    addrs: Vec<Option<SockaddrStorage>>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            headers: MultiHeaders::preallocate(MAX_BATCH, None),
            addrs: Vec::with_capacity(MAX_BATCH),
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
        self.addrs.clear();
        self.addrs.resize(n, Some(SockaddrStorage::from(to)));
        self.send_all(sock, &slices[..n], cmsg.as_slice())
    }
}

impl Batch {
    /// Sends message k (`slices[k]`) to `self.addrs[k]`, every one with
    /// the control messages `cmsg`, retrying what a call did not take;
    /// stops at an error. Returns how many were sent.
    fn send_all(
        &mut self,
        sock: &impl AsRawFd,
        slices: &[[IoSlice<'_>; 1]],
        cmsg: &[nix::sys::socket::ControlMessage<'_>],
    ) -> usize {
        let n = slices.len().min(self.addrs.len());
        let mut sent = 0;
        while sent < n {
            match sendmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                &slices[sent..n],
                &self.addrs[sent..n],
                cmsg,
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

    /// Sends one `packet` to each of `to` (at most [`MAX_BATCH`], one
    /// family) on `sock`, all with outer TOS `tos`, in one `sendmmsg`:
    /// multicast's copies. Returns how many the kernel took.
    pub fn send_copies(
        &mut self,
        sock: &impl AsRawFd,
        packet: &[u8],
        to: &[SocketAddr],
        tos: u8,
    ) -> usize {
        let n = to.len().min(MAX_BATCH);
        let Some(&first) = to.first() else {
            return 0;
        };
        let tos = Tos::new(tos, first);
        let cmsg = tos.cmsg();
        let slices: [[IoSlice<'_>; 1]; MAX_BATCH] = std::array::from_fn(|_| [IoSlice::new(packet)]);
        self.addrs.clear();
        self.addrs
            .extend(to[..n].iter().map(|a| Some(SockaddrStorage::from(*a))));
        self.send_all(sock, &slices[..n], cmsg.as_slice())
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

/// Reusable `recvmmsg` storage for one thread: each packet's sender address
/// and control message space.
///
/// `recvmmsg` by hand: nix's does not restore each header's address and
/// control lengths between calls, so a header that once received a shorter
/// address (a packet socket's `sockaddr_ll`, an IPv4 sender) or no control
/// message cuts the next IPv6 sender short and loses its traffic class.
/// Here every call sets them afresh.
pub struct RecvBatch {
    names: Box<[libc::sockaddr_storage; MAX_BATCH]>,
    /// Room for an IPv6 traffic class per packet (IPV6_RECVTCLASS, set on
    /// IPv6 raw sockets, whose packets come without their outer header).
    controls: Box<[[u64; CONTROL_WORDS]; MAX_BATCH]>,
}

/// Control space per packet, in 8-byte words: one `int` message
/// (CMSG_SPACE(4) is 24 bytes on 64-bit Linux) with room to spare.
const CONTROL_WORDS: usize = 8;

impl Default for RecvBatch {
    #[allow(unsafe_code)]
    fn default() -> Self {
        RecvBatch {
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a
            // valid (unspecified) address.
            names: Box::new(unsafe { std::mem::zeroed() }),
            controls: Box::new([[0; CONTROL_WORDS]; MAX_BATCH]),
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
    /// Each packet's interface, on a packet socket (`sockaddr_ll`); 0
    /// otherwise.
    pub ifindex: [u32; MAX_BATCH],
}

/// The IP address in a socket address the kernel filled (`len` bytes).
#[allow(unsafe_code)]
fn sender(name: &libc::sockaddr_storage, len: usize) -> Option<std::net::IpAddr> {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6,
            // and the kernel wrote all of it.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(std::net::IpAddr::from(a.sin6_addr.s6_addr))
        }
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: as above, for a sockaddr_in.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::IpAddr::from(a.sin_addr.s_addr.to_ne_bytes()))
        }
        _ => None,
    }
}

/// The interface in a packet socket's address the kernel filled.
#[allow(unsafe_code)]
fn interface(name: &libc::sockaddr_storage, len: usize) -> Option<u32> {
    if libc::c_int::from(name.ss_family) != libc::AF_PACKET
        || len < std::mem::offset_of!(libc::sockaddr_ll, sll_ifindex) + 4
    {
        return None;
    }
    // SAFETY: the family says the storage holds a sockaddr_ll, and the
    // kernel wrote at least up to its interface index.
    let a = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_ll>() };
    u32::try_from(a.sll_ifindex).ok()
}

/// The IPv6 traffic class among the control messages of `hdr`, if any.
#[allow(unsafe_code)]
fn traffic_class(hdr: &libc::msghdr) -> Option<u8> {
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // within `msg_controllen` bytes; each message's data is read only when
    // its level, type and length say it holds an int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6
                && (*c).cmsg_type == libc::IPV6_TCLASS
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return Some(v as u8);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

impl RecvBatch {
    /// Receives, without waiting, up to [`MAX_BATCH`] packets from `sock`
    /// (as many as `buf` has slots for) into `buf`, packet k at
    /// `buf[k * slot + skip..(k + 1) * slot]`.
    #[allow(unsafe_code)]
    pub fn recv(
        &mut self,
        sock: &impl std::os::fd::AsFd,
        buf: &mut [u8],
        slot: usize,
        skip: usize,
    ) -> std::io::Result<ReceivedPackets> {
        let mut got = ReceivedPackets {
            count: 0,
            lens: [0; MAX_BATCH],
            from: [None; MAX_BATCH],
            tclass: [0; MAX_BATCH],
            ifindex: [0; MAX_BATCH],
        };
        // As many packets as `buf` has slots for, at most MAX_BATCH.
        let slots = (buf.len() / slot.max(1)).min(MAX_BATCH);
        if slots == 0 || skip >= slot {
            return Ok(got);
        }
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is valid
        // (null pointers, zero lengths) and every field used is set below.
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let base = buf.as_mut_ptr();
        for k in 0..slots {
            // SAFETY: k * slot + skip < slots * slot <= buf.len().
            iovs[k].iov_base = unsafe { base.add(k * slot + skip) }.cast();
            iovs[k].iov_len = slot - skip;
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[k];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[k].as_mut_ptr().cast();
            h.msg_controllen = CONTROL_WORDS * 8;
        }
        // SAFETY: `hdrs[..slots]` point at `slots` disjoint slots of `buf`
        // and at this batch's own name and control storage, all alive and
        // exclusively borrowed for the call; the kernel writes within the
        // lengths given.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_fd().as_raw_fd(),
                hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(got),
                _ => Err(e),
            };
        }
        let n = (n as usize).min(slots);
        for (k, m) in hdrs[..n].iter().enumerate() {
            let h = &m.msg_hdr;
            got.lens[k] = if h.msg_flags & libc::MSG_TRUNC != 0 {
                usize::MAX
            } else {
                m.msg_len as usize
            };
            got.from[k] = sender(&self.names[k], h.msg_namelen as usize);
            got.ifindex[k] = interface(&self.names[k], h.msg_namelen as usize).unwrap_or(0);
            got.tclass[k] = traffic_class(h).unwrap_or(0);
        }
        got.count = n;
        Ok(got)
    }
}

/// The count of packets `sock` dropped for want of buffer space since it
/// was made (`SO_MEMINFO`'s drops), or None if the kernel does not say.
///
/// By hand because neither nix nor socket2 has `SO_MEMINFO`; asked only
/// when a batch came back full, instead of an `SO_RXQ_OVFL` control
/// message on every packet.
#[allow(unsafe_code)]
pub fn socket_drops(sock: &impl AsRawFd) -> Option<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// One batch reads an IPv4 socket, then an IPv6 one: each sender whole,
    /// and the IPv6 traffic class read, whatever the call before received
    /// (nix's `recvmmsg` left the shorter IPv4 address length in place and
    /// cut the IPv6 sender to `fd00:99::`).
    #[test]
    fn each_call_reads_whole_senders_and_traffic_classes() {
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let Ok(v6) = UdpSocket::bind("[::1]:0") else {
            panic!("no IPv6 loopback: the test needs one");
        };
        nix::sys::socket::setsockopt(&v6, nix::sys::socket::sockopt::Ipv6RecvTClass, &true)
            .unwrap();
        let tx4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx6 = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        tx6.bind(&"[::1]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        tx6.set_tclass_v6(0x2e << 2 | 1).unwrap();
        let mut batch = RecvBatch::default();
        let mut buf = vec![0u8; 4 * 256];
        for round in 0..2 {
            tx4.send_to(b"four", v4.local_addr().unwrap()).unwrap();
            let got = loop {
                let g = batch.recv(&v4, &mut buf, 256, 16).unwrap();
                if g.count > 0 {
                    break g;
                }
            };
            assert_eq!(
                got.from[0],
                Some("127.0.0.1".parse().unwrap()),
                "round {round}"
            );
            assert_eq!((got.lens[0], &buf[16..20]), (4, &b"four"[..]));
            tx6.send_to(b"six", &v6.local_addr().unwrap().into())
                .unwrap();
            let got = loop {
                let g = batch.recv(&v6, &mut buf, 256, 16).unwrap();
                if g.count > 0 {
                    break g;
                }
            };
            assert_eq!(got.from[0], Some("::1".parse().unwrap()), "round {round}");
            assert_eq!(got.tclass[0], 0x2e << 2 | 1, "round {round}");
        }
        // Nothing queued: no packets, no error.
        assert_eq!(batch.recv(&v6, &mut buf, 256, 16).unwrap().count, 0);
    }
}
