//! The virtio-net header codec (encap::virtio) against a real TUN device
//! with IFF_VNET_HDR and offloads on, in a private network namespace: what
//! the kernel writes we parse, and what we write the kernel accepts.
//!
//! Needs root. Fails when it cannot run, unless WEFT_SKIP_NETNS=1 is set.

use encap::virtio::{GsoType, VirtioNetHdr, HEADER_LEN};
use encap::IpPacket;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

#[test]
fn kernel_and_weft_agree_on_the_virtio_header() {
    let ran = std::thread::spawn(|| {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            if std::env::var("WEFT_SKIP_NETNS").as_deref() == Ok("1") {
                return false;
            }
            panic!("cannot create a network namespace ({e}); run as root, or set WEFT_SKIP_NETNS=1 to skip");
        }
        let dev = tun_rs::DeviceBuilder::new()
            .name("wtun0")
            .ipv4(Ipv4Addr::new(10, 244, 0, 1), 24, None)
            .mtu(1450)
            .offload(true)
            .build_sync()
            .expect("TUN device with offloads");
        assert!(dev.tcp_gso(), "TSO offload accepted by the kernel");

        // Kernel → weft: a datagram to a pod address routed into the TUN.
        let sock = UdpSocket::bind("10.244.0.1:0").unwrap();
        sock.send_to(b"to the overlay", "10.244.0.77:9999").unwrap();
        let mut buf = vec![0u8; 65_536];
        let n = loop {
            let n = dev.recv(&mut buf).unwrap();
            let hdr = VirtioNetHdr::parse(&buf[..n]).expect("kernel's virtio header parses");
            assert_eq!(hdr.gso_type, GsoType::None);
            let ip = IpPacket::new_checked(&buf[HEADER_LEN..n]).expect("IP after the header");
            // Skip IPv6 router solicitations and the like.
            if ip.dst() == std::net::IpAddr::from([10, 244, 0, 77]) {
                break n;
            }
        };
        let ip = IpPacket::new_checked(&buf[HEADER_LEN..n]).unwrap();
        assert_eq!(ip.protocol(), 17);
        assert!(ip.payload().ends_with(b"to the overlay"));
        let local_port = sock.local_addr().unwrap().port();

        // weft → kernel: a reply from the pod, with a plain virtio header.
        let mut reply = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 244, 0, 77], [10, 244, 0, 1], 64)
            .udp(9999, local_port)
            .write(&mut reply, b"from the overlay")
            .unwrap();
        let mut frame = vec![0u8; HEADER_LEN];
        VirtioNetHdr::NONE.write(&mut frame).unwrap();
        frame.extend_from_slice(&reply);
        dev.send(&frame).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = [0u8; 64];
        let (len, from) = sock.recv_from(&mut got).expect("the kernel delivered our packet");
        assert_eq!(&got[..len], b"from the overlay");
        assert_eq!(from, SocketAddr::from(([10, 244, 0, 77], 9999)));
        true
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
    if !ran {
        eprintln!("skipped: WEFT_SKIP_NETNS=1");
    }
}
