//! The kernel path's receive checks, which weftd's workers make on the
//! userspace path: only cluster members may send VXLAN to this node, and a
//! decapsulated packet's source must lie in what its sender owns (its
//! blocks and its own addresses).
//!
//! After decapsulation the kernel has forgotten the outer source, so the
//! second check binds the inner Ethernet source (the sender's VTEP MAC,
//! which every weft node and Flannel-style peer sets) to the inner IP
//! source; and so that no member can use another's VTEP MAC, the
//! underlay's chain binds the VTEP MAC to the outer source first: a
//! verdict map on the outer source picks the member's chain, which
//! compares the inner Ethernet source, read raw 22 bytes into the UDP
//! header (UDP 8, VXLAN 8, destination MAC 6), with the member's MAC, in
//! two words (nft's JSON numbers are 32-bit).
//!
//! An nftables table of weft's own, written through nft's JSON interface
//! like the NAT table (`kernel::nat`). Its chains hook the ingress of the
//! two devices concerned only (the underlay interface, the vxlan device),
//! so the node's other traffic (pods' veths, the host's own) passes no
//! rule at all. The source check is a verdict map on the VTEP MAC (a hash
//! lookup) into a chain per sender with a rule per prefix it owns:
//! measured on one TCP stream here, an `inet` prerouting chain with one
//! concatenated interval set (MAC . address) cost the kernel path ~12 %,
//! this layout ~3 %.
//!
//! The first write after weftd starts replaces the table whole, in one
//! transaction; later changes flush and refill the sets and chains (and
//! delete the chains of senders gone) in one transaction, so the named
//! counters keep counting while weftd runs.
//!
//! ```text
//! table netdev weft-vxlan {
//!   counter not_member {}   counter spoofed_source {}   counter forged_vtep {}
//!   set members-v4 { type ipv4_addr; }          (and -v6)
//!   chain underlay { type filter hook ingress device "eth0" priority -500; policy accept;
//!     ip daddr 10.99.0.1 udp dport 4789 ip saddr != @members-v4 counter name not_member drop
//!     ip daddr 10.99.0.1 udp dport 4789 ip saddr vmap { 10.99.0.2 : goto vtep-0a630002, ... } }
//!   chain vtep-0a630002 { @th,176,32 != 0x7e07b558 counter name forged_vtep drop
//!     @th,208,16 != 0xd9d9 counter name forged_vtep drop }
//!   chain decap { type filter hook ingress device "weft-vxlan" priority -500; policy accept;
//!     ether saddr vmap { 7e:07:b5:58:d9:d9 : goto from-7e07b558d9d9, ... }
//!     counter name spoofed_source drop }
//!   chain from-7e07b558d9d9 { ip saddr 10.244.8.0/26 accept; ip saddr 10.99.0.2 accept;
//!     counter name spoofed_source drop }
//! }
//! ```

use super::vxlan::{show_mac, MacBytes};
use super::{kerr, KernelError};
use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{
    Expression, NamedExpression, Payload, PayloadBase, PayloadField, PayloadRaw, Prefix, SetItem,
    Verdict,
};
use nftables::schema::{
    Chain, Counter, FlushObject, NfCmd, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue,
    Table,
};
use nftables::stmt::{self, JumpTarget, Match, Operator, Statement, VerdictMap};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The table's name (family `inet`).
pub const TABLE: &str = "weft-vxlan";
/// The drop counters, as `weftctl stats` names them.
pub const COUNTERS: [&str; 3] = ["not_member", "spoofed_source", "forged_vtep"];

/// What the guard table should say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardPlan {
    /// The VXLAN UDP port.
    pub port: u16,
    /// The kernel path's device.
    pub device: String,
    /// The underlay interface.
    pub underlay_device: String,
    /// This node's own underlay addresses (where VXLAN to it is sent).
    pub local: BTreeSet<IpAddr>,
    /// Every other node's underlay addresses, with its VTEP MAC.
    pub members: BTreeMap<IpAddr, MacBytes>,
    /// What each remote VTEP MAC may send from (its blocks and its node's
    /// own addresses).
    pub sources: BTreeMap<MacBytes, BTreeSet<IpNet>>,
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn set_ref(name: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(format!("@{name}")))
}

fn prefix(n: &IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(Cow::Owned(n.network().to_string()))),
        len: u32::from(n.prefix_len()),
    }))
}

fn set(name: String, set_type: SetTypeValue<'static>, interval: bool) -> Set<'static> {
    Set {
        family: NfFamily::NetDev,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name),
        set_type,
        flags: interval.then(|| [SetFlag::Interval].into_iter().collect()),
        ..Set::default()
    }
}

fn chain(name: &'static str, device: &str) -> Chain<'static> {
    Chain {
        family: NfFamily::NetDev,
        table: Cow::Borrowed(TABLE),
        name: Cow::Borrowed(name),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Ingress),
        prio: Some(-500),
        dev: Some(Cow::Owned(device.to_string())),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

/// The chain that checks what member `addr` puts in its datagrams.
fn member_chain(addr: &IpAddr) -> String {
    let hex: String = match addr {
        IpAddr::V4(a) => a.octets().iter().map(|b| format!("{b:02x}")).collect(),
        IpAddr::V6(a) => a.octets().iter().map(|b| format!("{b:02x}")).collect(),
    };
    format!("vtep-{hex}")
}

/// `len` bits at `offset` bits into the transport header.
fn raw_th(offset: u32, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadRaw(PayloadRaw {
        base: PayloadBase::TH,
        offset,
        len,
    })))
}

fn sender_chain(mac: &MacBytes) -> String {
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("from-{hex}")
}

fn plain_chain(name: String) -> Chain<'static> {
    Chain {
        family: NfFamily::NetDev,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name),
        ..Chain::default()
    }
}

fn rule(
    chain: String,
    expr: Vec<Statement<'static>>,
    comment: &'static str,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::NetDev,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Owned(chain),
        expr: Cow::Owned(expr),
        comment: Some(Cow::Borrowed(comment)),
        ..Rule::default()
    })
}

fn drop_counted(counter: &'static str) -> [Statement<'static>; 2] {
    [
        Statement::Counter(stmt::Counter::Named(Cow::Borrowed(counter))),
        Statement::Drop(None),
    ]
}

impl GuardPlan {
    /// Matches VXLAN addressed to this node's address `local` (of
    /// family `proto`, "ip" or "ip6").
    fn vxlan_to(&self, proto: &'static str, local: &IpAddr) -> [Statement<'static>; 2] {
        [
            matches(
                payload(proto, "daddr"),
                Operator::EQ,
                Expression::String(Cow::Owned(local.to_string())),
            ),
            matches(
                payload("udp", "dport"),
                Operator::EQ,
                Expression::Number(u32::from(self.port)),
            ),
        ]
    }

    /// The transaction that makes the table say this plan. Without a
    /// `previous` plan (weftd's first write) the table is replaced whole;
    /// with one, the sets and chains are flushed and refilled and the
    /// chains of senders no longer in the plan deleted.
    pub fn batch(&self, previous: Option<&GuardPlan>) -> Batch<'static> {
        let mut b = Batch::new();
        let table = || {
            NfListObject::Table(Table {
                family: NfFamily::NetDev,
                name: Cow::Borrowed(TABLE),
                ..Table::default()
            })
        };
        b.add(table());
        if previous.is_none() {
            // add + delete + add: atomic replacement whether or not it existed.
            b.delete(table());
            b.add(table());
        }
        for name in COUNTERS {
            b.add(NfListObject::Counter(Counter {
                family: NfFamily::NetDev,
                table: Cow::Borrowed(TABLE),
                name: Cow::Borrowed(name),
                handle: None,
                packets: None,
                bytes: None,
            }));
        }
        let underlay = chain("underlay", &self.underlay_device);
        let decap = chain("decap", &self.device);
        for c in [&underlay, &decap] {
            b.add(NfListObject::Chain(c.clone()));
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(c.clone())));
        }
        // Senders gone: their chains, no longer referenced once `decap` is
        // flushed.
        for mac in previous
            .into_iter()
            .flat_map(|p| p.sources.keys())
            .filter(|m| !self.sources.contains_key(*m))
        {
            b.delete(NfListObject::Chain(plain_chain(sender_chain(mac))));
        }
        for addr in previous
            .into_iter()
            .flat_map(|p| p.members.keys())
            .filter(|a| !self.members.contains_key(*a))
        {
            b.delete(NfListObject::Chain(plain_chain(member_chain(addr))));
        }
        // Members, on the underlay's ingress.
        for (v4, proto, addr_type) in [
            (true, "ip", SetType::Ipv4Addr),
            (false, "ip6", SetType::Ipv6Addr),
        ] {
            let name = format!("members-{}", if v4 { "v4" } else { "v6" });
            let members = set(name.clone(), SetTypeValue::Single(addr_type), false);
            b.add(NfListObject::Set(Box::new(members.clone())));
            b.add_cmd(NfCmd::Flush(FlushObject::Set(Box::new(members))));
            let elems: Vec<Expression<'static>> = self
                .members
                .keys()
                .filter(|a| a.is_ipv4() == v4)
                .map(|a| Expression::String(Cow::Owned(a.to_string())))
                .collect();
            if !elems.is_empty() {
                b.add(NfListObject::Element(nftables::schema::Element {
                    family: NfFamily::NetDev,
                    table: Cow::Borrowed(TABLE),
                    name: Cow::Owned(name.clone()),
                    elem: Cow::Owned(elems),
                }));
            }
            // One rule per own address of the family (usually one).
            for local in self.local.iter().filter(|a| a.is_ipv4() == v4) {
                let mut r = self.vxlan_to(proto, local).to_vec();
                r.push(matches(
                    payload(proto, "saddr"),
                    Operator::NEQ,
                    set_ref(&name),
                ));
                r.extend(drop_counted("not_member"));
                b.add(rule("underlay".into(), r, "weft: VXLAN from a non-member"));
            }
            // Each member's VTEP MAC, bound to its outer source.
            let mut vmap = Vec::new();
            for (addr, mac) in self.members.iter().filter(|(a, _)| a.is_ipv4() == v4) {
                let name = member_chain(addr);
                b.add(NfListObject::Chain(plain_chain(name.clone())));
                b.add_cmd(NfCmd::Flush(FlushObject::Chain(plain_chain(name.clone()))));
                let hi = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                let lo = u32::from(u16::from_be_bytes([mac[4], mac[5]]));
                // The inner Ethernet source: 22 bytes into the UDP header.
                for (offset, len, value) in [(176, 32, hi), (208, 16, lo)] {
                    let mut r = vec![matches(
                        raw_th(offset, len),
                        Operator::NEQ,
                        Expression::Number(value),
                    )];
                    r.extend(drop_counted("forged_vtep"));
                    b.add(rule(name.clone(), r, "weft: another member's VTEP MAC"));
                }
                vmap.push(SetItem::Mapping(
                    Expression::String(Cow::Owned(addr.to_string())),
                    Expression::Verdict(Verdict::Goto(JumpTarget {
                        target: Cow::Owned(name),
                    })),
                ));
            }
            if vmap.is_empty() {
                continue;
            }
            for local in self.local.iter().filter(|a| a.is_ipv4() == v4) {
                let mut r = self.vxlan_to(proto, local).to_vec();
                r.push(Statement::VerdictMap(VerdictMap {
                    key: payload(proto, "saddr"),
                    data: Expression::Named(NamedExpression::Set(vmap.clone())),
                }));
                b.add(rule(
                    "underlay".into(),
                    r,
                    "weft: each member's own VTEP MAC",
                ));
            }
        }
        // Sources, on the vxlan device's ingress: the VTEP MAC picks the
        // sender's chain, which accepts what it owns.
        let mut vmap = Vec::new();
        for (mac, nets) in &self.sources {
            let name = sender_chain(mac);
            b.add(NfListObject::Chain(plain_chain(name.clone())));
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(plain_chain(name.clone()))));
            for n in nets {
                let proto = if n.addr().is_ipv4() { "ip" } else { "ip6" };
                b.add(rule(
                    name.clone(),
                    vec![
                        matches(payload(proto, "saddr"), Operator::EQ, prefix(n)),
                        Statement::Accept(None),
                    ],
                    "weft: a source its sender owns",
                ));
            }
            b.add(rule(
                name.clone(),
                drop_counted("spoofed_source").to_vec(),
                "weft: inner source not its sender's",
            ));
            vmap.push(SetItem::Mapping(
                Expression::String(Cow::Owned(show_mac(mac))),
                Expression::Verdict(Verdict::Goto(JumpTarget {
                    target: Cow::Owned(name),
                })),
            ));
        }
        if !vmap.is_empty() {
            b.add(rule(
                "decap".into(),
                vec![Statement::VerdictMap(VerdictMap {
                    key: payload("ether", "saddr"),
                    data: Expression::Named(NamedExpression::Set(vmap)),
                })],
                "weft: each sender's own sources",
            ));
        }
        b.add(rule(
            "decap".into(),
            drop_counted("spoofed_source").to_vec(),
            "weft: from no known VTEP",
        ));
        b
    }

    /// Writes the plan (one atomic transaction); `previous` is the plan
    /// last written by this process, if any.
    pub fn apply(&self, previous: Option<&GuardPlan>) -> Result<(), KernelError> {
        let nft = super::nat::program();
        nftables::helper::apply_ruleset_with_args(
            &self.batch(previous).to_nftables(),
            Some(&nft),
            &[] as &[&str],
        )
        .map_err(|e| kerr(format!("write nftables table netdev {TABLE} ({nft})"), e))
    }
}

/// Removes the table, if there is one (uninstall, a node switched to the
/// userspace path, or a re-created device whose hook must be made again).
/// Returns whether it was there.
pub fn remove() -> Result<bool, KernelError> {
    super::nat::remove_table("netdev", TABLE)
}

/// The drop counters' packet counts (empty if the table is not there).
pub fn counters() -> BTreeMap<String, u64> {
    let nft = super::nat::program();
    let Ok(out) = std::process::Command::new(&nft)
        .args(["-j", "list", "counters", "table", "netdev", TABLE])
        .output()
    else {
        return BTreeMap::new();
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return BTreeMap::new();
    };
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let c = o.get("counter")?;
            Some((c["name"].as_str()?.to_string(), c["packets"].as_u64()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_write_replaces_the_table_later_ones_keep_the_counters() {
        let (m2, m3) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
        let nets = |l: &[&str]| {
            l.iter()
                .map(|n| n.parse().unwrap())
                .collect::<BTreeSet<IpNet>>()
        };
        let plan = GuardPlan {
            port: 4789,
            device: "weft-vxlan".into(),
            underlay_device: "eth0".into(),
            local: ["10.99.0.1".parse().unwrap()].into_iter().collect(),
            members: [("10.99.0.2".parse().unwrap(), m2)].into_iter().collect(),
            sources: [(m2, nets(&["10.244.8.0/26", "10.99.0.2/32"]))]
                .into_iter()
                .collect(),
        };
        let json = |b: Batch<'static>| serde_json::to_value(b.to_nftables()).unwrap();
        let first = json(plan.batch(None));
        let verbs: Vec<&str> = first["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_object().unwrap().keys().next().unwrap().as_str())
            .collect();
        assert_eq!(&verbs[..3], ["add", "delete", "add"], "replaced whole");
        let text = first.to_string();
        assert!(text.contains("\"dev\":\"eth0\""), "{text}");
        assert!(text.contains("from-020000000002"), "{text}");
        assert!(text.contains("\"goto\""), "{text}");
        assert!(text.contains("10.244.8.0"), "{text}");
        // n2's VTEP MAC bound to its address: two raw words of the inner
        // Ethernet source.
        assert!(text.contains("vtep-0a630002"), "{text}");
        assert!(text.contains("\"offset\":176"), "{text}");
        assert!(text.contains(&0x0200_0000u32.to_string()), "{text}");
        // n3 joined, n2 left: n2's chain deleted, nothing else; the
        // counters (and the table) stay.
        let mut next = plan.clone();
        next.sources = [(m3, nets(&["10.244.12.0/26"]))].into_iter().collect();
        next.members = [("10.99.0.3".parse().unwrap(), m3)].into_iter().collect();
        let later = json(next.batch(Some(&plan)));
        let deletes: Vec<String> = later["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.get("delete").map(|d| d.to_string()))
            .collect();
        assert_eq!(deletes.len(), 2, "{deletes:?}");
        assert!(deletes[0].contains("from-020000000002"), "{deletes:?}");
        assert!(deletes[1].contains("vtep-0a630002"), "{deletes:?}");
        assert!(later.to_string().contains("from-020000000003"));
    }
}
