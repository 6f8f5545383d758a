//! Addresses on weft's TUN device. For a pod family the node has no
//! underlay address of (IPv6 pods over an IPv4 underlay), the host needs a
//! source address the other nodes accept for its traffic to pods: as
//! Calico gives its tunnel device an address from the node's block, weft
//! puts the network address of the node's first block of that family (the
//! one address IPAM never hands out) on the TUN, as a /32 or /128.
//! Reconciled like the routes: the TUN is weft's, so any other global
//! address on it is removed.

use super::{kerr, KernelError};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use rtnetlink::Handle;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Adds `ip` as a host address (/32 or /128) to interface `ifindex`, with
/// no duplicate address detection for IPv6 (the address is weft's alone:
/// a pod's, or the TUN's), so it is usable at once.
pub async fn add_host_address(
    handle: &Handle,
    ifindex: u32,
    ip: IpAddr,
) -> Result<(), rtnetlink::Error> {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    let mut req = handle.address().add(ifindex, ip, len);
    if ip.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await
}

/// Makes the global addresses of interface `ifindex` equal `want` (each a
/// host address: /32 or /128). Returns (added, removed).
pub async fn reconcile(
    handle: &Handle,
    ifindex: u32,
    want: &BTreeSet<IpAddr>,
) -> Result<(usize, usize), KernelError> {
    let mut dump = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute();
    let mut have = Vec::new();
    while let Some(msg) = dump
        .try_next()
        .await
        .map_err(|e| kerr("dump addresses", e))?
    {
        if msg.header.index != ifindex || msg.header.scope != AddressScope::Universe {
            continue;
        }
        let addr = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = addr {
            have.push((ip, msg));
        }
    }
    let mut added = 0;
    for ip in want {
        if have.iter().any(|(h, _)| h == ip) {
            continue;
        }
        add_host_address(handle, ifindex, *ip)
            .await
            .map_err(|e| kerr(format!("add address {ip} to the TUN"), e))?;
        added += 1;
    }
    let mut removed = 0;
    for (ip, msg) in have {
        if !want.contains(&ip) {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| kerr(format!("remove address {ip} from the TUN"), e))?;
            removed += 1;
        }
    }
    Ok((added, removed))
}
