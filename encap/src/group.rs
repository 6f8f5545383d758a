//! Multicast groups: which groups a routed pod network carries, their
//! Ethernet addresses, and the membership reports pods send — IGMPv1/v2/v3
//! (RFC 1112, 2236, 3376) and MLDv1/v2 (RFC 2710, 3810) — read as joins
//! and leaves of whole groups.
//!
//! Written by hand: etherparse reads neither IGMP nor MLD, smoltcp reads
//! IGMPv1/v2 only, and what weft needs is the group records' framing.
//!
//! Source filters (IGMPv3 and MLDv2's INCLUDE/EXCLUDE lists) are read as
//! "this host wants the group": a node forwards a group to a pod whenever
//! the pod wants any of its sources, and the pod's own stack filters the
//! rest (RFC 3376 section 3.2 keeps source filtering a host's job too).

use crate::checksum::{self, Checksum};
use crate::error::{need, Error, Layer, Result};
use crate::ethernet::MacAddr;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of IGMP.
pub const IGMP: u8 = 2;
const ICMPV6: u8 = 58;
const HOP_BY_HOP: u8 = 0;

const IGMP_V1_REPORT: u8 = 0x12;
const IGMP_V2_REPORT: u8 = 0x16;
const IGMP_V2_LEAVE: u8 = 0x17;
const IGMP_V3_REPORT: u8 = 0x22;
const MLD_V1_REPORT: u8 = 131;
const MLD_V1_DONE: u8 = 132;
const MLD_V2_REPORT: u8 = 143;

/// True for groups a routed pod network carries between pods: multicast
/// with a scope wider than the link. IPv4's local network control block
/// (224.0.0.0/24: IGMP, mDNS, routing protocols) and IPv6's
/// interface- and link-local scopes (ff01::/16, ff02::/16) stay on the
/// pod's own link, its veth, as RFC 5771 and RFC 4291 define them.
pub fn carried(group: IpAddr) -> bool {
    match group {
        IpAddr::V4(a) => a.is_multicast() && a.octets()[..3] != [224, 0, 0],
        IpAddr::V6(a) => a.is_multicast() && (a.segments()[0] & 0xf) > 2,
    }
}

/// The Ethernet address frames to `group` carry (RFC 1112 section 6.4,
/// RFC 2464 section 7). Meaningful for multicast groups only.
pub fn mac_for(group: IpAddr) -> MacAddr {
    match group {
        IpAddr::V4(a) => {
            let o = a.octets();
            MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
    }
}

/// The destination of the IP packet in `packet` if it is a multicast
/// address (a cheap look at the fixed header, for the receive path; the
/// packet was checked before).
#[inline]
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    let dst = match packet.first()? >> 4 {
        4 => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(packet.get(16..20)?).ok()?,
        )),
        6 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(packet.get(24..40)?).ok()?,
        )),
        _ => return None,
    };
    dst.is_multicast().then_some(dst)
}

/// What a report says of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The host wants the group (some or all of its sources).
    Join,
    /// The host wants none of it.
    Leave,
}

/// A membership report (or leave), checked whole: its group records can
/// be read with [`Report::changes`], which cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    v6: bool,
    kind: Kind<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'a> {
    /// IGMPv1/v2 report or leave, MLDv1 report or done: one group.
    Single(IpAddr, Change),
    /// IGMPv3 or MLDv2: `count` group records in `records`.
    Records { count: u16, records: &'a [u8] },
}

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Icmp,
        what,
    }
}

/// Reads the membership report in `packet` (an IP packet of either
/// family). `Ok(None)` for anything else, queries included (a pod is a
/// host: its queries mean nothing to the node). Errors for a report that
/// is truncated, fails its checksum or names a group that is not
/// multicast.
pub fn membership(packet: &[u8]) -> Result<Option<Report<'_>>> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => igmp(packet),
        Some(6) => mld(packet),
        _ => Ok(None),
    }
}

fn igmp(packet: &[u8]) -> Result<Option<Report<'_>>> {
    let ip = Ipv4Packet::new_checked(packet)?;
    if ip.protocol() != IGMP {
        return Ok(None);
    }
    if ip.is_fragment() {
        return Err(Error::Unsupported {
            layer: Layer::Icmp,
            what: "a fragmented IGMP message",
        });
    }
    let start = ip.header_len();
    let msg = &packet[start..ip.total_len()];
    need(Layer::Icmp, 8, msg.len())?;
    if checksum::checksum(msg) != 0 {
        return Err(Error::Checksum { layer: Layer::Icmp });
    }
    let group = || IpAddr::V4(Ipv4Addr::new(msg[4], msg[5], msg[6], msg[7]));
    let kind = match msg[0] {
        IGMP_V1_REPORT | IGMP_V2_REPORT => Kind::Single(group(), Change::Join),
        IGMP_V2_LEAVE => Kind::Single(group(), Change::Leave),
        IGMP_V3_REPORT => {
            let count = u16::from_be_bytes([msg[6], msg[7]]);
            let records = &msg[8..];
            check_records(records, count, 4)?;
            Kind::Records { count, records }
        }
        _ => return Ok(None),
    };
    finish(false, kind)
}

fn mld(packet: &[u8]) -> Result<Option<Report<'_>>> {
    let ip = Ipv6Packet::new_checked(packet)?;
    let b = &packet[..ip.total_len()];
    let (src, dst) = (ip.src(), ip.dst());
    let mut next = ip.next_header();
    let mut at = crate::ipv6::HEADER_LEN;
    // MLD travels behind a hop-by-hop header (the router alert); one is
    // all RFC 8200 allows, and it comes first.
    if next == HOP_BY_HOP {
        need(Layer::Ipv6, at + 8, b.len())?;
        next = b[at];
        at += 8 * (usize::from(b[at + 1]) + 1);
        need(Layer::Ipv6, at, b.len())?;
    }
    if next != ICMPV6 {
        return Ok(None);
    }
    let msg = &b[at..];
    need(Layer::Icmp, 8, msg.len())?;
    if !matches!(msg[0], MLD_V1_REPORT | MLD_V1_DONE | MLD_V2_REPORT) {
        return Ok(None);
    }
    let sum = Checksum::pseudo_v6(src, dst, ICMPV6, msg.len() as u32)
        .add(msg)
        .finish();
    if sum != 0 {
        return Err(Error::Checksum { layer: Layer::Icmp });
    }
    let kind = match msg[0] {
        MLD_V2_REPORT => {
            let count = u16::from_be_bytes([msg[6], msg[7]]);
            let records = &msg[8..];
            check_records(records, count, 16)?;
            Kind::Records { count, records }
        }
        t => {
            need(Layer::Icmp, 24, msg.len())?;
            let change = if t == MLD_V1_DONE {
                Change::Leave
            } else {
                Change::Join
            };
            Kind::Single(IpAddr::V6(ip6(&msg[8..24])), change)
        }
    };
    finish(true, kind)
}

fn ip6(b: &[u8]) -> Ipv6Addr {
    let a: [u8; 16] = b.try_into().expect("16 bytes");
    Ipv6Addr::from(a)
}

fn finish(v6: bool, kind: Kind<'_>) -> Result<Option<Report<'_>>> {
    let report = Report { v6, kind };
    if report.changes().any(|(g, _)| !g.is_multicast()) {
        return Err(malformed("a group that is not multicast"));
    }
    Ok(Some(report))
}

/// Checks that `count` group records with `addr`-byte addresses fill
/// `records` exactly.
fn check_records(mut records: &[u8], count: u16, addr: usize) -> Result<()> {
    for _ in 0..count {
        need(Layer::Icmp, 4 + addr, records.len())?;
        let len = record_len(records, addr);
        need(Layer::Icmp, len, records.len())?;
        records = &records[len..];
    }
    if !records.is_empty() {
        return Err(malformed("bytes after the last group record"));
    }
    Ok(())
}

/// A group record's length: header, group, sources and auxiliary data.
fn record_len(r: &[u8], addr: usize) -> usize {
    let aux_words = usize::from(r[1]);
    let sources = usize::from(u16::from_be_bytes([r[2], r[3]]));
    4 + addr + sources * addr + aux_words * 4
}

impl Report<'_> {
    /// True for MLD (IPv6), false for IGMP.
    pub fn is_mld(&self) -> bool {
        self.v6
    }

    /// Each group the report is about and what it says of it. A record
    /// that removes some sources only (BLOCK_OLD_SOURCES) changes nothing
    /// at the group's level and is skipped.
    pub fn changes(&self) -> impl Iterator<Item = (IpAddr, Change)> + '_ {
        let addr = if self.v6 { 16 } else { 4 };
        let (single, count, records) = match self.kind {
            Kind::Single(g, c) => (Some((g, c)), 0, &[][..]),
            Kind::Records { count, records } => (None, count, records),
        };
        let mut rest = records;
        let v6 = self.v6;
        let from_records = (0..count).filter_map(move |_| {
            let r = rest;
            let len = record_len(r, addr);
            rest = &r[len..];
            let group = if v6 {
                IpAddr::V6(ip6(&r[4..20]))
            } else {
                IpAddr::V4(Ipv4Addr::new(r[4], r[5], r[6], r[7]))
            };
            let sources = u16::from_be_bytes([r[2], r[3]]);
            record_change(r[0], sources).map(|c| (group, c))
        });
        single.into_iter().chain(from_records)
    }
}

/// RFC 3376 section 4.2.12 (and RFC 3810 section 5.2.12) record types, read
/// at the group's level.
fn record_change(kind: u8, sources: u16) -> Option<Change> {
    const MODE_IS_INCLUDE: u8 = 1;
    const MODE_IS_EXCLUDE: u8 = 2;
    const CHANGE_TO_INCLUDE: u8 = 3;
    const CHANGE_TO_EXCLUDE: u8 = 4;
    const ALLOW_NEW_SOURCES: u8 = 5;
    match kind {
        MODE_IS_EXCLUDE | CHANGE_TO_EXCLUDE => Some(Change::Join),
        MODE_IS_INCLUDE | CHANGE_TO_INCLUDE if sources == 0 => Some(Change::Leave),
        MODE_IS_INCLUDE | CHANGE_TO_INCLUDE | ALLOW_NEW_SOURCES => Some(Change::Join),
        _ => None,
    }
}

/// Length of the frame [`write_igmp_query`] writes.
pub const IGMP_QUERY_FRAME_LEN: usize = 14 + 24 + 12;
/// Length of the frame [`write_mld_query`] writes.
pub const MLD_QUERY_FRAME_LEN: usize = 14 + 40 + 8 + 28;

/// Writes an IGMPv3 general query (RFC 3376 section 4.1) from `src` at
/// `src_mac` into `out` as an Ethernet frame to 224.0.0.1: every host on
/// the link answers with its memberships within `max_response_ds` tenths
/// of a second (at most 127). `interval_s` (at most 127) is the querier's
/// interval, which hosts adopt. Returns the frame's length.
pub fn write_igmp_query(
    out: &mut [u8],
    src_mac: MacAddr,
    src: Ipv4Addr,
    max_response_ds: u8,
    interval_s: u8,
) -> Result<usize> {
    let have = out.len();
    let out = out.get_mut(..IGMP_QUERY_FRAME_LEN).ok_or(Error::NoRoom {
        need: IGMP_QUERY_FRAME_LEN,
        have,
    })?;
    out[..6].copy_from_slice(&mac_for(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))).0);
    out[6..12].copy_from_slice(&src_mac.0);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut out[14..];
    ip[..24].copy_from_slice(&[
        0x46, 0xc0, 0, 36, 0, 0, 0, 0, 1, IGMP, 0, 0, 0, 0, 0, 0, 224, 0, 0, 1, 0x94, 4, 0, 0,
    ]);
    ip[12..16].copy_from_slice(&src.octets());
    let c = checksum::checksum(&ip[..24]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let q = &mut ip[24..36];
    q.copy_from_slice(&[
        0x11,
        max_response_ds.min(127),
        0,
        0,
        0,
        0,
        0,
        0,
        2,
        interval_s.min(127),
        0,
        0,
    ]);
    let c = checksum::checksum(q);
    q[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(IGMP_QUERY_FRAME_LEN)
}

/// Writes an MLDv2 general query (RFC 3810 section 5.1) from link-local
/// `src` at `src_mac` into `out` as an Ethernet frame to ff02::1, with the
/// router alert hop-by-hop option MLD requires: hosts answer within
/// `max_response_ms`. Returns the frame's length.
pub fn write_mld_query(
    out: &mut [u8],
    src_mac: MacAddr,
    src: Ipv6Addr,
    max_response_ms: u16,
    interval_s: u8,
) -> Result<usize> {
    let have = out.len();
    let out = out.get_mut(..MLD_QUERY_FRAME_LEN).ok_or(Error::NoRoom {
        need: MLD_QUERY_FRAME_LEN,
        have,
    })?;
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    out[..6].copy_from_slice(&mac_for(IpAddr::V6(all_nodes)).0);
    out[6..12].copy_from_slice(&src_mac.0);
    out[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut out[14..];
    ip[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 36, HOP_BY_HOP, 1]);
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&all_nodes.octets());
    ip[40..48].copy_from_slice(&[ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
    let q = &mut ip[48..76];
    q.fill(0);
    q[0] = 130;
    q[4..6].copy_from_slice(&max_response_ms.to_be_bytes());
    q[24] = 2;
    q[25] = interval_s.min(127);
    let c = Checksum::pseudo_v6(src, all_nodes, ICMPV6, 28)
        .add(q)
        .finish();
    q[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(MLD_QUERY_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn igmp_packet(msg: &[u8]) -> Vec<u8> {
        let mut m = msg.to_vec();
        m[2] = 0;
        m[3] = 0;
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        // IPv4 with the router alert option (IHL 6), as Linux sends it.
        let total = 24 + m.len();
        let mut p = vec![
            0x46, 0xc0, 0, 0, 0, 0, 0x40, 0, 1, IGMP, 0, 0, 10, 244, 0, 5, 224, 0, 0, 22, 0x94, 4,
            0, 0,
        ];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let c = checksum::checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&m);
        p
    }

    fn v3(records: &[(u8, [u8; 4], u16)]) -> Vec<u8> {
        let mut m = vec![IGMP_V3_REPORT, 0, 0, 0, 0, 0];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        for (kind, group, sources) in records {
            m.extend_from_slice(&[*kind, 0]);
            m.extend_from_slice(&sources.to_be_bytes());
            m.extend_from_slice(group);
            for s in 0..*sources {
                m.extend_from_slice(&[10, 0, 0, s as u8]);
            }
        }
        igmp_packet(&m)
    }

    fn changes(p: &[u8]) -> Vec<(IpAddr, Change)> {
        membership(p).unwrap().unwrap().changes().collect()
    }

    fn g4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn igmp_v2_report_and_leave() {
        let p = igmp_packet(&[IGMP_V2_REPORT, 0, 0, 0, 239, 1, 2, 3]);
        assert_eq!(changes(&p), vec![(g4([239, 1, 2, 3]), Change::Join)]);
        let p = igmp_packet(&[IGMP_V2_LEAVE, 0, 0, 0, 239, 1, 2, 3]);
        assert_eq!(changes(&p), vec![(g4([239, 1, 2, 3]), Change::Leave)]);
        // A query is not a report.
        let p = igmp_packet(&[0x11, 100, 0, 0, 0, 0, 0, 0]);
        assert_eq!(membership(&p), Ok(None));
    }

    #[test]
    fn igmp_v3_records_read_at_the_groups_level() {
        let p = v3(&[
            (4, [239, 1, 1, 1], 0), // join (exclude nothing)
            (3, [239, 1, 1, 2], 0), // leave (include nothing)
            (5, [239, 1, 1, 3], 2), // allow two sources: join
            (6, [239, 1, 1, 4], 1), // block one source: no change
            (1, [239, 1, 1, 5], 1), // include one: join
        ]);
        assert_eq!(
            changes(&p),
            vec![
                (g4([239, 1, 1, 1]), Change::Join),
                (g4([239, 1, 1, 2]), Change::Leave),
                (g4([239, 1, 1, 3]), Change::Join),
                (g4([239, 1, 1, 5]), Change::Join),
            ]
        );
    }

    #[test]
    fn bad_reports_are_errors() {
        let good = v3(&[(4, [239, 1, 1, 1], 3)]);
        assert!(membership(&good).unwrap().is_some());
        // Every truncation of the IGMP message (its IP length kept) fails.
        for cut in 1..(good.len() - 24) {
            let mut p = good[..good.len() - cut].to_vec();
            let len = p.len() as u16;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p[10] = 0;
            p[11] = 0;
            let c = checksum::checksum(&p[..24]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(membership(&p).is_err(), "cut {cut}");
        }
        // A flipped bit fails the checksum.
        let mut p = good.clone();
        p[30] ^= 1;
        assert_eq!(membership(&p), Err(Error::Checksum { layer: Layer::Icmp }));
        // A unicast "group".
        let p = igmp_packet(&[IGMP_V2_REPORT, 0, 0, 0, 10, 1, 2, 3]);
        assert!(matches!(membership(&p), Err(Error::Malformed { .. })));
        // A record count larger than the records.
        let mut m = vec![IGMP_V3_REPORT, 0, 0, 0, 0, 0, 0, 9];
        m.extend_from_slice(&[4, 0, 0, 0, 239, 0, 0, 1]);
        assert!(membership(&igmp_packet(&m)).is_err());
    }

    fn mld_packet(msg: &[u8], hop_by_hop: bool) -> Vec<u8> {
        let src: Ipv6Addr = "fd00:244::5".parse().unwrap();
        let dst: Ipv6Addr = "ff02::16".parse().unwrap();
        let mut m = msg.to_vec();
        m[2] = 0;
        m[3] = 0;
        let c = Checksum::pseudo_v6(src, dst, ICMPV6, m.len() as u32)
            .add(&m)
            .finish();
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ext = Vec::new();
        let first = if hop_by_hop {
            // Router alert (MLD), padded to 8 bytes.
            ext.extend_from_slice(&[ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
            HOP_BY_HOP
        } else {
            ICMPV6
        };
        let plen = (ext.len() + m.len()) as u16;
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&plen.to_be_bytes());
        p.extend_from_slice(&[first, 1]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&ext);
        p.extend_from_slice(&m);
        p
    }

    #[test]
    fn mld_v1_and_v2() {
        let group: Ipv6Addr = "ff05::1:3".parse().unwrap();
        let mut v1 = vec![MLD_V1_REPORT, 0, 0, 0, 0, 0, 0, 0];
        v1.extend_from_slice(&group.octets());
        for hbh in [true, false] {
            let p = mld_packet(&v1, hbh);
            assert_eq!(changes(&p), vec![(IpAddr::V6(group), Change::Join)]);
        }
        v1[0] = MLD_V1_DONE;
        let p = mld_packet(&v1, true);
        assert_eq!(changes(&p), vec![(IpAddr::V6(group), Change::Leave)]);
        let mut v2 = vec![MLD_V2_REPORT, 0, 0, 0, 0, 0, 0, 2];
        v2.extend_from_slice(&[4, 0, 0, 0]);
        v2.extend_from_slice(&group.octets());
        v2.extend_from_slice(&[3, 1, 0, 0]); // one word of aux data
        v2.extend_from_slice(&"ff0e::9".parse::<Ipv6Addr>().unwrap().octets());
        v2.extend_from_slice(&[0xaa; 4]);
        let p = mld_packet(&v2, true);
        assert_eq!(
            changes(&p),
            vec![
                (IpAddr::V6(group), Change::Join),
                ("ff0e::9".parse().unwrap(), Change::Leave)
            ]
        );
        let mut bad = p.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(membership(&bad).is_err());
        // An MLD query (130) is not a report.
        let mut q = vec![130, 0, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&[0; 16]);
        assert_eq!(membership(&mld_packet(&q, true)), Ok(None));
    }

    #[test]
    fn queries_are_well_formed() {
        let mut f = [0u8; 128];
        let n = write_igmp_query(
            &mut f,
            MacAddr([0xee; 6]),
            Ipv4Addr::new(169, 254, 1, 1),
            20,
            60,
        )
        .unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.ttl(), ip.protocol(), ip.dst()),
            (1, IGMP, Ipv4Addr::new(224, 0, 0, 1))
        );
        assert_eq!(checksum::checksum(&f[14 + 24..n]), 0);
        // A query is not a report.
        assert_eq!(membership(&f[14..n]), Ok(None));
        let src: Ipv6Addr = "fe80::ecee:eeff:feee:eeee".parse().unwrap();
        let n = write_mld_query(&mut f, MacAddr([0xee; 6]), src, 2000, 60).unwrap();
        let ip = Ipv6Packet::new_checked(&f[14..n]).unwrap();
        assert_eq!(ip.total_len(), n - 14);
        let all: Ipv6Addr = "ff02::1".parse().unwrap();
        let sum = Checksum::pseudo_v6(src, all, ICMPV6, 28)
            .add(&f[14 + 48..n])
            .finish();
        assert_eq!(sum, 0);
        assert_eq!(membership(&f[14..n]), Ok(None));
        assert!(write_mld_query(&mut f[..20], MacAddr([0xee; 6]), src, 1, 1).is_err());
    }

    #[test]
    fn scopes_and_macs() {
        for (g, yes) in [
            ("239.1.2.3", true),
            ("224.0.1.129", true),
            ("224.0.0.251", false),
            ("224.0.0.22", false),
            ("ff05::1:3", true),
            ("ff0e::1", true),
            ("ff02::fb", false),
            ("ff01::1", false),
            ("10.0.0.1", false),
            ("fd00::1", false),
        ] {
            assert_eq!(carried(g.parse().unwrap()), yes, "{g}");
        }
        assert_eq!(
            mac_for("239.129.2.3".parse().unwrap()),
            MacAddr([1, 0, 0x5e, 1, 2, 3])
        );
        assert_eq!(
            mac_for("ff05::1:3".parse().unwrap()),
            MacAddr([0x33, 0x33, 0, 1, 0, 3])
        );
    }
}
