//! The glue to foca (SWIM membership and failure detection): its
//! broadcast handler, which merges the records piggybacked on SWIM
//! traffic; its runtime (timers and sends); and what the agent does with
//! its notifications (members up and down, joining, refuting records about
//! this node from an earlier start).

use super::{Agent, Event, Peer, Shared};
use crate::member::Member;
use crate::record::{Key, Signed, Value, Version};
use crate::state::fnv;
use crate::wire::Body;
use foca::{BroadcastHandler, Foca, Invalidates, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BroadcastKey {
    key: Key,
    version: Version,
}

impl Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.key == other.key && self.version >= other.version
    }
}

pub(super) struct Handler(pub(super) Arc<Mutex<Shared>>);

#[derive(Debug)]
pub(super) struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl BroadcastHandler<Member> for Handler {
    type Key = BroadcastKey;
    type Error = Never;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Member>,
    ) -> Result<Option<BroadcastKey>, Never> {
        let mut sh = self.0.lock().expect("not poisoned");
        let r = match Signed::decode(data) {
            Ok(r) => r,
            Err(e) => {
                sh.counters.drop(e.reason());
                return Ok(None);
            }
        };
        let key = BroadcastKey {
            key: r.record.key.clone(),
            version: r.record.version,
        };
        let result = if sender.is_none() {
            // Our own write, handed in by `Agent::write`.
            let now = sh.now_ms;
            sh.state.apply(r, now)
        } else {
            sh.merge(r)
        };
        match result {
            Ok(true) => Ok(Some(key)),
            Ok(false) => Ok(None),
            Err(e) => {
                sh.counters.drop(e.reason());
                Ok(None)
            }
        }
    }
}

pub(super) struct Runtime<'a> {
    now: u64,
    timers: &'a mut BinaryHeap<Reverse<(u64, u64, Timer<Member>)>>,
    timer_seq: &'a mut u64,
    sends: &'a mut Vec<(SocketAddr, Vec<u8>)>,
    notes: &'a mut Vec<OwnedNotification<Member>>,
}

impl foca::Runtime<Member> for Runtime<'_> {
    fn notify(&mut self, n: foca::Notification<'_, Member>) {
        self.notes.push(n.to_owned());
    }

    fn send_to(&mut self, to: Member, data: &[u8]) {
        let mut body = Vec::with_capacity(data.len() + 1);
        Body::Swim(data).encode(&mut body);
        self.sends.push((to.addr, body));
    }

    fn submit_after(&mut self, event: Timer<Member>, after: Duration) {
        *self.timer_seq += 1;
        let due = self.now + after.as_millis() as u64;
        self.timers.push(Reverse((due, *self.timer_seq, event)));
    }
}

/// True if the SWIM packet's header names a member whose datagram sender id
/// is `sender` (false if the header does not decode: foca would refuse it).
pub(super) fn swim_sender_is(packet: &[u8], sender: u64) -> bool {
    use foca::Codec;
    match PostcardCodec.decode_header(packet) {
        Ok(header) => {
            let header: foca::Header<Member> = header;
            fnv(header.src.name.as_bytes()) == sender
        }
        Err(_) => false,
    }
}

impl Agent {
    pub(super) fn with_foca(
        &mut self,
        now: u64,
        f: impl FnOnce(
            &mut Foca<Member, PostcardCodec, SmallRng, Handler>,
            &mut Runtime<'_>,
        ) -> Result<(), foca::Error>,
    ) {
        self.shared.lock().expect("not poisoned").now_ms = now;
        let mut rt = Runtime {
            now,
            timers: &mut self.timers,
            timer_seq: &mut self.timer_seq,
            sends: &mut self.bodies,
            notes: &mut self.notes,
        };
        if let Err(e) = f(&mut self.foca, &mut rt) {
            let reason = match e {
                foca::Error::DataFromOurselves => "swim_from_ourselves",
                foca::Error::DataTooBig => "swim_too_big",
                foca::Error::MalformedPacket | foca::Error::Decode(_) => "swim_malformed",
                _ => "swim_other",
            };
            self.shared
                .lock()
                .expect("not poisoned")
                .counters
                .drop(reason);
        }
        self.after_foca(now);
    }

    pub(super) fn after_foca(&mut self, now: u64) {
        self.learn_members(now);
        for n in std::mem::take(&mut self.notes) {
            match n {
                OwnedNotification::MemberUp(m) => {
                    self.events.push(Event::MemberUp(m.name.clone()));
                    let known = self.peers.get(&m.name);
                    let rtt_us = known.and_then(|p| p.rtt_us);
                    let status = known.and_then(|p| p.status.clone());
                    self.send_status(m.addr);
                    if status.is_none() && self.cfg.status.is_some() {
                        // Its status may have come before it was known
                        // here: a probe's answer carries it again.
                        let mut probe = Vec::new();
                        Body::Probe(self.clock_us(now)).encode(&mut probe);
                        self.bodies.push((m.addr, probe));
                    }
                    self.peers.insert(
                        m.name.clone(),
                        Peer {
                            member: m,
                            up: true,
                            since: now,
                            rtt_us,
                            status,
                        },
                    );
                    self.mark_changed();
                }
                OwnedNotification::MemberDown(m) => {
                    // Only if it is still the identity we know for the name.
                    if let Some(p) = self.peers.get_mut(&m.name) {
                        if p.member == m && p.up {
                            p.up = false;
                            p.since = now;
                            self.events.push(Event::MemberDown(m.name.clone()));
                            self.mark_changed();
                        }
                    }
                }
                OwnedNotification::Rename(_, m) => {
                    if let Some(p) = self.peers.get_mut(&m.name) {
                        p.member = m;
                    }
                }
                OwnedNotification::Active | OwnedNotification::Rejoin(_) if !self.joined => {
                    self.joined = true;
                    self.events.push(Event::Joined);
                }
                _ => {}
            }
        }
        let refute = std::mem::take(&mut self.shared.lock().expect("not poisoned").to_refute);
        for r in refute {
            if r.version.epoch == self.epoch {
                // Never write below a version seen in our own epoch.
                self.counter = self.counter.max(r.version.counter);
            }
            if let (Key::Claim { block, .. }, Value::Claim { claimed_at }) = (&r.key, &r.value) {
                if self.adopt(*block, *claimed_at, now) {
                    continue;
                }
            }
            // An endpoint from before a restart that this start does not
            // hold is a pod that went away meanwhile: the daemon hands the
            // agent every pod it has (from the CNI plugin's records) before
            // the first datagram, so it is deleted like any other record.
            let keep = {
                let sh = self.shared.lock().expect("not poisoned");
                sh.state.value(&r.key).cloned()
            };
            // Re-assert what this node holds now, or delete what it does
            // not hold any more.
            self.write(r.key, keep.unwrap_or(Value::Deleted), now);
        }
    }

    /// Nodes known from their records but not (yet) from SWIM are handed
    /// to foca as alive, so it probes them: a joiner learns the whole
    /// membership from one anti-entropy exchange instead of waiting for
    /// periodic announces (memberlist's push-pull does the same).
    fn learn_members(&mut self, now: u64) {
        let fresh: Vec<Member> = {
            let mut sh = self.shared.lock().expect("not poisoned");
            if !std::mem::take(&mut sh.new_owners) {
                return;
            }
            sh.state
                .owner_names()
                .filter(|o| *o != self.cfg.name && !self.peers.contains_key(*o))
                .filter_map(|o| {
                    match sh.state.value(&Key::Node {
                        owner: o.to_string(),
                    }) {
                        Some(Value::Node(info)) => Some(Member {
                            name: o.to_string(),
                            addr: info.gossip,
                            boot: info.boot,
                        }),
                        _ => None,
                    }
                })
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        let updates = fresh.into_iter().map(foca::Member::alive);
        // (The nested `after_foca` finds no new owners and handles the
        // MemberUp notifications this produces.)
        self.with_foca(now, |f, rt| f.apply_many(updates, false, rt));
    }
}
