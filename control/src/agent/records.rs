//! This node's own records: every write gets the next version of this
//! start's epoch, is signed with the node key if there is one, and goes
//! out as a foca broadcast at once (anti-entropy carries what is too big).

use super::Agent;
use crate::record::{Key, Record, Signed, Value, Version};
use std::net::IpAddr;

impl Agent {
    pub(super) fn mark_changed(&self) {
        self.shared.lock().expect("not poisoned").changed = true;
    }

    pub(super) fn write(&mut self, key: Key, value: Value, now: u64) {
        self.counter += 1;
        let r = Record {
            key,
            version: Version {
                epoch: self.epoch,
                counter: self.counter,
            },
            value,
        };
        let r = match &self.cfg.node_key {
            Some(k) => k.sign(r),
            None => Signed::from(r),
        };
        let bytes = r.encode();
        self.shared.lock().expect("not poisoned").now_ms = now;
        if self.foca.add_broadcast(&bytes).is_err() {
            // Too big to broadcast: it still goes out by anti-entropy.
            let mut sh = self.shared.lock().expect("not poisoned");
            let _ = sh.state.apply(r, now);
        }
        self.shared.lock().expect("not poisoned").changed = true;
        // Push it now rather than waiting for the next probe or gossip.
        self.with_foca(now, |f, rt| f.broadcast(rt));
    }

    /// Hands foca an already encoded record to broadcast as if this node
    /// had written it, skipping this node's own signature checks (tests:
    /// an insider running altered code, gossiping forged records).
    #[cfg(test)]
    pub(crate) fn broadcast_raw(&mut self, bytes: &[u8], now: u64) {
        let trusted = self
            .shared
            .lock()
            .expect("not poisoned")
            .state
            .rules_mut()
            .trusted
            .take();
        self.foca.add_broadcast(bytes).expect("fits a broadcast");
        self.shared
            .lock()
            .expect("not poisoned")
            .state
            .rules_mut()
            .trusted = trusted;
        self.with_foca(now, |f, rt| f.broadcast(rt));
        self.flush();
    }

    /// Publishes (or updates) a local pod endpoint.
    pub fn upsert_endpoint(&mut self, ip: IpAddr, mac: [u8; 6], now_ms: u64) {
        let key = Key::Endpoint {
            owner: self.cfg.name.clone(),
            ip,
        };
        self.write(key, Value::Endpoint { mac }, now_ms);
        self.flush();
    }

    /// Withdraws a local pod endpoint (a tombstone that expires).
    pub fn remove_endpoint(&mut self, ip: IpAddr, now_ms: u64) {
        let key = Key::Endpoint {
            owner: self.cfg.name.clone(),
            ip,
        };
        self.write(key, Value::Deleted, now_ms);
        self.flush();
    }

    /// Publishes that `pods` of this node's pods are in multicast `group`
    /// (0: none left, the record withdrawn).
    pub fn set_group(&mut self, group: IpAddr, pods: u32, now_ms: u64) {
        let key = Key::Group {
            owner: self.cfg.name.clone(),
            group,
        };
        let value = if pods == 0 {
            Value::Deleted
        } else {
            Value::Members { pods }
        };
        self.write(key, value, now_ms);
        self.flush();
    }
}
