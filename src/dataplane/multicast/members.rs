//! This node's group memberships, per pod port, as the pods' reports say:
//! joins and leaves applied, limits enforced, memberships no report has
//! renewed for a while lapsed. Pure bookkeeping (times are milliseconds
//! given by the caller); the multicast thread owns the one instance.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// What a join was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The pod is in as many groups as it may be.
    PodLimit,
    /// The node's pods are in as many groups as they may be.
    NodeLimit,
}

/// A group whose count of member pods on this node changed, and the new
/// count (0: no member left).
pub type Changed = (IpAddr, u32);

/// Memberships by port (the host end's ifindex) and group, each with when
/// it was last reported.
#[derive(Debug, Default)]
pub struct Members {
    ports: HashMap<u32, HashMap<IpAddr, u64>>,
    /// Member pods per group (the sum over ports).
    counts: BTreeMap<IpAddr, u32>,
    max_per_port: usize,
    max_groups: usize,
}

impl Members {
    /// An empty table with its limits.
    pub fn new(max_per_port: u32, max_groups: u32) -> Self {
        Members {
            max_per_port: max_per_port as usize,
            max_groups: max_groups as usize,
            ..Default::default()
        }
    }

    /// Port `port` joined `group` at `now`: a new membership, or a renewed
    /// one. Returns the group's new count if it changed.
    pub fn join(&mut self, port: u32, group: IpAddr, now: u64) -> Result<Option<Changed>, Refused> {
        let groups = self.ports.entry(port).or_default();
        if let Some(seen) = groups.get_mut(&group) {
            *seen = now;
            return Ok(None);
        }
        if groups.len() >= self.max_per_port {
            return Err(Refused::PodLimit);
        }
        if !self.counts.contains_key(&group) && self.counts.len() >= self.max_groups {
            return Err(Refused::NodeLimit);
        }
        groups.insert(group, now);
        let n = self.counts.entry(group).or_default();
        *n += 1;
        Ok(Some((group, *n)))
    }

    /// Port `port` left `group`. Returns the group's new count if it changed.
    pub fn leave(&mut self, port: u32, group: IpAddr) -> Option<Changed> {
        let groups = self.ports.get_mut(&port)?;
        groups.remove(&group)?;
        if groups.is_empty() {
            self.ports.remove(&port);
        }
        Some(self.dec(group))
    }

    fn dec(&mut self, group: IpAddr) -> Changed {
        let n = self.counts.get_mut(&group).map_or(0, |n| {
            *n -= 1;
            *n
        });
        if n == 0 {
            self.counts.remove(&group);
        }
        (group, n)
    }

    /// Every membership of `port` ends (the pod is gone).
    pub fn remove_port(&mut self, port: u32) -> Vec<Changed> {
        let Some(groups) = self.ports.remove(&port) else {
            return Vec::new();
        };
        groups.into_keys().map(|g| self.dec(g)).collect()
    }

    /// Memberships last reported before `cutoff` lapse.
    pub fn expire(&mut self, cutoff: u64) -> Vec<Changed> {
        let mut lapsed = Vec::new();
        for (port, groups) in &self.ports {
            for (g, seen) in groups {
                if *seen < cutoff {
                    lapsed.push((*port, *g));
                }
            }
        }
        lapsed
            .into_iter()
            .filter_map(|(port, g)| self.leave(port, g))
            .collect()
    }

    /// The ports with memberships.
    pub fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports.keys().copied()
    }

    /// Member ports per group, for the data path.
    pub fn by_group(&self) -> HashMap<IpAddr, Vec<u32>> {
        let mut out: HashMap<IpAddr, Vec<u32>> = HashMap::new();
        for (port, groups) in &self.ports {
            for g in groups.keys() {
                out.entry(*g).or_default().push(*port);
            }
        }
        for ports in out.values_mut() {
            ports.sort_unstable();
        }
        out
    }

    /// Member pods per group.
    pub fn counts(&self) -> &BTreeMap<IpAddr, u32> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_follow_joins_leaves_and_ports_going() {
        let mut m = Members::new(8, 8);
        assert_eq!(m.join(1, g("239.1.1.1"), 0), Ok(Some((g("239.1.1.1"), 1))));
        assert_eq!(m.join(2, g("239.1.1.1"), 0), Ok(Some((g("239.1.1.1"), 2))));
        // A renewed report changes no count.
        assert_eq!(m.join(2, g("239.1.1.1"), 5), Ok(None));
        assert_eq!(m.leave(1, g("239.1.1.1")), Some((g("239.1.1.1"), 1)));
        // Leaving a group one is not in changes nothing.
        assert_eq!(m.leave(1, g("239.1.1.1")), None);
        m.join(2, g("ff05::3"), 0).unwrap();
        let mut gone = m.remove_port(2);
        gone.sort();
        assert_eq!(gone, vec![(g("239.1.1.1"), 0), (g("ff05::3"), 0)]);
        assert!(m.counts().is_empty());
        assert!(m.by_group().is_empty());
    }

    #[test]
    fn limits_per_pod_and_per_node() {
        let mut m = Members::new(2, 3);
        m.join(1, g("239.0.0.1"), 0).unwrap();
        m.join(1, g("239.0.0.2"), 0).unwrap();
        assert_eq!(m.join(1, g("239.0.0.3"), 0), Err(Refused::PodLimit));
        m.join(2, g("239.0.0.3"), 0).unwrap();
        assert_eq!(m.join(2, g("239.0.0.4"), 0), Err(Refused::NodeLimit));
        // A group already carried is no new group for the node.
        assert!(m.join(3, g("239.0.0.1"), 0).is_ok());
        assert_eq!(m.by_group()[&g("239.0.0.1")], vec![1, 3]);
    }

    #[test]
    fn unrenewed_memberships_lapse() {
        let mut m = Members::new(8, 8);
        m.join(1, g("239.0.0.1"), 100).unwrap();
        m.join(2, g("239.0.0.1"), 100).unwrap();
        m.join(2, g("239.0.0.1"), 900).unwrap();
        assert_eq!(m.expire(500), vec![(g("239.0.0.1"), 1)]);
        assert_eq!(m.ports().collect::<Vec<_>>(), vec![2]);
        assert_eq!(m.expire(1000), vec![(g("239.0.0.1"), 0)]);
    }
}
