//! The checks the fuzz targets (fuzz/) run on each input, kept here so the
//! corpus replay test (tests/corpus.rs) runs the very same checks on stable
//! Rust in CI. Each function must not panic on any input; the assertions
//! inside state what a successful parse promises. Not part of the API.

#![allow(missing_docs)]

use crate::ecn::Ecn;
use crate::segment::{split_tcp, ChecksumFill, Layout, TcpCoalescer};
use crate::vxlan::{Vni, VxlanDecap, VxlanEncap};
use crate::{MacAddr, OuterIp};

/// Every tunnel decoder on arbitrary bytes: no panic, and a success always
/// names an inner packet that lies in the buffer and parses.
pub fn decap(data: &[u8]) {
    let dec = VxlanDecap {
        vni: Vni::new(data.first().map_or(1, |b| u32::from(*b))).unwrap(),
        port: 4789,
    };
    let mut buf = data.to_vec();
    if let Ok(d) = dec.decap(&mut buf) {
        assert!(d.inner.end <= buf.len());
        assert!(crate::IpPacket::new_checked(&buf[d.inner.clone()]).is_ok());
    }
    let mut buf = data.to_vec();
    let ecn = Ecn::from_tos(data.last().copied().unwrap_or(0));
    if let Ok(d) = dec.decap_payload(&mut buf, ecn) {
        assert!(d.inner.end <= buf.len());
        assert!(crate::IpPacket::new_checked(&buf[d.inner.clone()]).is_ok());
    }
    let mut buf = data.to_vec();
    if let Ok(d) = crate::ipip::decap(&mut buf) {
        assert!(d.inner.end <= buf.len());
        assert!(crate::IpPacket::new_checked(&buf[d.inner.clone()]).is_ok());
    }
}

/// The header views and the ICMP error builders on arbitrary bytes.
pub fn headers(data: &[u8]) {
    if let Ok(p) = crate::IpPacket::new_checked(data) {
        let _ = (p.src(), p.dst(), p.tos(), p.protocol(), p.is_fragment());
        assert!(p.total_len() <= data.len());
        assert_eq!(p.payload().len(), p.total_len() - p.header_len());
        if let Ok(u) = crate::udp::UdpPacket::new_checked(p.payload()) {
            let _ = (u.payload(), u.verify_checksum(p.src(), p.dst()));
        }
        if let Ok(t) = crate::tcp::TcpSegment::new_checked(p.payload()) {
            let _ = (t.options(), t.payload(), t.seq(), t.flags());
        }
    }
    if let Ok(e) = crate::ethernet::EthernetFrame::new_checked(data) {
        let _ = (e.src(), e.dst(), e.ethertype(), e.payload());
    }
    // Membership reports from pods: a report that parses reads whole, and
    // only multicast groups come out of it.
    if let Ok(Some(r)) = crate::group::membership(data) {
        assert!(r.changes().count() <= usize::from(u16::MAX) + 1);
        assert!(r.changes().all(|(g, _)| g.is_multicast()));
    }
    // The L2 answers weftd gives pods (veth attach) and Linux peers.
    let mut reply = [0u8; crate::nd::ADVERT_FRAME_LEN];
    if let Ok(req) = crate::arp::parse_request(data) {
        assert_eq!(
            crate::arp::write_reply(&mut reply, &req, MacAddr([0xee; 6])),
            Ok(crate::arp::FRAME_LEN)
        );
    }
    if let Ok(sol) = crate::nd::parse_solicitation(data) {
        assert!(!sol.target.is_multicast());
        if let Ok(n) = crate::nd::write_advertisement(&mut reply, &sol, MacAddr([0xee; 6]), true) {
            assert!(
                crate::nd::parse_solicitation(&reply[..n]).is_err(),
                "an advert is no solicitation"
            );
        }
    }
    if let Ok(v) = crate::vxlan::VxlanHeader::new_checked(data) {
        let _ = (v.vni(), v.payload());
    }
    let mut out = [0u8; 1400];
    if let Ok(n) = crate::icmp::frag_needed_v4(data, [169, 254, 1, 1].into(), 1450, &mut out) {
        assert!(n <= crate::icmp::V4_MAX_ERROR_LEN);
        assert!(crate::IpPacket::new_checked(&out[..n]).is_ok());
    }
    if let Ok(n) = crate::icmp::packet_too_big_v6(data, "fe80::1".parse().unwrap(), 1430, &mut out)
    {
        assert!(n <= crate::icmp::V6_MAX_ERROR_LEN);
        assert!(crate::IpPacket::new_checked(&out[..n]).is_ok());
    }
    let _ = crate::flow::flow_hash(data);
    if let Ok(h) = crate::virtio::VirtioNetHdr::parse(data) {
        let mut back = [0u8; 10];
        h.write(&mut back).unwrap();
        assert_eq!(crate::virtio::VirtioNetHdr::parse(&back), Ok(h));
    }
}

/// TCP and UDP split and coalesce on arbitrary bytes: no panic; what split
/// accepts, coalesce merges back into the same number of segments.
pub fn segment(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let mss = usize::from(u16::from_be_bytes([data[0], data[1]]) % 2000);
    let pkt = &data[2..];
    let layout = Layout {
        headroom: 50,
        stride: 50 + 2200,
    };
    // A packet taken as merged by the kernel's GRO: cut at `mss` as an MTU,
    // its segments hold all of it and fit.
    let mut taken = pkt.to_vec();
    if let Ok(c) = crate::segment::merged_by_kernel(&mut taken, mss) {
        assert!(c.len > mss && c.header_len < mss && c.segments >= 2);
        assert_eq!(c.segments, (c.len - c.header_len).div_ceil(c.mss));
        assert_eq!(c.mss + c.header_len, mss);
    }
    let mut out = vec![0u8; 64 * layout.stride];
    let mut lens = [0usize; 64];
    // UDP: what split accepts comes out as datagrams of the asked size
    // (the last may be shorter), each with its UDP length right.
    if let Ok(n) = crate::segment::split_udp(pkt, mss, &mut out, layout, &mut lens) {
        assert!((1..=64).contains(&n));
        for (i, len) in lens.iter().enumerate().take(n) {
            let d = &out[i * layout.stride + 50..i * layout.stride + 50 + len];
            let ip = crate::IpPacket::new_checked(d).expect("a split datagram parses");
            assert_eq!(ip.total_len(), d.len());
        }
        // ... and merges back, every datagram, into one super-packet as long
        // as the datagrams (only an empty payload is refused).
        let seg = |i: usize| &out[i * layout.stride + 50..i * layout.stride + 50 + lens[i]];
        let mut headers = [0u8; 128];
        match crate::segment::InPlaceRun::start(
            &mut headers,
            seg(0),
            crate::segment::RunRules {
                udp: true,
                verify: true,
            },
        ) {
            Ok((mut run, first)) => {
                let header_len = first.start;
                for i in 1..n {
                    run.push(seg(i)).expect("a split datagram merges back");
                }
                let c = run.finish();
                assert_eq!(c.segments, n);
                let whole: usize = lens[..n].iter().sum::<usize>() - (n - 1) * header_len;
                assert_eq!(c.len, whole);
            }
            Err(why) => assert_eq!(why, crate::segment::Refusal::Size),
        }
        return;
    }
    let Ok(n) = split_tcp(pkt, mss, &mut out, layout, &mut lens) else {
        return;
    };
    assert!((1..=64).contains(&n));
    let seg = |i: usize| &out[i * layout.stride + 50..i * layout.stride + 50 + lens[i]];
    let mut merged = vec![0u8; 70_000];
    let mut headers = vec![0u8; 256];
    let copied = TcpCoalescer::start(&mut merged, seg(0), true);
    let in_place = TcpCoalescer::start_in_place(&mut headers, seg(0), true);
    assert_eq!(copied.is_ok(), in_place.is_ok());
    if let (Ok(mut c), Ok((mut p, first))) = (copied, in_place) {
        // The in-place run (headers + payloads where they lie) must be the
        // copying run, byte for byte.
        let mut gathered = seg(0)[first].to_vec();
        for i in 1..n {
            let a = c.push(seg(i));
            let b = p.push_in_place(seg(i));
            assert_eq!(a.err(), b.as_ref().err().copied());
            match b {
                Ok(r) => gathered.extend_from_slice(&seg(i)[r]),
                Err(_) => return,
            }
        }
        let done = c.finish(ChecksumFill::Partial);
        let place = p.finish(ChecksumFill::Partial);
        assert_eq!(done, place);
        assert_eq!(done.segments, n);
        assert_eq!(merged[..done.header_len], headers[..done.header_len]);
        assert_eq!(merged[done.header_len..done.len], gathered[..]);
    }
}

/// Encapsulation of arbitrary inner bytes: no panic; a well-formed inner
/// packet decapsulates to itself in every mode and family.
pub fn encap_round_trip(data: &[u8]) {
    let Some((&mode, inner)) = data.split_first() else {
        return;
    };
    let well_formed = crate::IpPacket::new_checked(inner)
        .map(|p| p.total_len() == inner.len())
        .unwrap_or(false);
    let mut buf = vec![0u8; 128 + inner.len()];
    buf[128..].copy_from_slice(inner);
    let range = 128..buf.len();
    let outer = if mode & 1 == 0 {
        OuterIp::new("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap())
    } else {
        OuterIp::new("fd00:99::1".parse().unwrap(), "fd00:99::2".parse().unwrap())
    };
    let vni = Vni::new(7).unwrap();
    let result = if mode & 2 == 0 {
        let enc = VxlanEncap::new(
            vni,
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
        );
        enc.encap(&mut buf, range, &outer).and_then(|s| {
            VxlanDecap { vni, port: 4789 }
                .decap(&mut buf[s..])
                .map(|d| (s, d))
        })
    } else {
        crate::ipip::encap(&mut buf, range, &outer)
            .and_then(|s| crate::ipip::decap(&mut buf[s..]).map(|d| (s, d)))
    };
    if well_formed && inner.len() <= 65_000 {
        let (s, d) = result.expect("a well-formed packet survives the tunnel");
        assert_eq!(&buf[s..][d.inner], inner);
    }
}
