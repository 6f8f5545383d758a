//! What the control plane counts: traffic, and refusals by reason.

use std::collections::BTreeMap;

/// Control-plane counters of one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams accepted (authenticated).
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent (sealed).
    pub bytes_sent: u64,
    /// Bytes sent by body kind: SWIM (membership and piggybacked
    /// records), anti-entropy digests, records, and the rest (summaries,
    /// probes, claim checks).
    pub bytes_by_kind: [u64; 4],
    /// Owners (nodes) in the replicated state.
    pub owners: u64,
    /// Records in the replicated state.
    pub records: u64,
    /// Refused datagrams and records, by reason (see `AuthError::reason`,
    /// `RecordError::reason`, `WireError::reason`).
    pub dropped: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// Counts one refusal.
    pub fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// Refusals for `reason`.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}
