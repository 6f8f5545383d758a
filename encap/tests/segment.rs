//! TCP segmentation and coalescing: split a super-packet, check every
//! segment with an independent parser, merge the segments back.

use encap::segment::{split_tcp, ChecksumFill, Layout, Refusal, TcpCoalescer};
use encap::Error;
use proptest::prelude::*;

mod common;

fn super_packet(v6: bool, payload: &[u8], flags: &[&str]) -> Vec<u8> {
    super_packet_at(v6, 0xffff_f000, payload, flags)
}

fn super_packet_at(v6: bool, seq: u32, payload: &[u8], flags: &[&str]) -> Vec<u8> {
    let b = if v6 {
        etherparse::PacketBuilder::ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
    } else {
        etherparse::PacketBuilder::ipv4([10, 244, 0, 2], [10, 244, 1, 2], 64)
    };
    let mut t = b
        .tcp(40000, 5201, seq, 1024)
        .ack(99)
        .options(&[etherparse::TcpOptionElement::Timestamp(1, 2)])
        .unwrap();
    for f in flags {
        t = match *f {
            "psh" => t.psh(),
            "fin" => t.fin(),
            "cwr" => t.cwr(),
            "syn" => t.syn(),
            _ => unreachable!(),
        };
    }
    let mut out = Vec::new();
    t.write(&mut out, payload).unwrap();
    if !v6 {
        out[4..6].copy_from_slice(&0xfff0u16.to_be_bytes()); // id near wrap-around
        out[10..12].fill(0);
        let c = encap::checksum::checksum(&out[..20]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
    }
    out
}

const LAYOUT: Layout = Layout {
    headroom: 50,
    stride: 50 + 1600,
};

fn split(pkt: &[u8], mss: usize) -> (Vec<u8>, Vec<usize>, usize) {
    let mut out = vec![0u8; 128 * LAYOUT.stride];
    let mut lens = vec![0usize; 128];
    let n = split_tcp(pkt, mss, &mut out, LAYOUT, &mut lens).unwrap();
    (out, lens, n)
}

fn seg<'a>(out: &'a [u8], lens: &[usize], i: usize) -> &'a [u8] {
    let at = i * LAYOUT.stride + LAYOUT.headroom;
    &out[at..at + lens[i]]
}

#[test]
fn split_64k_into_valid_segments() {
    for v6 in [false, true] {
        let payload: Vec<u8> = (0..64000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pkt = super_packet(v6, &payload, &["psh", "fin", "cwr"]);
        let (out, lens, n) = split(&pkt, 1400);
        assert_eq!(n, 46);
        let mut joined = Vec::new();
        for i in 0..n {
            let s = seg(&out, &lens, i);
            let e = etherparse::SlicedPacket::from_ip(s).unwrap();
            let tcp = match e.transport {
                Some(etherparse::TransportSlice::Tcp(t)) => t,
                _ => panic!("segment {i} not TCP"),
            };
            assert_eq!(
                tcp.sequence_number(),
                0xffff_f000u32.wrapping_add(1400 * i as u32),
                "seq wraps"
            );
            assert_eq!(tcp.psh(), i == n - 1);
            assert_eq!(tcp.fin(), i == n - 1);
            assert_eq!(tcp.cwr(), i == 0);
            assert!(tcp.ack());
            assert_eq!(tcp.acknowledgment_number(), 99);
            let payload_len = if i == n - 1 { 64000 - 45 * 1400 } else { 1400 };
            assert_eq!(tcp.payload().len(), payload_len);
            joined.extend_from_slice(tcp.payload());
            match e.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let h = ip.header();
                    assert_eq!(h.identification(), 0xfff0u16.wrapping_add(i as u16));
                    assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
                    let want = tcp
                        .to_header()
                        .calc_checksum_ipv4(&h.to_header(), tcp.payload())
                        .unwrap();
                    assert_eq!(tcp.checksum(), want);
                }
                etherparse::NetSlice::Ipv6(ip) => {
                    let want = tcp
                        .to_header()
                        .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                        .unwrap();
                    assert_eq!(tcp.checksum(), want);
                }
            }
        }
        assert_eq!(joined, payload);
    }
}

fn coalesce_all(
    out: &[u8],
    lens: &[usize],
    n: usize,
    buf: &mut [u8],
    fill: ChecksumFill,
) -> encap::segment::Coalesced {
    let mut c = TcpCoalescer::start(buf, seg(out, lens, 0), true).unwrap();
    for i in 1..n {
        c.push(seg(out, lens, i)).unwrap();
    }
    c.finish(fill)
}

proptest! {
    #[test]
    fn split_then_coalesce_is_identity(v6: bool, len in 1usize..20000, mss in 200usize..1460, psh: bool) {
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let flags: &[&str] = if psh { &["psh"] } else { &[] };
        let pkt = super_packet(v6, &payload, flags);
        let (out, lens, n) = split(&pkt, mss);
        prop_assert_eq!(n, len.div_ceil(mss));
        let mut buf = vec![0u8; 70000];
        let c = coalesce_all(&out, &lens, n, &mut buf, ChecksumFill::Full);
        prop_assert_eq!(c.segments, n);
        prop_assert_eq!(c.mss, mss.min(len));
        let mut want = pkt.clone();
        if !v6 {
            // The merged packet keeps the first segment's IP id.
            prop_assert_eq!(&buf[4..6], &want[4..6]);
        }
        want.truncate(c.len);
        prop_assert_eq!(&buf[..c.len], &want[..]);
    }
}

proptest! {
    /// A run built in place (headers here, payloads left where they are)
    /// is, headers followed by the payloads it points at, byte for byte the
    /// run the copying coalescer builds; and it refuses what that refuses.
    #[test]
    fn in_place_run_equals_the_copying_run(v6: bool, len in 1usize..20000, mss in 200usize..1460, corrupt in proptest::option::of(0usize..40)) {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let pkt = super_packet(v6, &payload, &[]);
        let (mut out, lens, n) = split(&pkt, mss);
        if let Some(k) = corrupt.filter(|k| *k < n && *k > 0) {
            // The last payload byte of segment k: both must refuse it.
            out[k * LAYOUT.stride + LAYOUT.headroom + lens[k] - 1] ^= 0x55;
        }
        let mut copied = vec![0u8; 70000];
        let mut run = TcpCoalescer::start(&mut copied, seg(&out, &lens, 0), true).unwrap();
        let mut headers = vec![0u8; 256];
        let (mut place, first) = TcpCoalescer::start_in_place(&mut headers, seg(&out, &lens, 0), true).unwrap();
        let mut gathered: Vec<u8> = seg(&out, &lens, 0)[first].to_vec();
        for i in 1..n {
            let a = run.push(seg(&out, &lens, i));
            let b = place.push_in_place(seg(&out, &lens, i));
            prop_assert_eq!(a.is_ok(), b.is_ok());
            match b {
                Ok(r) => gathered.extend_from_slice(&seg(&out, &lens, i)[r]),
                Err(e) => {
                    prop_assert_eq!(Err(e), a);
                    break;
                }
            }
        }
        prop_assert_eq!(place.push(seg(&out, &lens, 0)), Err(Refusal::Full));
        let c = run.finish(ChecksumFill::Partial);
        let d = place.finish(ChecksumFill::Full);
        prop_assert_eq!(c, d);
        let mut whole = headers[..d.header_len].to_vec();
        whole.extend_from_slice(&gathered);
        prop_assert_eq!(&copied[..c.len], &whole[..]);
    }
}

#[test]
fn partial_checksum_is_the_pseudo_header_sum() {
    let pkt = super_packet(false, &[7u8; 5000], &[]);
    let (out, lens, n) = split(&pkt, 1000);
    let mut buf = vec![0u8; 70000];
    let c = coalesce_all(&out, &lens, n, &mut buf, ChecksumFill::Partial);
    assert_eq!(
        (c.csum_start, c.csum_offset, c.segments, c.mss),
        (20, 16, 5, 1000)
    );
    let pseudo = encap::checksum::Checksum::pseudo_v4(
        [10, 244, 0, 2].into(),
        [10, 244, 1, 2].into(),
        6,
        (c.len - 20) as u32,
    );
    assert_eq!(u16::from_be_bytes([buf[36], buf[37]]), pseudo.fold());
}

#[test]
fn coalescer_refusals() {
    let pkt = super_packet(false, &[1u8; 4000], &[]);
    let (out, lens, n) = split(&pkt, 1000);
    assert_eq!(n, 4);
    let s = |i| seg(&out, &lens, i).to_vec();
    let mut buf = vec![0u8; 70000];

    let mut c = TcpCoalescer::start(&mut buf, &s(0), true).unwrap();
    assert_eq!(c.push(&s(2)), Err(Refusal::OutOfOrder));
    assert_eq!(c.push(&s(0)), Err(Refusal::OutOfOrder));
    let mut other_port = s(1);
    other_port[20] ^= 1;
    assert_eq!(c.push(&other_port), Err(Refusal::OtherFlow));
    let mut other_ttl = s(1);
    other_ttl[8] = 1;
    assert_eq!(c.push(&other_ttl), Err(Refusal::OtherFlow));
    let mut other_ack = s(1);
    other_ack[28] ^= 1;
    assert_eq!(c.push(&other_ack), Err(Refusal::OtherFlow));
    let mut urg = s(1);
    urg[33] |= 0x20;
    assert_eq!(c.push(&urg), Err(Refusal::Flags));
    let mut corrupt = s(1);
    corrupt[100] ^= 0xff;
    assert_eq!(c.push(&corrupt), Err(Refusal::BadChecksum));
    assert_eq!(c.push(&[0x45, 0, 0]), Err(Refusal::NotTcp));
    assert_eq!(c.segments(), 1, "refused segments change nothing");
    c.push(&s(1)).unwrap();
    assert_eq!(c.segments(), 2);

    // A short segment closes the run.
    let short = super_packet(false, &[1u8; 2500], &[]);
    let (o2, l2, n2) = split(&short, 1000);
    assert_eq!(n2, 3);
    let mut b2 = vec![0u8; 70000];
    let mut c2 = TcpCoalescer::start(&mut b2, seg(&o2, &l2, 0), true).unwrap();
    c2.push(seg(&o2, &l2, 1)).unwrap();
    c2.push(seg(&o2, &l2, 2)).unwrap();
    let mut next = seg(&o2, &l2, 1).to_vec();
    let seq = 0xffff_f000u32.wrapping_add(2500);
    next[24..28].copy_from_slice(&seq.to_be_bytes());
    assert_eq!(c2.push(&next), Err(Refusal::Closed));

    // Start refusals: pure ACK, SYN, room, checksum.
    let ack_only = super_packet(false, &[], &[]);
    assert_eq!(
        TcpCoalescer::start(&mut buf, &ack_only, true).err(),
        Some(Refusal::Size)
    );
    let syn = super_packet(false, b"x", &["syn"]);
    assert_eq!(
        TcpCoalescer::start(&mut buf, &syn, true).err(),
        Some(Refusal::Flags)
    );
    assert_eq!(
        TcpCoalescer::start(&mut buf[..100], &s(0), true).err(),
        Some(Refusal::Full)
    );
    let mut bad = s(0);
    bad[60] ^= 1;
    assert_eq!(
        TcpCoalescer::start(&mut buf, &bad, true).err(),
        Some(Refusal::BadChecksum)
    );
    assert!(
        TcpCoalescer::start(&mut buf, &bad, false).is_ok(),
        "verification can be left to the kernel"
    );
}

#[test]
fn coalescer_stops_at_64k_and_at_the_buffer_end() {
    let first = super_packet_at(false, 1000, &vec![3u8; 1400 * 46], &[]);
    let second = super_packet_at(false, 1000 + 1400 * 46, &[4u8; 1400 * 5], &[]);
    let (o1, l1, n1) = split(&first, 1400);
    let (o2, l2, _) = split(&second, 1400);
    let mut buf = vec![0u8; 200_000];
    let mut c = TcpCoalescer::start(&mut buf, seg(&o1, &l1, 0), true).unwrap();
    for i in 1..n1 {
        c.push(seg(&o1, &l1, i)).unwrap();
    }
    assert_eq!(
        c.push(seg(&o2, &l2, 0)),
        Err(Refusal::Full),
        "65,852 bytes would exceed 64 KiB"
    );
    let done = c.finish(ChecksumFill::Full);
    assert_eq!((done.segments, done.len), (46, 52 + 46 * 1400));

    let mut small = vec![0u8; 3000];
    let mut c = TcpCoalescer::start(&mut small, seg(&o1, &l1, 0), true).unwrap();
    c.push(seg(&o1, &l1, 1)).unwrap();
    assert_eq!(c.push(seg(&o1, &l1, 2)), Err(Refusal::Full));
}

#[test]
fn split_error_paths() {
    let pkt = super_packet(false, &[0u8; 3000], &[]);
    let mut out = vec![0u8; 10 * LAYOUT.stride];
    let mut lens = [0usize; 10];
    assert!(matches!(
        split_tcp(&pkt, 0, &mut out, LAYOUT, &mut lens),
        Err(Error::Malformed { .. })
    ));
    assert_eq!(
        split_tcp(&pkt, 1000, &mut out, LAYOUT, &mut lens[..2]),
        Err(Error::NoRoom { need: 3, have: 2 })
    );
    let tight = Layout {
        headroom: 50,
        stride: 500,
    };
    assert!(matches!(
        split_tcp(&pkt, 1000, &mut out, tight, &mut lens),
        Err(Error::NoRoom { .. })
    ));
    assert!(matches!(
        split_tcp(&pkt, 1000, &mut out[..2000], LAYOUT, &mut lens),
        Err(Error::NoRoom { .. })
    ));
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
        .udp(1, 2)
        .write(&mut udp, b"x")
        .unwrap();
    assert!(matches!(
        split_tcp(&udp, 1000, &mut out, LAYOUT, &mut lens),
        Err(Error::Unsupported { .. })
    ));
    assert!(split_tcp(&[], 1000, &mut out, LAYOUT, &mut lens).is_err());
    // A packet that already fits comes out as one segment.
    let small = super_packet(true, &[5u8; 100], &["psh"]);
    assert_eq!(split_tcp(&small, 1000, &mut out, LAYOUT, &mut lens), Ok(1));
    assert_eq!(&out[50..50 + lens[0]], &small[..]);
}

#[test]
fn headers_only_split_matches_the_copying_split() {
    for v6 in [false, true] {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 13 % 255) as u8).collect();
        let pkt = super_packet(v6, &payload, &["psh"]);
        let (full, full_lens, n) = split(&pkt, 1400);
        let hdr_layout = Layout {
            headroom: 16,
            stride: 16 + 128,
        };
        let mut hdrs = vec![0u8; 64 * hdr_layout.stride];
        let mut lens = [0usize; 64];
        let s = encap::segment::split_tcp_headers(&pkt, 1400, &mut hdrs, hdr_layout, &mut lens)
            .unwrap();
        assert_eq!(s.segments, n);
        for i in 0..n {
            let at = i * hdr_layout.stride + 16;
            let mut joined = hdrs[at..at + lens[i]].to_vec();
            assert_eq!(lens[i], s.header_len);
            joined.extend_from_slice(s.payload(&pkt, i));
            assert_eq!(joined, seg(&full, &full_lens, i), "segment {i}");
        }
        assert!(s.payload(&pkt, n).is_empty());
    }
}

/// A UDP super-packet: one datagram with all of `payload`.
fn udp_super_packet(v6: bool, payload: &[u8]) -> Vec<u8> {
    common::inner_packet(v6, false, 0, payload)
}

/// Every datagram of a split UDP super-packet is a valid packet on its own
/// (IP header checksum, UDP length and checksum, as an independent parser
/// and checksum see them), the IPv4 ids count up, and the payloads join
/// back into the original.
#[test]
fn split_udp_makes_valid_datagrams_that_join_back() {
    use encap::segment::split_udp;
    for v6 in [false, true] {
        for (len, size) in [
            (3500usize, 1000usize),
            (1000, 1000),
            (1, 1200),
            (64000, 1350),
        ] {
            let payload: Vec<u8> = (0..len as u32).map(|i| (i * 13 % 251) as u8).collect();
            let pkt = udp_super_packet(v6, &payload);
            let mut out = vec![0u8; 64 * LAYOUT.stride];
            let mut lens = vec![0usize; 64];
            let n = split_udp(&pkt, size, &mut out, LAYOUT, &mut lens).unwrap();
            assert_eq!(n, len.div_ceil(size), "v6 {v6} len {len}");
            let mut joined = Vec::new();
            for i in 0..n {
                let s = seg(&out, &lens, i);
                let e = etherparse::SlicedPacket::from_ip(s).unwrap();
                let udp = match e.transport {
                    Some(etherparse::TransportSlice::Udp(u)) => u,
                    _ => panic!("datagram {i} not UDP"),
                };
                let body = udp.payload();
                assert_eq!(usize::from(udp.length()), 8 + body.len());
                let (src, dst): (std::net::IpAddr, std::net::IpAddr) = match &e.net {
                    Some(etherparse::NetSlice::Ipv4(_)) => {
                        let h = encap::ipv4::Ipv4Packet::new_checked(s).unwrap();
                        assert!(h.verify_checksum(), "IPv4 header checksum of datagram {i}");
                        (h.src().into(), h.dst().into())
                    }
                    Some(etherparse::NetSlice::Ipv6(ip)) => (
                        ip.header().source_addr().into(),
                        ip.header().destination_addr().into(),
                    ),
                    _ => panic!("datagram {i} not IP"),
                };
                let ip_hl = if v6 { 40 } else { 20 };
                let u = encap::udp::UdpPacket::new_checked(&s[ip_hl..]).unwrap();
                assert!(u.verify_checksum(src, dst), "UDP checksum of datagram {i}");
                if !v6 {
                    let first = u16::from_be_bytes([pkt[4], pkt[5]]);
                    assert_eq!(
                        u16::from_be_bytes([s[4], s[5]]),
                        first.wrapping_add(i as u16)
                    );
                }
                joined.extend_from_slice(body);
            }
            assert_eq!(joined, payload, "v6 {v6} len {len}");
        }
    }
}

/// TCP, fragments and a zero size are refused, not split.
#[test]
fn split_udp_refuses_what_it_cannot_split() {
    use encap::segment::split_udp;
    let mut out = vec![0u8; 64 * LAYOUT.stride];
    let mut lens = vec![0usize; 64];
    let tcp = super_packet(false, &[1; 3000], &[]);
    assert!(split_udp(&tcp, 1000, &mut out, LAYOUT, &mut lens).is_err());
    let udp = udp_super_packet(false, &[1; 3000]);
    assert!(split_udp(&udp, 0, &mut out, LAYOUT, &mut lens).is_err());
    let mut frag = udp.clone();
    frag[6] |= 0x20; // more fragments
    assert!(split_udp(&frag, 1000, &mut out, LAYOUT, &mut lens).is_err());
    let mut few = vec![0usize; 2];
    assert!(split_udp(&udp, 1000, &mut out, LAYOUT, &mut few).is_err());
}

/// A UDP super-packet split into datagrams (as the sender's weftd does) and
/// merged again in place (as the receiver's does) is, headers followed by
/// the payloads it points at and with its partial checksum completed (as
/// the kernel does for NEEDS_CSUM), the original byte for byte.
#[test]
fn udp_split_then_coalesce_restores_the_super_packet() {
    use encap::segment::{split_udp, InPlaceRun, RunRules, Transport};
    use encap::virtio::{complete_checksum, GsoType, VirtioNetHdr};
    const UDP: RunRules = RunRules {
        udp: true,
        verify: true,
    };
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &(any::<bool>(), 1usize..20000, 320usize..1460),
            |(v6, len, size)| {
                let payload: Vec<u8> = (0..len as u32).map(|i| (i * 7 % 253) as u8).collect();
                let pkt = udp_super_packet(v6, &payload);
                let mut out = vec![0u8; 64 * LAYOUT.stride];
                let mut lens = vec![0usize; 64];
                let n = split_udp(&pkt, size, &mut out, LAYOUT, &mut lens).unwrap();
                let mut headers = vec![0u8; 128];
                let (mut run, first) =
                    InPlaceRun::start(&mut headers, seg(&out, &lens, 0), UDP).unwrap();
                prop_assert!(matches!(run, InPlaceRun::Udp(_)));
                let mut joined = seg(&out, &lens, 0)[first].to_vec();
                for i in 1..n {
                    let r = run.push(seg(&out, &lens, i)).unwrap();
                    joined.extend_from_slice(&seg(&out, &lens, i)[r]);
                }
                let c = run.finish();
                prop_assert_eq!(
                    (c.segments, c.transport, c.len),
                    (n, Transport::Udp, pkt.len())
                );
                let mut whole = headers[..c.header_len].to_vec();
                whole.extend_from_slice(&joined);
                complete_checksum(&mut whole, c.csum_start, c.csum_offset).unwrap();
                prop_assert_eq!(&whole, &pkt);
                let h = VirtioNetHdr::for_coalesced(&c);
                if n > 1 {
                    prop_assert_eq!(
                        (h.gso_type, usize::from(h.gso_size)),
                        (GsoType::UdpL4, size)
                    );
                } else {
                    prop_assert_eq!(h.gso_type, GsoType::None);
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn udp_coalescer_refusals() {
    use encap::segment::{split_udp, InPlaceRun, RunRules, UdpCoalescer, MAX_UDP_SEGMENTS};
    const UDP: RunRules = RunRules {
        udp: true,
        verify: true,
    };
    const NO_UDP: RunRules = RunRules {
        udp: false,
        verify: true,
    };
    let pkt = udp_super_packet(false, &[5u8; 7050]);
    let mut out = vec![0u8; 128 * LAYOUT.stride];
    let mut lens = vec![0usize; 128];
    let n = split_udp(&pkt, 100, &mut out, LAYOUT, &mut lens).unwrap();
    assert_eq!(n, 71);
    let s = |i| seg(&out, &lens, i).to_vec();
    let mut headers = vec![0u8; 128];

    // Start refusals: no checksum, empty, a fragment, too little room, not
    // wanted, a bad checksum.
    let mut no_sum = s(0);
    no_sum[26..28].fill(0);
    assert_eq!(
        UdpCoalescer::start_in_place(&mut headers, &no_sum, true).err(),
        Some(Refusal::NotUdp)
    );
    let empty = udp_super_packet(false, &[]);
    assert_eq!(
        UdpCoalescer::start_in_place(&mut headers, &empty, true).err(),
        Some(Refusal::Size)
    );
    let mut frag = s(0);
    frag[6] |= 0x20;
    assert_eq!(
        UdpCoalescer::start_in_place(&mut headers, &frag, true).err(),
        Some(Refusal::NotUdp)
    );
    assert_eq!(
        UdpCoalescer::start_in_place(&mut headers[..20], &s(0), true).err(),
        Some(Refusal::Full)
    );
    assert_eq!(
        InPlaceRun::start(&mut headers, &s(0), NO_UDP).err(),
        Some(Refusal::NotUdp)
    );
    let mut bad = s(0);
    bad[40] ^= 1;
    assert_eq!(
        UdpCoalescer::start_in_place(&mut headers, &bad, true).err(),
        Some(Refusal::BadChecksum)
    );

    // Where the tunnel's checksum covered it, a corrupt datagram is
    // taken as it is (the caller's word), a missing checksum still not.
    assert!(UdpCoalescer::start_in_place(&mut headers, &bad, false).is_ok());
    assert_eq!(
        UdpCoalescer::start_in_place(&mut headers, &no_sum, false).err(),
        Some(Refusal::NotUdp)
    );

    let (mut run, _) = UdpCoalescer::start_in_place(&mut headers, &s(0), true).unwrap();
    let mut other_port = s(1);
    other_port[22] ^= 1;
    assert_eq!(run.push_in_place(&other_port), Err(Refusal::OtherFlow));
    let mut other_tos = s(1);
    other_tos[1] = 3; // CE: must not merge with Not-ECT datagrams
    assert_eq!(run.push_in_place(&other_tos), Err(Refusal::OtherFlow));
    let mut corrupt = s(1);
    corrupt[50] ^= 0xff;
    assert_eq!(run.push_in_place(&corrupt), Err(Refusal::BadChecksum));
    assert_eq!(
        run.push_in_place(&pkt),
        Err(Refusal::Size),
        "bigger than the first"
    );
    let tcp = super_packet(false, &[1; 100], &[]);
    assert_eq!(run.push_in_place(&tcp), Err(Refusal::NotUdp));
    assert_eq!(run.segments(), 1, "refused datagrams change nothing");
    for i in 1..MAX_UDP_SEGMENTS {
        run.push_in_place(&s(i)).unwrap();
    }
    assert_eq!(run.push_in_place(&s(MAX_UDP_SEGMENTS)), Err(Refusal::Full));
    assert_eq!(run.finish().segments, MAX_UDP_SEGMENTS);

    // A short datagram (the last of the split) closes the run.
    let (mut run, _) = UdpCoalescer::start_in_place(&mut headers, &s(68), true).unwrap();
    run.push_in_place(&s(69)).unwrap();
    run.push_in_place(&s(70)).unwrap();
    assert_eq!(run.push_in_place(&s(1)), Err(Refusal::Closed));

    // TCP still goes to the TCP coalescer.
    let (tcp_run, _) = InPlaceRun::start(&mut headers, &tcp, UDP).unwrap();
    assert!(matches!(tcp_run, InPlaceRun::Tcp(_)));
}

/// A packet the kernel's GRO merged (its checksum field holding the
/// pseudo-header sum) is taken as a super-packet of segments that fit the
/// given MTU; one with a full checksum must have a valid one, and leaves
/// with the pseudo-header sum in its place; short or non-TCP packets are
/// not taken.
#[test]
fn merged_by_kernel_takes_what_gro_built() {
    use encap::segment::{merged_by_kernel, Transport};
    for v6 in [false, true] {
        let full = super_packet(v6, &[9u8; 5000], &[]);
        let ip_hl = if v6 { 40 } else { 20 };
        let hdr_len = ip_hl + 32;
        let pseudo = |p: &[u8]| {
            let len = (p.len() - ip_hl) as u32;
            let c = if v6 {
                let s: [u8; 16] = p[8..24].try_into().unwrap();
                let d: [u8; 16] = p[24..40].try_into().unwrap();
                encap::checksum::Checksum::pseudo_v6(s.into(), d.into(), 6, len)
            } else {
                let s: [u8; 4] = p[12..16].try_into().unwrap();
                let d: [u8; 4] = p[16..20].try_into().unwrap();
                encap::checksum::Checksum::pseudo_v4(s.into(), d.into(), 6, len)
            };
            c.fold().to_be_bytes()
        };
        let field = ip_hl + 16..ip_hl + 18;

        // As GRO leaves it: the pseudo-header sum, taken as it is.
        let mut gro = full.clone();
        gro[field.clone()].copy_from_slice(&pseudo(&full));
        let c = merged_by_kernel(&mut gro, 1280).unwrap();
        let mss = 1280 - hdr_len;
        assert_eq!(
            (c.segments, c.mss, c.len, c.header_len, c.transport),
            (
                5000usize.div_ceil(mss),
                mss,
                full.len(),
                hdr_len,
                Transport::Tcp
            )
        );
        assert_eq!((c.csum_start, c.csum_offset), (ip_hl, 16));
        assert_eq!(gro[field.clone()], pseudo(&full));

        // A full checksum: verified, then replaced by the pseudo-header sum.
        let mut whole = full.clone();
        merged_by_kernel(&mut whole, 1280).unwrap();
        assert_eq!(whole[field.clone()], pseudo(&full));
        assert_eq!(whole[..ip_hl + 16], full[..ip_hl + 16]);
        let mut corrupt = full.clone();
        corrupt[hdr_len + 7] ^= 1;
        assert_eq!(
            merged_by_kernel(&mut corrupt, 1280),
            Err(Refusal::BadChecksum)
        );

        // Not longer than the MTU, or not TCP: not taken.
        let mut short = super_packet(v6, &[9u8; 1000], &[]);
        assert_eq!(merged_by_kernel(&mut short, 1280), Err(Refusal::Size));
        let mut udp = udp_super_packet(v6, &[9u8; 5000]);
        assert_eq!(merged_by_kernel(&mut udp, 1280), Err(Refusal::NotTcp));
    }
}

/// A Linux vxlan sender on an underlay that finishes no checksum (a veth)
/// leaves its pods' transport checksums partial (the pseudo-header sum):
/// they are recognised, merged like verified ones, and finishing them
/// gives the right checksum; a correct or corrupt checksum is not taken
/// for one.
#[test]
fn checksums_left_partial_by_an_offloading_sender_are_recognised() {
    for v6 in [false, true] {
        let good = super_packet(v6, &[7u8; 1000], &[]);
        let ip_hl = if v6 { 40 } else { 20 };
        let at = ip_hl + 16;
        assert_eq!(encap::segment::partial_checksum(&good), None);
        let (src, dst): (std::net::IpAddr, std::net::IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("10.244.0.2".parse().unwrap(), "10.244.1.2".parse().unwrap())
        };
        let len = (good.len() - ip_hl) as u32;
        let pseudo = match (src, dst) {
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                encap::checksum::Checksum::pseudo_v4(s, d, 6, len)
            }
            (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                encap::checksum::Checksum::pseudo_v6(s, d, 6, len)
            }
            _ => unreachable!(),
        };
        let mut partial = good.clone();
        partial[at..at + 2].copy_from_slice(&pseudo.fold().to_be_bytes());
        assert_eq!(
            encap::segment::partial_checksum(&partial),
            Some((ip_hl, 16)),
            "v6 {v6}"
        );
        let mut finished = partial.clone();
        encap::virtio::complete_checksum(&mut finished, ip_hl, 16).unwrap();
        assert_eq!(finished, good, "finishing it gives the sender's checksum");
        // Merged like a verified segment; a corrupt one is still refused.
        let mut out = vec![0u8; 70000];
        assert!(TcpCoalescer::start(&mut out, &partial, true).is_ok());
        let mut corrupt = good.clone();
        corrupt[at] ^= 0x55;
        assert_eq!(encap::segment::partial_checksum(&corrupt), None);
        assert!(matches!(
            TcpCoalescer::start(&mut out, &corrupt, true),
            Err(Refusal::BadChecksum)
        ));
    }
}
