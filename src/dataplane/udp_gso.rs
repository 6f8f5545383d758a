//! UDP segmentation offload on send (one `sendmsg` carries many datagrams
//! of one size, the kernel cuts them) and its receive twin, UDP GRO.
//!
//! quinn-udp does these socket tricks too, but it keeps its own transmit
//! types and disables GSO on a socket for good after one failure; weft's
//! sender already lays datagrams out back to back, so a thin wrapper over
//! nix's `sendmsg`/`recvmsg` is all that is needed. A kernel without GSO
//! gets one `send_to` per datagram instead.

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrStorage,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

static GSO_BROKEN: AtomicBool = AtomicBool::new(false);

/// Sends `data` as datagrams of `segment` bytes (the last may be shorter).
pub fn send(sock: &UdpSocket, data: &[u8], segment: usize, to: SocketAddr) -> std::io::Result<()> {
    if data.len() <= segment {
        return sock.send_to(data, to).map(|_| ());
    }
    let addr = SockaddrStorage::from(to);
    if let Some(sent) = gso_send(sock, &[IoSlice::new(data)], segment, &addr) {
        return sent;
    }
    for d in data.chunks(segment) {
        sock.send_to(d, to)?;
    }
    Ok(())
}

/// Sends datagrams gathered from `pieces`: each datagram is `per_datagram`
/// consecutive slices (headers, then the payload left in place where it
/// was read), every datagram but the last `segment` bytes long. One GSO
/// `sendmsg` for all of them: the kernel's copy from the slices is the only
/// one the payload sees.
pub fn send_vectored(
    sock: &UdpSocket,
    pieces: &[IoSlice<'_>],
    per_datagram: usize,
    segment: usize,
    to: SocketAddr,
) -> std::io::Result<()> {
    let addr = SockaddrStorage::from(to);
    if pieces.len() > per_datagram {
        if let Some(sent) = gso_send(sock, pieces, segment, &addr) {
            return sent;
        }
    }
    for d in pieces.chunks(per_datagram.max(1)) {
        sendmsg(sock.as_raw_fd(), d, &[], MsgFlags::empty(), Some(&addr))?;
    }
    Ok(())
}

/// One GSO `sendmsg` of `iov` cut into datagrams of `segment` bytes; None
/// when this kernel cannot (remembered: later sends go one by one).
fn gso_send(
    sock: &UdpSocket,
    iov: &[IoSlice<'_>],
    segment: usize,
    addr: &SockaddrStorage,
) -> Option<std::io::Result<()>> {
    if GSO_BROKEN.load(Ordering::Relaxed) {
        return None;
    }
    let size = segment as u16;
    match sendmsg(
        sock.as_raw_fd(),
        iov,
        &[ControlMessage::UdpGsoSegments(&size)],
        MsgFlags::empty(),
        Some(addr),
    ) {
        Ok(_) => Some(Ok(())),
        Err(nix::errno::Errno::EIO | nix::errno::Errno::EOPNOTSUPP) => {
            GSO_BROKEN.store(true, Ordering::Relaxed);
            None
        }
        Err(e) => Some(Err(e.into())),
    }
}

/// Turns UDP GRO on for `sock` (false if the kernel refuses).
pub fn enable_gro(sock: &UdpSocket) -> bool {
    setsockopt(sock, sockopt::UdpGroSegment, &true).is_ok()
}

/// Receives into `buf` without waiting (`WouldBlock` when nothing is
/// queued): bytes, sender, and the datagram size when the kernel coalesced
/// several (GRO), else the byte count.
pub fn recv(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, usize)> {
    let mut cmsg = nix::cmsg_space!(i32);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let n = msg.bytes;
    let mut segment = n;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(size) = c {
                segment = size as usize;
            }
        }
    }
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                })
        })
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    Ok((n, from, segment.max(1)))
}
