//! weft's policy-routing rules: traffic whose source is a pod pool looks up
//! weft's table ([`WEFT_TABLE`]) first, where remote nodes' own addresses
//! route through the TUN. So a pod's packets to another node travel the
//! overlay (and that node's answer comes back the same way) instead of
//! leaving plain on the underlay with a pod source, which cloud underlays
//! drop and strict reverse-path filters refuse. What the table does not
//! hold falls through to the main table.
//!
//! Rules are found again by their table and priority, so reconciliation
//! (desired against actual, as for routes) keeps what is right across a
//! restart and uninstall removes exactly weft's.

use super::routes::{RTPROT_WEFT, WEFT_TABLE};
use super::{kerr, KernelError};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion};
use std::collections::BTreeSet;

/// The priority of weft's rules: before the main table's (32766).
pub const RULE_PRIORITY: u32 = 87;

/// weft's rules, through one netlink connection.
pub struct Rules {
    handle: Handle,
}

/// The source prefix of a rule that is weft's, if `msg` is one.
fn parse(msg: &RuleMessage) -> Option<IpNet> {
    let mut table = u32::from(msg.header.table);
    let mut priority = None;
    let mut source = None;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::Source(ip) => source = Some(*ip),
            _ => {}
        }
    }
    if table != WEFT_TABLE || priority != Some(RULE_PRIORITY) {
        return None;
    }
    IpNet::new(source?, msg.header.src_len).ok()
}

impl Rules {
    /// Rules managed through `handle`.
    pub fn new(handle: Handle) -> Self {
        Rules { handle }
    }

    /// weft's rules now in the kernel, as source prefixes, with their
    /// messages (for deletion).
    async fn current(&self) -> Result<Vec<(IpNet, RuleMessage)>, KernelError> {
        let mut out = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let mut dump = self.handle.rule().get(v).execute();
            while let Some(msg) = dump.try_next().await.map_err(|e| kerr("dump rules", e))? {
                if let Some(src) = parse(&msg) {
                    out.push((src, msg));
                }
            }
        }
        Ok(out)
    }

    /// weft's rules' source prefixes.
    pub async fn list(&self) -> Result<BTreeSet<IpNet>, KernelError> {
        Ok(self.current().await?.into_iter().map(|(s, _)| s).collect())
    }

    /// Makes weft's rules equal `from` (one rule per source prefix);
    /// returns (added, removed).
    pub async fn reconcile(&self, from: &BTreeSet<IpNet>) -> Result<(usize, usize), KernelError> {
        let current = self.current().await?;
        let have: BTreeSet<IpNet> = current.iter().map(|(s, _)| *s).collect();
        let mut added = 0;
        for src in from.difference(&have) {
            let req = self
                .handle
                .rule()
                .add()
                .table_id(WEFT_TABLE)
                .priority(RULE_PRIORITY)
                .action(RuleAction::ToTable);
            let proto = RuleAttribute::Protocol(RouteProtocol::Other(RTPROT_WEFT));
            let done = match src {
                IpNet::V4(n) => {
                    let mut r = req.v4().source_prefix(n.network(), n.prefix_len());
                    r.message_mut().attributes.push(proto);
                    r.execute().await
                }
                IpNet::V6(n) => {
                    let mut r = req.v6().source_prefix(n.network(), n.prefix_len());
                    r.message_mut().attributes.push(proto);
                    r.execute().await
                }
            };
            done.map_err(|e| kerr(format!("add rule from {src} lookup {WEFT_TABLE}"), e))?;
            added += 1;
        }
        let mut removed = 0;
        for (src, msg) in current {
            if !from.contains(&src) {
                self.handle
                    .rule()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(|e| kerr(format!("delete rule from {src}"), e))?;
                removed += 1;
            }
        }
        Ok((added, removed))
    }

    /// Deletes every weft rule (uninstall). Returns how many.
    pub async fn remove_all(&self) -> Result<usize, KernelError> {
        Ok(self.reconcile(&BTreeSet::new()).await?.1)
    }
}
