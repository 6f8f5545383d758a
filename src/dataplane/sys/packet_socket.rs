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

/// A raw packet socket for every protocol, bound to nothing yet, with
/// virtio-net headers, blind to the frames it sends itself (what weftd
/// writes to pods must not come back to it), and a receive buffer of
/// `rcvbuf` bytes (the privileged FORCE option, so rmem_max does not cap it).
#[allow(unsafe_code)]
fn vnet_socket(protocol: u16, rcvbuf: libc::c_int) -> io::Result<OwnedFd> {
    let all = protocol.to_be();
    // SAFETY: plain socket(2); the result is checked before use and owned
    // by the OwnedFd from then on.
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
    set_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    if rcvbuf > 0 {
        let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf)
            .or_else(|_| set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf));
    }
    Ok(fd)
}

/// Binds packet socket `fd` to interface `ifindex` for `protocol`.
#[allow(unsafe_code)]
fn bind(fd: &OwnedFd, protocol: u16, ifindex: u32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are
    // set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind reads `size_of::<sockaddr_ll>()` bytes from `sll`.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl PacketSocket {
    /// Opens a socket on interface `ifindex` that sees every frame the
    /// interface receives (not the ones sent through it).
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        // A burst from a pod (or towards it) must not overflow the socket.
        let fd = vnet_socket(libc::ETH_P_ALL as u16, 8 << 20)?;
        let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        bind(&fd, libc::ETH_P_ALL as u16, ifindex)?;
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

/// A packet socket for pods' multicast, which the kernel does not route:
/// either bound to one interface (a pod's veth, the kernel path's vxlan
/// device) and seeing only the frames it receives to group MACs (a kernel
/// filter keeps the rest out, with no copy and no wake-up), or receiving
/// nothing and writing frames to any interface (how weftd hands pods their
/// copies). A receiving socket taps its interface alone: a socket for
/// every interface would put each packet of the node, the data path's
/// included, through the filter (measured: 64-byte packets 5-8 % slower).
/// Read in batches with [`super::raw_batch::RecvBatch`]. Virtio-net
/// headers as on [`PacketSocket`], so a pod's partial checksum arrives
/// marked.
#[derive(Debug)]
pub struct GroupSocket {
    fd: OwnedFd,
}

/// The classic BPF program [`GroupSocket`] attaches: accept IPv4 and IPv6
/// frames whose destination MAC has the group bit set, drop the rest in
/// the kernel (no copy, no wake-up). Offsets count from the MAC header.
fn multicast_filter() -> [libc::sock_filter; 7] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let (ld_b, ld_h, jset, jeq, ret) = (
        libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
        libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
        libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    [
        op(ld_b, 0, 0, 0),       // destination MAC, first byte
        op(jset, 0, 4, 1),       // group bit, or drop
        op(ld_h, 0, 0, 12),      // EtherType
        op(jeq, 1, 0, 0x0800),   // IPv4: accept
        op(jeq, 0, 1, 0x86dd),   // IPv6: accept, else drop
        op(ret, 0, 0, 0x4_0000), // accept (whole frame)
        op(ret, 0, 0, 0),        // drop
    ]
}

impl GroupSocket {
    /// A socket that sees the frames to group MACs interface `ifindex`
    /// receives (needs CAP_NET_RAW in the node's namespace).
    #[allow(unsafe_code)]
    pub fn on(ifindex: u32) -> io::Result<GroupSocket> {
        let fd = vnet_socket(libc::ETH_P_ALL as u16, 1 << 20)?;
        let filter = multicast_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: setsockopt reads the program header, which points at
        // `filter`, alive for the call (the kernel copies it).
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        bind(&fd, libc::ETH_P_ALL as u16, ifindex)?;
        Ok(GroupSocket { fd })
    }

    /// A socket that receives nothing (protocol 0: the kernel delivers it
    /// no frame) and sends to any interface.
    pub fn sender() -> io::Result<GroupSocket> {
        Ok(GroupSocket {
            fd: vnet_socket(0, 0)?,
        })
    }

    /// Writes one frame (virtio-net header first) out of interface
    /// `ifindex`.
    #[allow(unsafe_code)]
    pub fn send_to(&self, frame: &[u8], ifindex: u32) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter
        // are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        // SAFETY: sendto reads `frame.len()` bytes from `frame` and the
        // whole `sll`.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl AsFd for GroupSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl GroupSocket {
    /// Frames the kernel dropped since the last call because the socket's
    /// buffer was full (PACKET_STATISTICS; reading resets it).
    #[allow(unsafe_code)]
    pub fn drops(&self) -> io::Result<u32> {
        // SAFETY: an all-zero tpacket_stats is valid; getsockopt fills at
        // most `len` bytes of it.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok(st.tp_drops)
    }
}
