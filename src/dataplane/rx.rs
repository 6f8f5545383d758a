//! Underlay → pods: a datagram (VXLAN) or packet (IP-in-IP) is checked
//! (sender a known node, VNI ours, inner source in the sender's blocks),
//! decapsulated in place, and delivered: in-order TCP segments and
//! equal-sized UDP datagrams of one flow are coalesced into one
//! super-packet and one write, payloads left where they were received.
//! ARP requests inside VXLAN are answered from fdb.
//!
//! The walk: [`accept_vxlan`] | `accept_ipip` → `deliver_batch`
//! → `Attachment::emit_gathered` (or `deliver_checked` /
//! `deliver_oversized` for what goes alone).

use super::counters::DropReason;
use super::{Worker, EMIT_HEADROOM, MAX_RUN};
use encap::ecn::Ecn;
use encap::segment::{InPlaceRun, RunRules};
use encap::virtio::VirtioNetHdr;
use encap::vxlan::VxlanDecap;
use encap::{IpPacket, MacAddr};
use fdb::{NodeId, Reader};
use std::io::IoSlice;
use std::net::IpAddr;

/// What delivering to pods keeps from one batch to the next.
pub(super) struct Delivery {
    /// Headers of coalesced super-packets are built here (their payloads
    /// stay where they were received).
    pub merged: Vec<u8>,
    /// Whether datagrams of a UDP flow are merged into USO super-packets
    /// (off when the attachment cannot take them).
    pub udp_runs: bool,
}

/// The inner source and destination of the last packet of a receive that
/// passed the address checks (source in the sender's blocks, destination
/// this node's), so the segments of one flow that follow it skip the two
/// prefix lookups. It holds for one sender and one snapshot (a newer
/// snapshot forgets it): start a fresh one for each receive (a GRO train
/// comes from one sender); IP-in-IP batches mix senders and call
/// `switch_sender` for each packet.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassedChecks {
    /// Snapshot sequence number, inner source, inner destination.
    last: Option<(u64, IpAddr, IpAddr)>,
    /// The sender it holds for, where a batch mixes senders.
    sender: Option<IpAddr>,
}

impl PassedChecks {
    /// Forgets what passed unless it came from `sender` too.
    fn switch_sender(&mut self, sender: IpAddr) {
        if self.sender != Some(sender) {
            *self = PassedChecks {
                last: None,
                sender: Some(sender),
            };
        }
    }

    /// The address checks for an inner packet from `peer`: `Ok` or the
    /// reason to drop it, remembered when it passes.
    #[inline]
    fn check(
        &mut self,
        snap: &fdb::Snapshot,
        peer: &NodeId,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(), DropReason> {
        if self.last == Some((snap.seq(), src, dst)) {
            return Ok(());
        }
        if !snap.may_send_from(peer, src) {
            return Err(DropReason::SpoofedInner);
        }
        if !for_this_node(snap, dst) {
            return Err(DropReason::NotForThisNode);
        }
        self.last = Some((snap.seq(), src, dst));
        Ok(())
    }
}

/// Wire → pod over VXLAN for the one datagram at `buf[range]` (whose
/// outer header carried `outer_ecn`) from `peer`, with no I/O: checked
/// (VNI, flags), decapsulated in place (RFC 6040 applied to the inner ECN
/// field), its inner source checked against `peer`'s blocks and its inner
/// destination against this node's blocks and addresses (`passed`: what the
/// datagrams before it in the same receive passed). Returns the inner
/// packet's range in `buf`. What weftd does for every datagram, and what
/// the pipeline bench measures.
pub fn accept_vxlan(
    dec: &VxlanDecap,
    snap: &fdb::Snapshot,
    peer: &NodeId,
    buf: &mut [u8],
    range: std::ops::Range<usize>,
    outer_ecn: Ecn,
    passed: &mut PassedChecks,
) -> Result<std::ops::Range<usize>, DropReason> {
    let from = range.start;
    let inner = dec
        .decap_payload(&mut buf[range], outer_ecn)
        .map_err(|e| match e {
            encap::Error::WrongVni { .. } => DropReason::WrongVni,
            encap::Error::EcnCeOverNotEct => DropReason::EcnDrop,
            _ => DropReason::BadVxlan,
        })?;
    let inner = from + inner.inner.start..from + inner.inner.end;
    let ip = IpPacket::new_checked(&buf[inner.clone()]).map_err(|_| DropReason::BadVxlan)?;
    passed.check(snap, peer, ip.src(), ip.dst())?;
    Ok(inner)
}

/// Whether the inner TCP and UDP checksums of a VXLAN receive from `from`
/// of `datagrams` datagrams still need verifying before their segments are
/// merged: not where the outer UDP checksum covered the same bytes and the
/// kernel checked it. A GRO train (more than one datagram) always had one:
/// the kernel merges only datagrams that carry a checksum (as UDP GSO
/// sends only such), and checks it before merging. Over IPv6 the kernel
/// drops a datagram without one before weftd sees it (weft never sets
/// `UDP_NO_CHECK6_RX`). A lone IPv4 datagram may carry none (a Linux
/// vxlan peer's default): its inner checksums are verified.
pub fn inner_checksums_need_verifying(from: IpAddr, datagrams: usize) -> bool {
    // An IPv4-mapped sender came over IPv4 (a socket bound to `::`).
    datagrams < 2 && from.to_canonical().is_ipv4()
}

/// The receive path's destination check, for both tunnels: this node's
/// blocks and addresses, or a group the cluster carries (handed to this
/// node's member pods in `deliver_batch`, never onwards).
#[inline]
fn for_this_node(snap: &fdb::Snapshot, dst: IpAddr) -> bool {
    snap.is_for_this_node(dst) || encap::group::carried(dst)
}

impl Worker {
    /// Delivers an accepted inner packet at `buf[start..end]` (with
    /// [`EMIT_HEADROOM`] free in front of it) to its pod. A transport
    /// checksum its sender left for a NIC to finish (a Linux vxlan node on
    /// an underlay that finishes nothing) goes with a header asking the
    /// receiving kernel to finish it.
    pub(super) fn deliver_checked(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        start: usize,
        end: usize,
    ) {
        let hdr = match encap::segment::partial_checksum(&buf[start..end]) {
            Some((csum_start, csum_offset)) => {
                VirtioNetHdr::needs_checksum(csum_start, csum_offset)
            }
            None => VirtioNetHdr::NONE,
        };
        match self.attach.emit(snap, buf, start, end, hdr) {
            Ok(()) => {
                self.counters.delivered(1, (end - start) as u64);
            }
            Err(why) => self.counters.dropped(why),
        }
    }

    /// Checks one IP-in-IP packet at `buf[at..at + n]` (outer header
    /// included) and records its inner packet's range if it is acceptable.
    pub(super) fn accept_ipip(
        &self,
        buf: &mut [u8],
        at: usize,
        n: usize,
        reader: &mut Reader,
        accepted: &mut Vec<std::ops::Range<usize>>,
        passed: &mut PassedChecks,
    ) {
        let packet = &mut buf[at..at + n];
        let d = match encap::ipip::decap(packet) {
            Ok(d) => d,
            Err(encap::Error::EcnCeOverNotEct) => {
                return self.counters.dropped(DropReason::EcnDrop)
            }
            Err(_) => return self.counters.dropped(DropReason::BadIpip),
        };
        let (from, _) = d.outer_addrs(packet);
        let snap = reader.load();
        let Some(peer) = snap.node_at(from) else {
            return self.counters.dropped(DropReason::UnknownSource);
        };
        let range = at + d.inner.start..at + d.inner.end;
        let Ok(ip) = IpPacket::new_checked(&buf[range.clone()]) else {
            return self.counters.dropped(DropReason::BadIpip);
        };
        passed.switch_sender(from);
        match passed.check(snap, peer, ip.src(), ip.dst()) {
            Ok(()) => accepted.push(range),
            Err(why) => self.counters.dropped(why),
        }
    }

    /// Writes accepted inner packets to the TUN (or pods' veths): in-order
    /// TCP segments of one flow, and equal-sized datagrams of one UDP flow
    /// (when `udp_runs` is on), become one super-packet and one write (GRO)
    /// — its headers built in `merged`, its payloads gathered from where
    /// they were received, with no copy, each segment's checksum verified
    /// first when `verify` ([`inner_checksums_need_verifying`]); anything
    /// else goes alone. A UDP
    /// super-packet the attachment refuses (a kernel without USO there)
    /// turns `udp_runs` off for good and its datagrams go alone.
    pub(super) fn deliver_batch(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        inners: &[std::ops::Range<usize>],
        delivery: &mut Delivery,
        verify: bool,
    ) {
        let Delivery { merged, udp_runs } = delivery;
        let mut k = 0;
        while k < inners.len() {
            if encap::group::destination(&buf[inners[k].clone()]).is_some() {
                self.deliver_to_group(buf, inners[k].clone());
                k += 1;
                continue;
            }
            if inners[k].len() > self.settings.overlay_mtu {
                self.deliver_oversized(snap, buf, inners[k].clone());
                k += 1;
                continue;
            }
            let first_at = k;
            // A lone datagram (the last of the batch) has nothing to merge
            // with: it goes as it came, its checksum left to the pod.
            let merge_udp = *udp_runs && k + 1 < inners.len();
            let rules = RunRules {
                udp: merge_udp,
                verify,
            };
            let Ok((mut run, first)) =
                InPlaceRun::start(&mut merged[EMIT_HEADROOM..], &buf[inners[k].clone()], rules)
            else {
                self.deliver_checked(snap, buf, inners[k].start, inners[k].end);
                k += 1;
                continue;
            };
            let udp = matches!(run, InPlaceRun::Udp(_));
            let buf_ro: &[u8] = buf;
            let mut pieces = [IoSlice::new(&[]); 1 + MAX_RUN];
            let base = inners[k].start;
            pieces[1] = IoSlice::new(&buf_ro[base + first.start..base + first.end]);
            let mut n = 2;
            k += 1;
            while k < inners.len() && n < pieces.len() {
                let base = inners[k].start;
                match run.push(&buf_ro[inners[k].clone()]) {
                    Ok(r) => {
                        pieces[n] = IoSlice::new(&buf_ro[base + r.start..base + r.end]);
                        n += 1;
                        k += 1;
                    }
                    Err(encap::segment::Refusal::BadChecksum) => {
                        self.counters.dropped(DropReason::BadInnerChecksum);
                        k += 1;
                    }
                    Err(_) => break,
                }
            }
            let done = run.finish();
            let hdr = VirtioNetHdr::for_coalesced(&done);
            let span = (EMIT_HEADROOM, EMIT_HEADROOM + done.header_len);
            match self
                .attach
                .emit_gathered(snap, merged, span, &mut pieces[..n], hdr)
            {
                Ok(()) => self.count_delivered(&done),
                Err(DropReason::IoError) if udp && done.segments > 1 => {
                    tracing::warn!(
                        "writing a UDP super-packet to pods failed (no USO on this kernel?): \
                         UDP datagrams are delivered one by one from now on"
                    );
                    *udp_runs = false;
                    // All of the run's datagrams go alone (one refused for
                    // a bad checksum, already counted, now meets the kernel's
                    // check and is dropped there).
                    for r in &inners[first_at..k] {
                        self.deliver_checked(snap, buf, r.start, r.end);
                    }
                }
                Err(why) => self.counters.dropped(why),
            }
        }
    }

    /// A multicast packet from another node at `buf[range]`: to this
    /// node's member pods, never onwards.
    fn deliver_to_group(&self, buf: &mut [u8], range: std::ops::Range<usize>) {
        let Some(m) = &self.multicast else {
            return self.counters.dropped(DropReason::NotForThisNode);
        };
        match m.deliver(buf, range.start, range.end) {
            Ok(n) => {
                self.counters.delivered(1, range.len() as u64);
                super::counters::WorkerCounters::add(&self.counters.multicast_local, n as u64);
            }
            Err(why) => self.counters.dropped(why),
        }
    }

    /// Counts a super-packet written to pods as the packets it carries.
    pub(super) fn count_delivered(&self, done: &encap::segment::Coalesced) {
        if done.segments > 1 {
            super::counters::WorkerCounters::add(&self.counters.rx_super_packets, 1);
        }
        self.counters.delivered(
            done.segments as u64,
            (done.len + (done.segments - 1) * done.header_len) as u64,
        );
    }

    /// An inner packet at `buf[range]` longer than the overlay MTU. A TCP
    /// super-packet the kernel's GRO built on the underlay
    /// (`encap::segment::merged_by_kernel`) goes to its pod as one. Its
    /// segment size is not known (a raw socket does not say what GRO
    /// merged); it is set for segments of 1,280 bytes (or the overlay MTU
    /// if smaller), which any pod link IPv6 can run on takes: the node's
    /// kernel checks a forwarded super-packet's segments against the pod
    /// route's MTU (the CNI plugin's, 1,450 by default, below IP-in-IP's
    /// overlay MTU). The receiving pod gets the packet whole either way.
    /// Anything else goes alone, as it came (a peer with a larger MTU):
    /// the node's kernel forwards it if the pod's route allows or answers
    /// "too big". UDP merged by GRO forwarding on the underlay NIC (off by
    /// default) cannot be cut back, its datagram boundaries lost; the
    /// pod's kernel drops it for its partial checksum.
    fn deliver_oversized(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        range: std::ops::Range<usize>,
    ) {
        let mtu = self.settings.overlay_mtu.min(1280);
        let done = match encap::segment::merged_by_kernel(&mut buf[range.clone()], mtu) {
            Ok(done) => done,
            Err(encap::segment::Refusal::BadChecksum) => {
                return self.counters.dropped(DropReason::BadInnerChecksum)
            }
            Err(_) => return self.deliver_checked(snap, buf, range.start, range.end),
        };
        let hdr = VirtioNetHdr::for_coalesced(&done);
        match self.attach.emit(snap, buf, range.start, range.end, hdr) {
            Ok(()) => {
                super::counters::WorkerCounters::add(&self.counters.rx_underlay_gro, 1);
                self.count_delivered(&done);
            }
            Err(why) => self.counters.dropped(why),
        }
    }
}

/// The longest reply [`resolve_in_vxlan`] writes: a VXLAN header and an
/// ARP reply or a neighbour advertisement.
pub const RESOLUTION_REPLY_MAX: usize = encap::vxlan::HEADER_LEN
    + if encap::arp::FRAME_LEN > encap::nd::ADVERT_FRAME_LEN {
        encap::arp::FRAME_LEN
    } else {
        encap::nd::ADVERT_FRAME_LEN
    };

/// What a VXLAN datagram that may carry address resolution gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Not ARP or a neighbour solicitation: decapsulate as usual.
    Pass,
    /// Address resolution, not ours to answer (the asker's own address,
    /// duplicate address detection).
    Ignored,
    /// Answered: this many bytes of reply (VXLAN header and frame) to send
    /// back; `nd` for a neighbour advertisement, else an ARP reply.
    Reply {
        /// Reply length.
        len: usize,
        /// A neighbour advertisement (IPv6), not an ARP reply.
        nd: bool,
    },
}

/// Answers address resolution that arrived inside VXLAN from `peer` (a
/// Linux vxlan node resolving a weft pod or gateway address: an ARP
/// request, or an IPv6 neighbour solicitation) from fdb instead of
/// flooding it: the MAC is the VTEP MAC of the node whose block holds the
/// address (this node's own for its blocks). The reply (VXLAN header and
/// frame) is written into `out`. An address in no known block is dropped
/// (`no_route`); a malformed request is `bad_vxlan`.
pub fn resolve_in_vxlan(
    settings: &super::Settings,
    snap: &fdb::Snapshot,
    peer: &NodeId,
    datagram: &[u8],
    out: &mut [u8],
) -> Result<Resolution, DropReason> {
    enum Asked {
        Arp(encap::arp::Request),
        Nd(encap::nd::Solicitation),
    }
    let h = encap::vxlan::HEADER_LEN;
    let Ok(vxlan) = encap::vxlan::VxlanHeader::new_checked(datagram) else {
        return Ok(Resolution::Pass);
    };
    if vxlan.vni() != settings.vni {
        return Ok(Resolution::Pass);
    }
    let frame = vxlan.payload();
    let (target, asked) = if encap::arp::is_arp(frame) {
        let req = encap::arp::parse_request(frame).map_err(|_| DropReason::BadVxlan)?;
        (IpAddr::V4(req.target_ip), Asked::Arp(req))
    } else if encap::nd::is_solicitation(frame) {
        let sol = encap::nd::parse_solicitation(frame).map_err(|_| DropReason::BadVxlan)?;
        if sol.asker_ip.is_unspecified() {
            return Ok(Resolution::Ignored); // duplicate address detection
        }
        (IpAddr::V6(sol.target), Asked::Nd(sol))
    } else {
        return Ok(Resolution::Pass);
    };
    let answer = match snap.owner_of(target) {
        Some(owner) if owner == peer => return Ok(Resolution::Ignored), // its own
        Some(owner) if owner == snap.local_node() => settings.local_mac,
        Some(owner) => match snap.node(owner) {
            Some(e) => MacAddr(e.value.vtep_mac.0),
            None => return Ok(Resolution::Ignored),
        },
        None => return Err(DropReason::NoRoute),
    };
    encap::vxlan::write_header(&mut out[..h], settings.vni).map_err(|_| DropReason::IoError)?;
    let (n, nd) = match asked {
        Asked::Arp(req) => (encap::arp::write_reply(&mut out[h..], &req, answer), false),
        // The node that owns the block routes for it: the router flag.
        Asked::Nd(sol) => (
            encap::nd::write_advertisement(&mut out[h..], &sol, answer, true),
            true,
        ),
    };
    let len = h + n.map_err(|_| DropReason::IoError)?;
    Ok(Resolution::Reply { len, nd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdb::{Fdb, Mac, Meta, NodeRecord, Source};
    use std::net::Ipv6Addr;

    const ASKER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x42];

    /// This node (n1), a Linux vxlan peer (n2) and another weft node (n3),
    /// each with an IPv4 and an IPv6 block.
    fn tables() -> (Fdb, super::super::Settings) {
        let local = NodeId::new("n1");
        let fdb = Fdb::new(local.clone(), NodeRecord::default());
        let m = Meta::new(Source::Static, 1);
        fdb.update(|t| {
            t.upsert_block("10.244.0.0/26".parse().unwrap(), local.clone(), m)?;
            t.upsert_block("fd00:244::/64".parse().unwrap(), local.clone(), m)?;
            for (n, k) in [("n2", 1u8), ("n3", 3)] {
                let rec = NodeRecord {
                    underlay_v4: Some([10, 99, 0, k].into()),
                    vtep_mac: Mac([2, 0, 0, 0, 0xbb, k]),
                    ..NodeRecord::default()
                };
                t.upsert_node(NodeId::new(n), rec, m)?;
                t.upsert_block(
                    format!("10.244.{k}.0/26").parse().unwrap(),
                    NodeId::new(n),
                    m,
                )?;
                t.upsert_block(
                    format!("fd00:244:0:{k}::/64").parse().unwrap(),
                    NodeId::new(n),
                    m,
                )?;
            }
            Ok(())
        })
        .unwrap();
        let settings = super::super::Settings {
            vni: encap::vxlan::Vni::new(1).unwrap(),
            port: 4789,
            local_mac: MacAddr([2, 0, 0, 0, 0xbb, 0xaa]),
            overlay_mtu: 1450,
            tunnels: fdb::Families::V4,
            icmp_source_v4: crate::podnet::GATEWAY_V4,
            icmp_source_v6: crate::podnet::GATEWAY_V6,
            busy_poll: std::time::Duration::ZERO,
        };
        (fdb, settings)
    }

    /// A VXLAN datagram (VNI `vni`) carrying a neighbour solicitation from
    /// `asker` for `target`, as Linux sends it.
    fn solicitation(vni: u32, asker: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        use etherparse::{Icmpv6Type, PacketBuilder};
        let mut body = Vec::new();
        body.extend_from_slice(&target.octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&ASKER_MAC);
        let t = target.octets();
        let mut out = vec![0u8; encap::vxlan::HEADER_LEN];
        encap::vxlan::write_header(&mut out, encap::vxlan::Vni::new(vni).unwrap()).unwrap();
        PacketBuilder::ethernet2(ASKER_MAC, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
            .ipv6(
                asker.octets(),
                [
                    0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
                ],
                255,
            )
            .icmpv6(Icmpv6Type::Unknown {
                type_u8: encap::nd::NEIGHBOUR_SOLICITATION,
                code_u8: 0,
                bytes5to8: [0; 4],
            })
            .write(&mut out, &body)
            .unwrap();
        out
    }

    #[test]
    fn neighbour_solicitations_inside_vxlan_are_answered_from_fdb() {
        let (fdb, settings) = tables();
        let snap = fdb.snapshot();
        let peer = NodeId::new("n2");
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let asker = ip("fd00:244:0:1::5");
        let mut out = [0u8; RESOLUTION_REPLY_MAX];
        // A pod on another weft node: that node's VTEP MAC; one of ours: ours.
        for (target, mac) in [
            ("fd00:244:0:3::7", [2, 0, 0, 0, 0xbb, 3]),
            ("fd00:244::9", [2, 0, 0, 0, 0xbb, 0xaa]),
        ] {
            let d = solicitation(1, asker, ip(target));
            let Ok(Resolution::Reply { len, nd: true }) =
                resolve_in_vxlan(&settings, &snap, &peer, &d, &mut out)
            else {
                panic!("{target} not answered");
            };
            let reply = &out[..len];
            let vxlan = encap::vxlan::VxlanHeader::new_checked(reply).unwrap();
            assert_eq!(vxlan.vni().get(), 1);
            // An independent reading of the advertisement.
            let p = etherparse::SlicedPacket::from_ethernet(vxlan.payload()).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
                panic!("ethernet")
            };
            assert_eq!((eth.source(), eth.destination()), (mac, ASKER_MAC));
            let Some(etherparse::NetSlice::Ipv6(v6)) = p.net else {
                panic!("ipv6")
            };
            assert_eq!(v6.header().source_addr(), ip(target));
            assert_eq!(v6.header().destination_addr(), asker);
            let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
                panic!("icmpv6")
            };
            assert_eq!(icmp.type_u8(), encap::nd::NEIGHBOUR_ADVERTISEMENT);
            assert_eq!(&icmp.payload()[..16], &ip(target).octets());
        }
        // Unknown targets dropped and counted; the asker's own block and
        // duplicate address detection are not answered; another VNI and
        // anything else go on to decapsulation.
        let unknown = solicitation(1, asker, ip("fd00:999::1"));
        assert_eq!(
            resolve_in_vxlan(&settings, &snap, &peer, &unknown, &mut out),
            Err(DropReason::NoRoute)
        );
        let own = solicitation(1, asker, ip("fd00:244:0:1::6"));
        let dad = solicitation(1, Ipv6Addr::UNSPECIFIED, ip("fd00:244:0:3::7"));
        for d in [own, dad] {
            assert_eq!(
                resolve_in_vxlan(&settings, &snap, &peer, &d, &mut out),
                Ok(Resolution::Ignored)
            );
        }
        let other_vni = solicitation(2, asker, ip("fd00:244:0:3::7"));
        assert_eq!(
            resolve_in_vxlan(&settings, &snap, &peer, &other_vni, &mut out),
            Ok(Resolution::Pass)
        );
        let mut broken = solicitation(1, asker, ip("fd00:244:0:3::7"));
        let last = broken.len() - 1;
        broken[last] ^= 0xff; // the ICMPv6 checksum no longer adds up
        assert_eq!(
            resolve_in_vxlan(&settings, &snap, &peer, &broken, &mut out),
            Err(DropReason::BadVxlan)
        );
    }

    /// What passed is remembered for the same addresses only, and only for
    /// the same sender and tables: a packet of another source right after a
    /// passing one is judged on its own, a block that moved to another node
    /// is seen at once, and a batch that switches senders forgets.
    #[test]
    fn passed_checks_hold_for_the_same_addresses_sender_and_tables() {
        let (fdb, _) = tables();
        let (n2, n3) = (NodeId::new("n2"), NodeId::new("n3"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (pod_n2, pod_n3, here) = (ip("10.244.1.9"), ip("10.244.3.9"), ip("10.244.0.5"));
        let snap = fdb.snapshot();
        let mut passed = PassedChecks::default();
        assert_eq!(passed.check(&snap, &n2, pod_n2, here), Ok(()));
        let spoofed = passed.check(&snap, &n2, pod_n3, here);
        assert_eq!(spoofed, Err(DropReason::SpoofedInner));
        let transit = passed.check(&snap, &n2, pod_n2, pod_n3);
        assert_eq!(transit, Err(DropReason::NotForThisNode));
        assert_eq!(passed.check(&snap, &n2, pod_n2, here), Ok(()));

        // IP-in-IP: another sender in the same batch starts afresh.
        passed.switch_sender(ip("10.99.0.1"));
        assert_eq!(passed.check(&snap, &n2, pod_n2, here), Ok(()));
        passed.switch_sender(ip("10.99.0.3"));
        let other = passed.check(&snap, &n3, pod_n2, here);
        assert_eq!(other, Err(DropReason::SpoofedInner));

        // n2's block moves to n3: the same addresses from n2 fail now.
        let mut passed = PassedChecks::default();
        assert_eq!(passed.check(&snap, &n2, pod_n2, here), Ok(()));
        let newer = Meta::new(Source::Static, 2);
        fdb.update(|t| t.upsert_block("10.244.1.0/26".parse().unwrap(), n3.clone(), newer))
            .unwrap();
        let moved = passed.check(&fdb.snapshot(), &n2, pod_n2, here);
        assert_eq!(moved, Err(DropReason::SpoofedInner));
    }

    /// Inner checksums are verified unless the outer UDP checksum was there
    /// and checked: a GRO train, or anything over IPv6.
    #[test]
    fn inner_checksums_are_verified_only_where_the_outer_one_may_be_missing() {
        let (v4, v6): (IpAddr, IpAddr) = ("10.99.0.1".parse().unwrap(), "fd99::1".parse().unwrap());
        assert!(inner_checksums_need_verifying(v4, 1));
        assert!(!inner_checksums_need_verifying(v4, 2));
        assert!(!inner_checksums_need_verifying(v6, 1));
        assert!(!inner_checksums_need_verifying(v6, 46));
        let mapped: IpAddr = "::ffff:10.99.0.1".parse().unwrap();
        assert!(inner_checksums_need_verifying(mapped, 1));
    }

    #[test]
    fn only_packets_for_this_node_are_accepted() {
        let (fdb, _) = tables();
        let snap = fdb.snapshot();
        let peer = NodeId::new("n2");
        let vni = encap::vxlan::Vni::new(1).unwrap();
        let enc = encap::vxlan::VxlanEncap::new(vni, MacAddr([2; 6]), MacAddr([4; 6]));
        let dec = VxlanDecap { vni, port: 4789 };
        let from_n2 = |dst: [u8; 4]| {
            let mut inner = Vec::new();
            etherparse::PacketBuilder::ipv4([10, 244, 1, 9], dst, 64)
                .udp(67, 68)
                .write(&mut inner, b"x")
                .unwrap();
            let mut buf = vec![0u8; 64 + inner.len()];
            buf[64..].copy_from_slice(&inner);
            let end = buf.len();
            let at = enc.encap_payload(&mut buf, 64..end).unwrap();
            (buf, at..end)
        };
        let accept = |dst| {
            let (mut buf, range) = from_n2(dst);
            let mut passed = PassedChecks::default();
            accept_vxlan(
                &dec,
                &snap,
                &peer,
                &mut buf,
                range,
                Ecn::NotEct,
                &mut passed,
            )
            .map(|_| ())
        };
        // Pods of this node (the block's last address is one like any other).
        for dst in [[10, 244, 0, 5], [10, 244, 0, 63]] {
            assert_eq!(accept(dst), Ok(()), "{dst:?}");
        }
        // Broadcast, multicast, another node's pod (transit): never.
        for dst in [[255; 4], [224, 0, 0, 251], [10, 244, 3, 5], [192, 0, 2, 1]] {
            assert_eq!(accept(dst), Err(DropReason::NotForThisNode), "{dst:?}");
        }
    }
}
