//! Anti-entropy: every `sync_interval_ms` this node sends a random live
//! member a summary of its state (one digest per bucket of owners); where
//! buckets differ, per-owner digests follow, then the records of owners
//! whose digests differ go both ways. Late joiners and healed partitions
//! converge this way; alone, the node keeps knocking on its seeds.

use super::Agent;
use crate::member::Member;
use crate::record::Signed;
use crate::state::fnv;
use crate::wire::{self, Body};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;

impl Agent {
    pub(super) fn on_summary(&mut self, from: SocketAddr, theirs: &[u64]) {
        let (mine, digests) = {
            let sh = self.shared.lock().expect("not poisoned");
            (sh.state.bucket_digests(), sh.state.digests())
        };
        for (i, (a, b)) in mine.iter().zip(theirs).enumerate() {
            if a == b {
                continue;
            }
            let (lo, hi) = crate::state::bucket_range(i);
            let entries: Vec<(u64, u64)> = digests
                .iter()
                .copied()
                .filter(|(h, _)| (lo..=hi).contains(h))
                .collect();
            for body in wire::pack_digests(&entries, lo, hi, true) {
                self.bodies.push((from, body));
            }
        }
    }

    pub(super) fn on_digest(&mut self, from: SocketAddr, d: wire::Digest, now: u64) {
        let theirs: HashMap<u64, u64> = d.entries.iter().copied().collect();
        let (records, mine) = {
            let sh = self.shared.lock().expect("not poisoned");
            let differing: Vec<String> = sh
                .state
                .owners_in(d.lo, d.hi)
                .filter(|(name, digest)| theirs.get(&fnv(name.as_bytes())) != Some(digest))
                .map(|(name, _)| name.to_string())
                .collect();
            let records: Vec<Signed> = differing
                .iter()
                .flat_map(|o| sh.state.records_of(o).collect::<Vec<_>>())
                .collect();
            let mine: Vec<(u64, u64)> = sh
                .state
                .digests()
                .into_iter()
                .filter(|(h, _)| (d.lo..=d.hi).contains(h))
                .collect();
            (records, mine)
        };
        for body in wire::pack_records(records) {
            self.bodies.push((from, body));
        }
        if d.reply {
            for body in wire::pack_digests(&mine, d.lo, d.hi, false) {
                self.bodies.push((from, body));
            }
        }
        let _ = now;
    }

    pub(super) fn live_peer_addrs(&self) -> Vec<SocketAddr> {
        self.peers
            .values()
            .filter(|p| p.up)
            .map(|p| p.member.addr)
            .collect()
    }

    pub(super) fn start_sync(&mut self) {
        let mut targets = self.live_peer_addrs();
        if targets.is_empty() {
            // Alone (or not joined yet): keep knocking on the seeds, which
            // also heals a partition foca gave up on.
            targets = self
                .cfg
                .seeds
                .iter()
                .copied()
                .filter(|s| *s != self.cfg.gossip_addr)
                .collect();
            if !targets.is_empty() && !self.joined {
                let now = self.shared.lock().expect("not poisoned").now_ms;
                let seed = targets[self.rng.random_range(0..targets.len())];
                let dst = Member {
                    name: String::new(),
                    addr: seed,
                    boot: 0,
                };
                self.with_foca(now, |f, rt| f.announce(dst, rt));
            }
        }
        if targets.is_empty() {
            return;
        }
        let to = targets[self.rng.random_range(0..targets.len())];
        let buckets = self
            .shared
            .lock()
            .expect("not poisoned")
            .state
            .bucket_digests();
        let mut body = Vec::new();
        Body::Summary(buckets).encode(&mut body);
        self.bodies.push((to, body));
        let now = self.shared.lock().expect("not poisoned").now_ms;
        let mut probe = Vec::new();
        Body::Probe(self.clock_us(now)).encode(&mut probe);
        self.bodies.push((to, probe.clone()));
        self.send_status(to);
        // A live peer whose status is still unheard (lost, or sent
        // before it knew this node) is asked again: a probe's answer
        // carries it.
        if self.cfg.status.is_some() {
            // At random: a peer of an earlier release never answers.
            let unheard: Vec<SocketAddr> = self
                .peers
                .values()
                .filter(|p| p.up && p.status.is_none() && p.member.addr != to)
                .map(|p| p.member.addr)
                .collect();
            if !unheard.is_empty() {
                let addr = unheard[self.rng.random_range(0..unheard.len())];
                self.bodies.push((addr, probe));
                self.send_status(addr);
            }
        }
    }
}
