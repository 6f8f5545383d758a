//! Outgoing NAT: pods' traffic to destinations outside the cluster (every
//! pool and every node's own address) leaves masqueraded as the node it
//! leaves from, as Calico's `natOutgoing` and Flannel's `ip-masq` do; pod to
//! pod and pod to node never are.
//!
//! The rules live in an nftables table of weft's own, `inet weft`, written
//! through nft's JSON interface (the `nftables` crate: typed objects, one
//! `nft -j -f -` per change). Every change replaces the whole table in one
//! transaction (add, delete, add again, then its sets, chain and rules), so
//! the kernel holds either the old table or the new one, never a mix, and a
//! restart leaves exactly one copy. Connections already translated keep
//! their conntrack entries across a replacement.
//!
//! ```text
//! table inet weft {
//!   set masq-v4 { type ipv4_addr; flags interval; elements = { pools with NAT on } }
//!   set cluster-v4 { type ipv4_addr; flags interval; elements = { every pool, every node } }
//!   (the same for IPv6)
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr @masq-v4 ip daddr != @cluster-v4 masquerade
//!     ip6 saddr @masq-v6 ip6 daddr != @cluster-v6 masquerade } }
//! ```

use super::{kerr, KernelError};
use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The name of weft's nftables table (family `inet`).
pub const TABLE: &str = "weft";

/// The nft program: `WEFT_NFT` if set (tests point it elsewhere), else
/// `nft` from PATH, else from the usual sbin directories (weftd may run
/// with an empty environment).
pub(crate) fn program() -> String {
    if let Ok(p) = std::env::var("WEFT_NFT") {
        return p;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| std::path::Path::new(d).join("nft"))
        .find(|p| p.is_file());
    found.map_or_else(|| "nft".into(), |p| p.display().to_string())
}

/// What the NAT table should say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatPlan {
    /// Sources to masquerade: the pools with outgoing NAT on.
    pub masquerade: BTreeSet<IpNet>,
    /// Destinations inside the cluster, never masqueraded: every pool and
    /// every node's own addresses.
    pub cluster: BTreeSet<IpNet>,
}

fn v4(net: &IpNet) -> bool {
    matches!(net.addr(), IpAddr::V4(_))
}

fn elements(nets: impl Iterator<Item = IpNet>) -> Vec<Expression<'static>> {
    nets.map(|n| {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(Cow::Owned(n.network().to_string()))),
            len: u32::from(n.prefix_len()),
        }))
    })
    .collect()
}

fn set(name: &str, family_v4: bool, nets: &BTreeSet<IpNet>) -> NfListObject<'static> {
    let elem = elements(nets.iter().filter(|n| v4(n) == family_v4).copied());
    NfListObject::Set(Box::new(Set {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name.to_string()),
        set_type: SetTypeValue::Single(if family_v4 {
            SetType::Ipv4Addr
        } else {
            SetType::Ipv6Addr
        }),
        flags: Some([SetFlag::Interval].into_iter().collect()),
        elem: (!elem.is_empty()).then(|| Cow::Owned(elem)),
        ..Set::default()
    }))
}

fn addr_match(
    proto: &'static str,
    field: &'static str,
    op: Operator,
    set: &str,
) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: Cow::Borrowed(proto),
                field: Cow::Borrowed(field),
            },
        ))),
        right: Expression::String(Cow::Owned(format!("@{set}"))),
        op,
    })
}

impl NatPlan {
    /// The table as one transaction that replaces whatever is there.
    pub fn batch(&self) -> Batch<'static> {
        let table = || {
            NfListObject::Table(Table {
                family: NfFamily::INet,
                name: Cow::Borrowed(TABLE),
                ..Table::default()
            })
        };
        let mut b = Batch::new();
        // add + delete + add: atomic replacement whether or not it existed.
        b.add(table());
        b.delete(table());
        b.add(table());
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            name: Cow::Borrowed("postrouting"),
            _type: Some(NfChainType::NAT),
            hook: Some(NfHook::Postrouting),
            prio: Some(100), // srcnat
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        for (family_v4, proto, suffix) in [(true, "ip", "v4"), (false, "ip6", "v6")] {
            let (masq, cluster) = (format!("masq-{suffix}"), format!("cluster-{suffix}"));
            b.add(set(&masq, family_v4, &self.masquerade));
            b.add(set(&cluster, family_v4, &self.cluster));
            if !self.masquerade.iter().any(|n| v4(n) == family_v4) {
                continue;
            }
            b.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: Cow::Borrowed(TABLE),
                chain: Cow::Borrowed("postrouting"),
                expr: Cow::Owned(vec![
                    addr_match(proto, "saddr", Operator::EQ, &masq),
                    addr_match(proto, "daddr", Operator::NEQ, &cluster),
                    Statement::Masquerade(None),
                ]),
                comment: Some(Cow::Borrowed("weft: pods leaving the cluster")),
                ..Rule::default()
            }));
        }
        b
    }

    /// Writes the table (one atomic transaction), or removes it when no
    /// pool is masqueraded: a NAT chain, even an empty one, turns the
    /// kernel's connection tracking on for every packet the node forwards
    /// (64-byte forwarding ~15 % slower here).
    pub fn apply(&self) -> Result<(), KernelError> {
        if self.masquerade.is_empty() {
            return remove().map(|_| ());
        }
        let nft = program();
        nftables::helper::apply_ruleset_with_args(
            &self.batch().to_nftables(),
            Some(&nft),
            &[] as &[&str],
        )
        .map_err(|e| kerr(format!("write nftables table inet {TABLE} ({nft})"), e))
    }
}

/// Removes weft's table, if there is one (uninstall, or NAT turned off).
/// Returns whether it was there.
pub fn remove() -> Result<bool, KernelError> {
    remove_table("inet", TABLE)
}

/// Removes the table `name` of `family` ("inet", "netdev"), if there is
/// one. Returns whether it was there.
pub(crate) fn remove_table(family: &str, name: &str) -> Result<bool, KernelError> {
    let nft = program();
    let out = match std::process::Command::new(&nft)
        .args(["list", "table", family, name])
        .output()
    {
        Ok(out) => out,
        // No nft on this host: weft cannot have written a table either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(kerr(format!("run {nft}"), e)),
    };
    if !out.status.success() {
        return Ok(false);
    }
    let mut b = Batch::new();
    b.delete(NfListObject::Table(Table {
        family: if family == "netdev" {
            NfFamily::NetDev
        } else {
            NfFamily::INet
        },
        name: Cow::Owned(name.to_string()),
        ..Table::default()
    }));
    nftables::helper::apply_ruleset_with_args(&b.to_nftables(), Some(&nft), &[] as &[&str])
        .map_err(|e| kerr(format!("delete nftables table {family} {name}"), e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_replaced_whole_and_skips_families_without_nat() {
        let plan = NatPlan {
            masquerade: ["10.244.0.0/16".parse().unwrap()].into_iter().collect(),
            cluster: [
                "10.244.0.0/16".parse().unwrap(),
                "fd00:244::/48".parse().unwrap(),
                "10.99.0.2/32".parse().unwrap(),
            ]
            .into_iter()
            .collect(),
        };
        let json = serde_json::to_value(plan.batch().to_nftables()).unwrap();
        let cmds = json["nftables"].as_array().unwrap();
        let verbs: Vec<&str> = cmds
            .iter()
            .map(|c| c.as_object().unwrap().keys().next().unwrap().as_str())
            .collect();
        // add, delete, add the table first: one transaction replaces it.
        assert_eq!(&verbs[..3], ["add", "delete", "add"]);
        let text = json.to_string();
        assert!(text.contains("\"masquerade\""), "{text}");
        // One masquerade rule: IPv6 has no pool with NAT on.
        assert_eq!(text.matches("\"masquerade\"").count(), 1, "{text}");
        assert!(text.contains("10.99.0.2"), "{text}");
        assert!(text.contains("fd00:244::"), "{text}");
    }
}
