//! A cluster member's identity as the SWIM layer (foca) sees it.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A member: its node name, gossip address and boot number.
///
/// The gossip address is the member's unique address; a restarted node
/// comes back with a larger `boot` (its start time), which wins over the
/// identity it had before, so the cluster sees a rejoin, not a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Node name (the owner of its records).
    pub name: String,
    /// Where it listens for gossip.
    pub addr: SocketAddr,
    /// Start time (ms) or a later renewal of it.
    pub boot: u64,
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // Declared down while alive (a partition, a pause): come back with
        // a newer identity at once.
        Some(Member {
            boot: self.boot + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.boot > adversary.boot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn a_restart_wins_over_the_old_identity() {
        let old = Member {
            name: "n1".into(),
            addr: "10.99.0.1:7947".parse().unwrap(),
            boot: 100,
        };
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&renewed));
        assert_eq!(renewed.addr(), old.addr());
    }
}
