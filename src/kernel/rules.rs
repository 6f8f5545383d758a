//! weft's policy-routing rules: traffic from a pod pool to the part of the
//! address space where nodes live looks up weft's table ([`WEFT_TABLE`])
//! first, where remote nodes' own addresses route through the TUN. So a pod's packets to another node travel the
//! overlay (and that node's answer comes back the same way) instead of
//! leaving plain on the underlay with a pod source, which cloud underlays
//! drop and strict reverse-path filters refuse. What the table does not
//! hold falls through to the main table.
//!
//! Each rule names a destination as well as the source ([`Rule`]): a rule
//! that matched every pod's packet cost an extra table lookup per
//! forwarded packet (64-byte pod-to-pod forwarding ~8 % slower here);
//! with a destination, pod-to-pod packets skip weft's table.
//!
//! Rules are found again by their table and priority, so reconciliation
//! (desired against actual, as for routes) keeps what is right across a
//! restart and uninstall removes exactly weft's.

use super::routes::{RTPROT_WEFT, WEFT_TABLE};
use super::{kerr, KernelError, Stale};
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

/// One of weft's rules: `from FROM to TO lookup 87`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// A pod pool.
    pub from: IpNet,
    /// Where nodes' addresses lie (a covering prefix of them).
    pub to: IpNet,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "from {} to {} lookup {WEFT_TABLE}", self.from, self.to)
    }
}

/// Whether `msg` is a rule of weft's (its table and priority).
fn is_weft(msg: &RuleMessage) -> bool {
    let mut table = u32::from(msg.header.table);
    let mut priority = None;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = Some(*p),
            _ => {}
        }
    }
    table == WEFT_TABLE && priority == Some(RULE_PRIORITY)
}

/// The rule `msg` (one of weft's) says, if it has the shape this build
/// writes.
fn parse(msg: &RuleMessage) -> Option<Rule> {
    let (mut source, mut destination) = (None, None);
    for a in &msg.attributes {
        match a {
            RuleAttribute::Source(ip) => source = Some(*ip),
            RuleAttribute::Destination(ip) => destination = Some(*ip),
            _ => {}
        }
    }
    Some(Rule {
        from: IpNet::new(source?, msg.header.src_len).ok()?,
        to: IpNet::new(destination?, msg.header.dst_len).ok()?,
    })
}

impl Rules {
    /// Rules managed through `handle`.
    pub fn new(handle: Handle) -> Self {
        Rules { handle }
    }

    /// weft's rules now in the kernel, with their messages (for
    /// deletion). A rule of weft's table and priority in another shape
    /// (an older build's) is listed too, to be deleted.
    async fn current(&self) -> Result<Vec<(Option<Rule>, RuleMessage)>, KernelError> {
        let mut out = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let mut dump = self.handle.rule().get(v).execute();
            while let Some(msg) = dump.try_next().await.map_err(|e| kerr("dump rules", e))? {
                if is_weft(&msg) {
                    out.push((parse(&msg), msg));
                }
            }
        }
        Ok(out)
    }

    /// weft's rules.
    pub async fn list(&self) -> Result<BTreeSet<Rule>, KernelError> {
        Ok(self
            .current()
            .await?
            .into_iter()
            .filter_map(|(r, _)| r)
            .collect())
    }

    /// Makes weft's rules equal `want` (with [`Stale::Keep`], adds only);
    /// returns (added, removed).
    pub async fn reconcile(
        &self,
        want: &BTreeSet<Rule>,
        stale: Stale,
    ) -> Result<(usize, usize), KernelError> {
        let current = self.current().await?;
        let have: BTreeSet<Rule> = current.iter().filter_map(|(r, _)| *r).collect();
        let mut added = 0;
        for rule in want.difference(&have) {
            let req = self
                .handle
                .rule()
                .add()
                .table_id(WEFT_TABLE)
                .priority(RULE_PRIORITY)
                .action(RuleAction::ToTable);
            let proto = RuleAttribute::Protocol(RouteProtocol::Other(RTPROT_WEFT));
            let done = match (rule.from, rule.to) {
                (IpNet::V4(f), IpNet::V4(t)) => {
                    let mut r = req
                        .v4()
                        .source_prefix(f.network(), f.prefix_len())
                        .destination_prefix(t.network(), t.prefix_len());
                    r.message_mut().attributes.push(proto);
                    r.execute().await
                }
                (IpNet::V6(f), IpNet::V6(t)) => {
                    let mut r = req
                        .v6()
                        .source_prefix(f.network(), f.prefix_len())
                        .destination_prefix(t.network(), t.prefix_len());
                    r.message_mut().attributes.push(proto);
                    r.execute().await
                }
                _ => continue, // mixed families: no such rule
            };
            done.map_err(|e| kerr(format!("add rule {rule}"), e))?;
            added += 1;
        }
        let mut removed = 0;
        for (rule, msg) in current {
            if stale == Stale::Remove && rule.is_none_or(|r| !want.contains(&r)) {
                self.handle
                    .rule()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(|e| kerr("delete a rule of weft's table", e))?;
                removed += 1;
            }
        }
        Ok((added, removed))
    }

    /// Deletes every weft rule (uninstall). Returns how many.
    pub async fn remove_all(&self) -> Result<usize, KernelError> {
        Ok(self.reconcile(&BTreeSet::new(), Stale::Remove).await?.1)
    }
}
