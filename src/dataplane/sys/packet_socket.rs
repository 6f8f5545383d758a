//! AF_PACKET sockets on pod veths, with virtio-net headers (PACKET_VNET_HDR)
//! so TSO super-frames and partial checksums pass whole in both directions.
//!
//! Written by hand: the AF_PACKET crates on crates.io either lack
//! PACKET_VNET_HDR or are unmaintained, and the part weft needs is four
//! system calls; socket2 has no `sockaddr_ll` constructor.

use nix::libc;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A raw packet socket bound to one interface, all protocols, with a
/// virtio-net header in front of every frame read or written.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[allow(unsafe_code)]
fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live int;
    // the descriptor is owned by the caller for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl PacketSocket {
    /// Opens a socket on interface `ifindex` that sees every frame the
    /// interface receives (not the ones sent through it).
    #[allow(unsafe_code)]
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the result is checked before use and
        // owned by the OwnedFd from then on.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(all),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_int(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        // Frames weftd writes to the pod must not come back to it.
        set_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        // A burst from a pod (or towards it) must not overflow the socket.
        let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20)
            .or_else(|_| set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20));
        let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter
        // are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = all;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind reads `size_of::<sockaddr_ll>()` bytes from `sll`.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd })
    }

    /// Writes one frame (virtio-net header first) to the interface.
    #[allow(unsafe_code)]
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: send reads `frame.len()` bytes from `frame`.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl PacketSocket {
    /// Writes one frame gathered from `pieces` (virtio-net header first).
    pub fn send_vectored(&self, pieces: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
        nix::sys::socket::sendmsg::<()>(
            self.fd.as_raw_fd(),
            pieces,
            &[],
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
