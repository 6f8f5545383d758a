//! Opening the underlay's sockets: VXLAN UDP sockets and raw IP-in-IP
//! sockets, with buffers large enough for bursts and the kernel's drop
//! count on every receive.

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// A VXLAN socket bound to `addr:port`, with SO_REUSEPORT (one per
/// worker; the kernel spreads flows over them) and [`big_buffers`].
pub fn vxlan_socket(addr: IpAddr, port: u16) -> Result<UdpSocket, String> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(addr, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| e.to_string())?;
    s.set_reuse_port(true).map_err(|e| e.to_string())?;
    // Large buffers: a burst from the TUN must not overflow the socket.
    big_buffers(&s);
    s.bind(&SocketAddr::new(addr, port).into())
        .map_err(|e| format!("bind VXLAN socket {addr}:{port}: {e}"))?;
    Ok(s.into())
}

/// Up to `count` UDP sockets bound to each address of `addrs` (one per
/// underlay family this node tunnels over) on distinct ports of `ports`
/// (never `skip`, the VXLAN port), for sending only: a port is taken when
/// it can be bound on every address, so a flow keeps its source port in
/// either family. The search starts at the port `seed` picks and goes up
/// (wrapping), passing over ports other programs hold. A seed from the
/// node's name keeps a node's ports across restarts (underlay firewalls
/// and flow logs see the same ones). Each socket drops whatever is sent to
/// it (a filter that accepts nothing), so nothing queues on a socket that
/// is never read. Returns each port with its sockets (in `addrs` order);
/// an error only when not one port could be bound.
pub fn source_sockets(
    addrs: &[IpAddr],
    ports: std::ops::RangeInclusive<u16>,
    count: usize,
    skip: u16,
    seed: u32,
) -> Result<Vec<(Vec<UdpSocket>, u16)>, String> {
    let (min, max) = (*ports.start(), *ports.end());
    let span = u32::from(max - min) + 1;
    let mut out = Vec::with_capacity(count);
    let mut last_error = None;
    for i in 0..span {
        if out.len() == count {
            break;
        }
        let port = min + ((seed.wrapping_add(i)) % span) as u16;
        if port == skip {
            continue;
        }
        match addrs
            .iter()
            .map(|a| source_socket(*a, port))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(s) => out.push((s, port)),
            Err(e) => last_error = Some(e),
        }
    }
    let on = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    if out.is_empty() {
        return Err(format!(
            "overlay.source_ports: no port of {min}-{max} could be bound on {on}: {}",
            last_error.unwrap_or_else(|| "the range holds only the VXLAN port".into())
        ));
    }
    if out.len() < count {
        tracing::warn!(
            bound = out.len(),
            asked = count,
            "fewer VXLAN source ports than overlay.source_port_count: the rest of {min}-{max} is in use on {on}"
        );
    }
    Ok(out)
}

/// One send-only socket of [`source_sockets`].
fn source_socket(addr: IpAddr, port: u16) -> Result<UdpSocket, String> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(addr, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| e.to_string())?;
    // A classic BPF program of one instruction, "return 0": every datagram
    // arriving for this port is dropped before it is queued.
    let accept_nothing = [nix::libc::sock_filter {
        code: (nix::libc::BPF_RET | nix::libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    s.attach_filter(&accept_nothing)
        .map_err(|e| format!("filter on a VXLAN source socket: {e}"))?;
    big_send_buffer(&s);
    s.bind(&SocketAddr::new(addr, port).into())
        .map_err(|e| format!("bind {addr}:{port}: {e}"))?;
    Ok(s.into())
}

/// A raw socket for IP protocol `protocol` (4 or 41: IP-in-IP) bound to
/// the underlay address; the kernel writes the outer header on send.
pub fn raw_socket(underlay: IpAddr, protocol: i32) -> Result<Socket, String> {
    let domain = Domain::for_address(SocketAddr::new(underlay, 0));
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(protocol)))
        .map_err(|e| format!("raw socket for IP protocol {protocol}: {e}"))?;
    s.bind(&SocketAddr::new(underlay, 0).into())
        .map_err(|e| format!("bind raw socket to {underlay}: {e}"))?;
    if underlay.is_ipv6() {
        // The outer header is not delivered: its traffic class (the outer
        // ECN) comes with each packet instead.
        use std::os::fd::AsFd;
        setsockopt(&s.as_fd(), sockopt::Ipv6RecvTClass, &true)
            .map_err(|e| format!("IPV6_RECVTCLASS on the raw socket: {e}"))?;
    }
    big_buffers(&s);
    Ok(s)
}

/// The size asked for every underlay socket buffer.
const BUFFER: usize = 8 << 20;

/// A send buffer of [`BUFFER`] bytes (FORCE where privileged).
fn big_send_buffer(s: &Socket) {
    use std::os::fd::AsFd;
    if setsockopt(&s.as_fd(), sockopt::SndBufForce, &BUFFER).is_err() {
        let _ = s.set_send_buffer_size(BUFFER);
    }
}

/// Socket buffers of 8 MiB each way. weftd is privileged, so the FORCE
/// options lift the limit `net.core.rmem_max` / `wmem_max` puts on the
/// plain ones (about 208 KiB on a default system: a few GSO sends); the
/// kernel's drop count comes with every receive (SO_RXQ_OVFL), counted as
/// `socket_overflow`.
pub fn big_buffers(s: &Socket) {
    use std::os::fd::AsFd;
    if setsockopt(&s.as_fd(), sockopt::RcvBufForce, &BUFFER).is_err() {
        let _ = s.set_recv_buffer_size(BUFFER);
    }
    big_send_buffer(s);
    let got = s.recv_buffer_size().unwrap_or(0);
    if got < BUFFER {
        tracing::warn!(
            bytes = got,
            "underlay socket receive buffer smaller than asked (no CAP_NET_ADMIN?); bursts may overflow it"
        );
    }
    if setsockopt(&s.as_fd(), sockopt::RxqOvfl, &1).is_err() {
        tracing::warn!("no SO_RXQ_OVFL: socket overflows are not counted");
    }
}
