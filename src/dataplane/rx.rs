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
use encap::segment::InPlaceRun;
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

/// Wire → pod over VXLAN for the one datagram at `buf[range]` (whose
/// outer header carried `outer_ecn`) from `peer`, with no I/O: checked
/// (VNI, flags), decapsulated in place (RFC 6040 applied to the inner ECN
/// field) and its inner source checked against `peer`'s blocks. Returns
/// the inner packet's range in `buf`. What weftd does for every datagram,
/// and what the pipeline bench measures.
pub fn accept_vxlan(
    dec: &VxlanDecap,
    snap: &fdb::Snapshot,
    peer: &NodeId,
    buf: &mut [u8],
    range: std::ops::Range<usize>,
    outer_ecn: Ecn,
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
    let src = IpPacket::new_checked(&buf[inner.clone()])
        .map_err(|_| DropReason::BadVxlan)?
        .src();
    if !snap.may_send_from(peer, src) {
        return Err(DropReason::SpoofedInner);
    }
    Ok(inner)
}

impl Worker {
    /// Delivers an accepted inner packet at `buf[start..end]` (with
    /// [`EMIT_HEADROOM`] free in front of it) to its pod.
    pub(super) fn deliver_checked(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        start: usize,
        end: usize,
    ) {
        match self.attach.emit(snap, buf, start, end, VirtioNetHdr::NONE) {
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
        let Ok(src) = IpPacket::new_checked(&buf[range.clone()]).map(|p| p.src()) else {
            return self.counters.dropped(DropReason::BadIpip);
        };
        if !snap.may_send_from(peer, src) {
            return self.counters.dropped(DropReason::SpoofedInner);
        }
        accepted.push(range);
    }

    /// Writes accepted inner packets to the TUN (or pods' veths): in-order
    /// TCP segments of one flow, and equal-sized datagrams of one UDP flow
    /// (when `udp_runs` is on), become one super-packet and one write (GRO)
    /// — its headers built in `merged`, its payloads gathered from where
    /// they were received, with no copy; anything else goes alone. A UDP
    /// super-packet the attachment refuses (a kernel without USO there)
    /// turns `udp_runs` off for good and its datagrams go alone.
    pub(super) fn deliver_batch(
        &self,
        snap: &fdb::Snapshot,
        buf: &mut [u8],
        inners: &[std::ops::Range<usize>],
        delivery: &mut Delivery,
    ) {
        let Delivery { merged, udp_runs } = delivery;
        let mut k = 0;
        while k < inners.len() {
            if inners[k].len() > self.settings.overlay_mtu {
                self.deliver_oversized(snap, buf, inners[k].clone());
                k += 1;
                continue;
            }
            let first_at = k;
            // A lone datagram (the last of the batch) has nothing to merge
            // with: it goes as it came, its checksum left to the pod.
            let merge_udp = *udp_runs && k + 1 < inners.len();
            let Ok((mut run, first)) = InPlaceRun::start(
                &mut merged[EMIT_HEADROOM..],
                &buf[inners[k].clone()],
                merge_udp,
            ) else {
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

    /// Answers an ARP request that arrived inside VXLAN (from a Linux vxlan
    /// peer resolving a weft gateway or pod address) from fdb, instead of
    /// flooding it: the address's block owner's VTEP MAC, or this node's.
    /// The reply (VXLAN header + frame) is written into `out`.
    pub(super) fn arp(
        &self,
        snap: &fdb::Snapshot,
        peer: &NodeId,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Arp {
        let h = encap::vxlan::HEADER_LEN;
        let Ok(vxlan) = encap::vxlan::VxlanHeader::new_checked(datagram) else {
            return Arp::Pass;
        };
        if vxlan.vni() != self.settings.vni || !encap::arp::is_arp(vxlan.payload()) {
            return Arp::Pass;
        }
        let Ok(req) = encap::arp::parse_request(vxlan.payload()) else {
            self.counters.dropped(DropReason::BadVxlan);
            return Arp::Handled;
        };
        let answer = match snap.owner_of(IpAddr::V4(req.target_ip)) {
            Some(owner) if owner == peer => return Arp::Handled, // its own
            Some(owner) if owner == snap.local_node() => self.settings.local_mac,
            Some(owner) => match snap.node(owner) {
                Some(e) => MacAddr(e.value.vtep_mac.0),
                None => return Arp::Handled,
            },
            None => {
                self.counters.dropped(DropReason::NoRoute);
                return Arp::Handled;
            }
        };
        if encap::vxlan::write_header(&mut out[..h], self.settings.vni).is_err() {
            return Arp::Handled;
        }
        match encap::arp::write_reply(&mut out[h..], &req, answer) {
            Ok(n) => Arp::Reply(h + n),
            Err(_) => Arp::Handled,
        }
    }
}

/// What to do with a datagram that may carry ARP.
pub(super) enum Arp {
    /// Not ARP: decapsulate as usual.
    Pass,
    /// ARP, dropped (counted) or not ours to answer.
    Handled,
    /// ARP, answered: this many bytes of reply to send back.
    Reply(usize),
}
