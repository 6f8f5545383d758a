//! UDP segmentation offload on send (one `sendmsg` carries many datagrams
//! of one size, the kernel cuts them) and its receive twin, UDP GRO.
//!
//! quinn-udp does these socket tricks too, but it keeps its own transmit
//! types and disables GSO on a socket for good after one failure; weft's
//! sender already lays datagrams out back to back, so a thin wrapper over
//! nix's `sendmsg`/`recvmsg` is all that is needed. A kernel without GSO
//! gets one `sendmsg` per datagram instead.
//!
//! The outer TOS / traffic class travels with every send (a control
//! message, RFC 6040: the tunnel copies the inner packet's ECN field, and
//! DSCP, to the outer header), and comes back with every receive
//! (`IP_RECVTOS` / `IPV6_RECVTCLASS`), so that a congestion mark an
//! underlay router set on the outer header reaches the inner packet. GRO
//! only merges datagrams of equal TOS, so one value per receive is exact.

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrStorage,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// A UDP socket of the underlay, with what weft learned about it: whether
/// the kernel takes GSO sends on it. A refusal (`EIO`, `EOPNOTSUPP`: a
/// device or kernel without UDP segmentation) turns GSO off for this socket
/// only; later sends go one datagram per `sendmsg`.
#[derive(Debug)]
pub struct UnderlaySocket {
    socket: UdpSocket,
    gso: AtomicBool,
}

impl UnderlaySocket {
    /// Wraps a bound socket; GSO is tried on its first send of several
    /// datagrams.
    pub fn new(socket: UdpSocket) -> UnderlaySocket {
        UnderlaySocket {
            socket,
            gso: AtomicBool::new(true),
        }
    }

    /// Whether GSO sends still go out in one `sendmsg` on this socket.
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for UnderlaySocket {
    type Target = UdpSocket;
    fn deref(&self) -> &UdpSocket {
        &self.socket
    }
}

/// The outer TOS (IPv4) or traffic class (IPv6) of a send, as a control
/// message; none for 0, the socket's default. (Raw IP-in-IP sends use it
/// too.)
pub(super) struct Tos {
    v4: u8,
    v6: i32,
    ipv6: bool,
}

impl Tos {
    pub(super) fn new(tos: u8, to: SocketAddr) -> Tos {
        Tos {
            v4: tos,
            v6: i32::from(tos),
            ipv6: to.is_ipv6(),
        }
    }

    pub(super) fn cmsg(&self) -> Option<ControlMessage<'_>> {
        match (self.v4, self.ipv6) {
            (0, _) => None,
            (_, false) => Some(ControlMessage::Ipv4Tos(&self.v4)),
            (_, true) => Some(ControlMessage::Ipv6TClass(&self.v6)),
        }
    }
}

/// One `sendmsg` of one datagram gathered from `iov`, with the outer TOS.
fn send_one(
    sock: &UdpSocket,
    iov: &[IoSlice<'_>],
    addr: &SockaddrStorage,
    tos: &Tos,
) -> std::io::Result<()> {
    let cmsg = tos.cmsg();
    let cmsgs = cmsg.as_slice();
    sendmsg(sock.as_raw_fd(), iov, cmsgs, MsgFlags::empty(), Some(addr))?;
    Ok(())
}

/// Sends `data` as datagrams of `segment` bytes (the last may be shorter),
/// with outer TOS `tos`.
pub fn send(
    sock: &UnderlaySocket,
    data: &[u8],
    segment: usize,
    to: SocketAddr,
    tos: u8,
) -> std::io::Result<()> {
    let addr = SockaddrStorage::from(to);
    let tos = Tos::new(tos, to);
    if data.len() > segment {
        if let Some(sent) = gso_send(sock, &[IoSlice::new(data)], segment, &addr, &tos) {
            return sent;
        }
    }
    for d in data.chunks(segment.max(1)) {
        send_one(sock, &[IoSlice::new(d)], &addr, &tos)?;
    }
    Ok(())
}

/// Sends datagrams gathered from `pieces`: each datagram is `per_datagram`
/// consecutive slices (headers, then the payload left in place where it
/// was read), every datagram but the last `segment` bytes long. One GSO
/// `sendmsg` for all of them: the kernel's copy from the slices is the only
/// one the payload sees.
pub fn send_vectored(
    sock: &UnderlaySocket,
    pieces: &[IoSlice<'_>],
    per_datagram: usize,
    segment: usize,
    to: SocketAddr,
    tos: u8,
) -> std::io::Result<()> {
    let addr = SockaddrStorage::from(to);
    let tos = Tos::new(tos, to);
    if pieces.len() > per_datagram {
        if let Some(sent) = gso_send(sock, pieces, segment, &addr, &tos) {
            return sent;
        }
    }
    for d in pieces.chunks(per_datagram.max(1)) {
        send_one(sock, d, &addr, &tos)?;
    }
    Ok(())
}

/// One GSO `sendmsg` of `iov` cut into datagrams of `segment` bytes; None
/// when this socket cannot (remembered: its later sends go one by one).
fn gso_send(
    sock: &UnderlaySocket,
    iov: &[IoSlice<'_>],
    segment: usize,
    addr: &SockaddrStorage,
    tos: &Tos,
) -> Option<std::io::Result<()>> {
    if !sock.gso() {
        return None;
    }
    let size = segment as u16;
    let gso = ControlMessage::UdpGsoSegments(&size);
    let with_tos;
    let cmsgs: &[ControlMessage<'_>] = match tos.cmsg() {
        Some(t) => {
            with_tos = [gso, t];
            &with_tos
        }
        None => std::slice::from_ref(&gso),
    };
    match sendmsg(sock.as_raw_fd(), iov, cmsgs, MsgFlags::empty(), Some(addr)) {
        Ok(_) => Some(Ok(())),
        Err(nix::errno::Errno::EIO | nix::errno::Errno::EOPNOTSUPP) => {
            sock.gso.store(false, Ordering::Relaxed);
            None
        }
        Err(e) => Some(Err(e.into())),
    }
}

/// Turns UDP GRO on for `sock` (false if the kernel refuses).
pub fn enable_gro(sock: &UdpSocket) -> bool {
    setsockopt(sock, sockopt::UdpGroSegment, &true).is_ok()
}

/// Asks for the outer TOS / traffic class with every receive (false if
/// the kernel refuses). An IPv6 socket also gets it for IPv4 senders.
pub fn enable_recv_tos(sock: &UdpSocket) -> bool {
    match sock.local_addr() {
        Ok(SocketAddr::V4(_)) => setsockopt(sock, sockopt::IpRecvTos, &true).is_ok(),
        Ok(SocketAddr::V6(_)) => {
            let _ = setsockopt(sock, sockopt::IpRecvTos, &true);
            setsockopt(sock, sockopt::Ipv6RecvTClass, &true).is_ok()
        }
        Err(_) => false,
    }
}

/// What one receive got.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedDatagrams {
    /// Bytes read.
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// The datagram size when the kernel coalesced several (GRO), else
    /// `len`.
    pub segment: usize,
    /// The outer TOS / traffic class (0 unless [`enable_recv_tos`]).
    pub tos: u8,
    /// The socket's count of datagrams dropped for want of buffer space
    /// so far, when SO_RXQ_OVFL is on (the kernel sends it once it is not
    /// zero).
    pub dropped_so_far: Option<u32>,
}

/// Room for the control messages a receive brings (GRO segment size, TOS
/// or traffic class, overflow count), allocated once per receiving thread
/// and reused: [`recv`] allocates nothing.
pub struct RecvControl(Vec<u8>);

impl Default for RecvControl {
    fn default() -> Self {
        RecvControl(nix::cmsg_space!(i32, i32, i32, u32))
    }
}

/// Receives into `buf` without waiting (`WouldBlock` when nothing is
/// queued), the control messages into `control`.
pub fn recv(
    sock: &UdpSocket,
    buf: &mut [u8],
    control: &mut RecvControl,
) -> std::io::Result<ReceivedDatagrams> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut control.0),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let n = msg.bytes;
    let mut segment = n;
    let mut tos = 0;
    let mut dropped_so_far = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::UdpGroSegments(size) => segment = size as usize,
                ControlMessageOwned::Ipv4Tos(t) => tos = t,
                ControlMessageOwned::Ipv6TClass(t) => tos = t as u8,
                ControlMessageOwned::RxqOvfl(n) => dropped_so_far = Some(n),
                _ => {}
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
    Ok(ReceivedDatagrams {
        len: n,
        from,
        segment: segment.max(1),
        tos,
        dropped_so_far,
    })
}
