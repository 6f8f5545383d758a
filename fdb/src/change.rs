//! Change notification: every committed change, once and in order, to each
//! subscriber, with a consistent snapshot to start from or to resynchronise
//! with when the subscriber fell behind.

use crate::snapshot::Snapshot;
use crate::types::{BlockOwner, Endpoint, Entry, Mac, NodeId, NodeRecord};
use core::net::IpAddr;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ipnet::IpNet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What changed. `None` means the entry was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A block's owner.
    Block {
        /// The block.
        prefix: IpNet,
        /// The new owner, or None.
        owner: Option<Entry<BlockOwner>>,
    },
    /// A node record.
    Node {
        /// The node.
        id: NodeId,
        /// The new record, or None.
        record: Option<Entry<NodeRecord>>,
    },
    /// An endpoint.
    Endpoint {
        /// The pod address.
        ip: IpAddr,
        /// The new endpoint, or None.
        endpoint: Option<Entry<Endpoint>>,
    },
    /// A neighbour answer.
    Neighbour {
        /// The address asked about.
        ip: IpAddr,
        /// The MAC that answers, or None.
        mac: Option<Entry<Mac>>,
    },
}

/// One committed change with its sequence number (1, 2, 3, ... without gaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Sequence number.
    pub seq: u64,
    /// What changed.
    pub what: What,
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Event {
    /// The next change.
    Change(Change),
    /// The subscriber fell behind (its queue filled): changes were skipped;
    /// this snapshot holds everything up to its `seq()`, and changes after
    /// it follow.
    Resync(Arc<Snapshot>),
}

pub(crate) struct SubscriberTx {
    pub(crate) tx: Sender<Change>,
    pub(crate) lagged: Arc<AtomicBool>,
}

impl SubscriberTx {
    /// Sends, or marks the subscriber lagged. Returns false once the
    /// subscriber is gone.
    pub(crate) fn offer(&self, change: &Change) -> bool {
        if self.lagged.load(Ordering::Acquire) {
            return true;
        }
        match self.tx.try_send(change.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Drains a lagged subscriber's queue under the writer lock and returns the
/// state that includes everything drained.
pub(crate) type ResyncFn = Arc<dyn Fn(&Receiver<Change>) -> Arc<Snapshot> + Send + Sync>;

/// A subscription: the snapshot it started from, then the changes after it.
pub struct Subscription {
    pub(crate) start: Arc<Snapshot>,
    pub(crate) rx: Receiver<Change>,
    pub(crate) lagged: Arc<AtomicBool>,
    pub(crate) resync: ResyncFn,
}

impl Subscription {
    /// The snapshot the subscription started from: changes received later
    /// all have `seq > start().seq()`.
    pub fn start(&self) -> &Arc<Snapshot> {
        &self.start
    }

    fn lagged_event(&mut self) -> Option<Event> {
        if self.lagged.load(Ordering::Acquire) {
            let snap = (self.resync)(&self.rx);
            self.lagged.store(false, Ordering::Release);
            return Some(Event::Resync(snap));
        }
        None
    }

    /// The next event, if one is ready.
    pub fn try_next(&mut self) -> Option<Event> {
        if let Some(e) = self.lagged_event() {
            return Some(e);
        }
        self.rx.try_recv().ok().map(Event::Change)
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Event> {
        if let Some(e) = self.lagged_event() {
            return Some(e);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(c) => Some(Event::Change(c)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => self.lagged_event(),
        }
    }
}
