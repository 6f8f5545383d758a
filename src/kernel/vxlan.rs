//! The kernel path's device: weft's own vxlan device, created, adopted
//! after a restart, and programmed the way Flannel's VXLAN backend does it,
//! all over rtnetlink: per remote VTEP a permanent neighbour (the VTEP
//! address, the network address of one of its node's blocks, to its VTEP
//! MAC) and a permanent FDB entry (that MAC to the node's underlay
//! address). Routes through the device come from `kernel::routes`
//! ([`super::routes::WeftRoute::Onlink`]).
//!
//! The device outlives weftd on purpose: traffic keeps flowing while weftd
//! restarts; a restart adopts the device when it matches the
//! configuration (nothing is touched) and re-creates it when it does not.

use super::{kerr, KernelError, Stale};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkVxlan};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A MAC address as netlink carries it.
pub type MacBytes = [u8; 6];

/// What weft's vxlan device must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Interface name (`dataplane.kernel_device`).
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Destination UDP port (and the port it listens on).
    pub port: u16,
    /// The node's VTEP MAC (the device's address).
    pub mac: MacBytes,
    /// Overlay MTU.
    pub mtu: u32,
    /// The node's underlay address (outer source).
    pub local: IpAddr,
    /// The underlay interface.
    pub underlay_ifindex: u32,
}

/// Whether the kernel has the module for a link kind (`vxlan`, `ipip`)
/// loaded or built in. weft never loads modules: creating a link of a kind
/// the kernel lacks would make it try (`request_module`), so this is
/// checked first. Both modules have parameters, so they appear under
/// /sys/module even when built in.
pub fn module_present(kind: &str) -> bool {
    std::path::Path::new("/sys/module").join(kind).exists()
}

/// The link named `name`, if there is one.
pub async fn find(h: &Handle, name: &str) -> Result<Option<LinkMessage>, KernelError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(kerr(format!("look up link {name}"), e)),
    }
}

fn vxlan_info(link: &LinkMessage) -> Option<&[InfoVxlan]> {
    match super::link_data(link)? {
        InfoData::Vxlan(v) => Some(v.as_slice()),
        _ => None,
    }
}

fn is_vxlan(link: &LinkMessage) -> bool {
    super::link_is(link, &InfoKind::Vxlan)
}

/// Whether an existing link is the device `spec` describes (MTU aside,
/// which is set in place).
fn matches(link: &LinkMessage, spec: &DeviceSpec) -> bool {
    let Some(info) = vxlan_info(link).filter(|_| is_vxlan(link)) else {
        return false;
    };
    let has = |want: &InfoVxlan| info.contains(want);
    let local = match spec.local {
        IpAddr::V4(a) => InfoVxlan::Local(a),
        IpAddr::V6(a) => InfoVxlan::Local6(a),
    };
    let mac = link.attributes.iter().any(|a| match a {
        LinkAttribute::Address(m) => m.as_slice() == spec.mac,
        _ => false,
    });
    mac && has(&InfoVxlan::Id(spec.vni))
        && has(&InfoVxlan::Port(spec.port))
        && has(&local)
        && has(&InfoVxlan::Learning(false))
        && has(&InfoVxlan::Link(spec.underlay_ifindex))
}

/// Makes the device exist as `spec` says and be up; returns its index and
/// whether it was (re)created. A matching device is adopted untouched (its
/// neighbours and FDB entries keep carrying traffic); one that differs is
/// deleted and created again.
pub async fn ensure(h: &Handle, spec: &DeviceSpec) -> Result<(u32, bool), KernelError> {
    let builder = LinkVxlan::new(&spec.name, spec.vni)
        .port(spec.port)
        .dev(spec.underlay_ifindex)
        .learning(false);
    let builder = match spec.local {
        IpAddr::V4(a) => builder.local(a),
        IpAddr::V6(a) => builder.local6(a),
    };
    let create = builder.address(spec.mac.to_vec()).mtu(spec.mtu).build();
    let name = &spec.name;
    super::ensure_link(
        h,
        name,
        |l| matches(l, spec),
        create,
        spec.mtu,
        || {
            // No IPv6 link-local address: the device would send router
            // solicitations and MLD reports that no FDB entry leads anywhere
            // (each counted as a transmit drop). Best effort: IPv6 may be off.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"), "1");
        },
    )
    .await
}

/// Deletes the link named `name` if it is a vxlan device (uninstall, or a
/// node switched to the userspace path). Returns whether it was there.
pub async fn remove(h: &Handle, name: &str) -> Result<bool, KernelError> {
    super::remove_link_if(h, name, is_vxlan).await
}

fn neighbour_ip(msg: &NeighbourMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        // An FDB entry (family AF_BRIDGE): the parser cannot tell the
        // address family, the length does.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    })
}

fn neighbour_mac(msg: &NeighbourMessage) -> Option<MacBytes> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => m.as_slice().try_into().ok(),
        _ => None,
    })
}

async fn dump(
    h: &Handle,
    family: AddressFamily,
    ifindex: u32,
) -> Result<Vec<NeighbourMessage>, KernelError> {
    let mut out = Vec::new();
    let mut all = h.neighbours().get().set_address_family(family).execute();
    while let Some(msg) = all
        .try_next()
        .await
        .map_err(|e| kerr("dump neighbours", e))?
    {
        if msg.header.ifindex == ifindex && msg.header.state == NeighbourState::Permanent {
            out.push(msg);
        }
    }
    Ok(out)
}

/// How many entries a reconciliation added (or replaced) and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Added or replaced.
    pub installed: usize,
    /// Deleted.
    pub removed: usize,
}

/// Makes the device's permanent neighbours equal `want` (VTEP address →
/// VTEP MAC), both families; with [`Stale::Keep`], adds and corrects only.
pub async fn reconcile_neighbours(
    h: &Handle,
    ifindex: u32,
    want: &BTreeMap<IpAddr, MacBytes>,
    stale: Stale,
) -> Result<Changes, KernelError> {
    let mut have = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        have.extend(dump(h, family, ifindex).await?);
    }
    let mut done = Changes::default();
    let mut right = std::collections::BTreeSet::new();
    for msg in have {
        let (Some(ip), mac) = (neighbour_ip(&msg), neighbour_mac(&msg)) else {
            continue;
        };
        if mac.is_some() && want.get(&ip) == mac.as_ref() {
            right.insert(ip);
            continue;
        }
        // A wrong MAC is replaced below; an unwanted entry may be kept.
        if want.contains_key(&ip) || stale == Stale::Keep {
            continue;
        }
        h.neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(|e| kerr(format!("delete neighbour {ip}"), e))?;
        done.removed += 1;
    }
    for (ip, mac) in want {
        if right.contains(ip) {
            continue;
        }
        h.neighbours()
            .add(ifindex, *ip)
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| kerr(format!("add neighbour {ip} lladdr {}", show_mac(mac)), e))?;
        done.installed += 1;
    }
    Ok(done)
}

/// Makes the device's permanent FDB entries equal `want` (VTEP MAC → the
/// node's underlay address); with [`Stale::Keep`], adds and corrects only.
pub async fn reconcile_fdb(
    h: &Handle,
    ifindex: u32,
    want: &BTreeMap<MacBytes, IpAddr>,
    stale: Stale,
) -> Result<Changes, KernelError> {
    let have = dump(h, AddressFamily::Bridge, ifindex).await?;
    let mut done = Changes::default();
    let mut right = std::collections::BTreeSet::new();
    for msg in have {
        let Some(mac) = neighbour_mac(&msg) else {
            continue;
        };
        if neighbour_ip(&msg).is_some() && want.get(&mac) == neighbour_ip(&msg).as_ref() {
            right.insert(mac);
            continue;
        }
        if want.contains_key(&mac) || stale == Stale::Keep {
            continue;
        }
        h.neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(|e| kerr(format!("delete fdb entry {}", show_mac(&mac)), e))?;
        done.removed += 1;
    }
    for (mac, dst) in want {
        if right.contains(mac) {
            continue;
        }
        h.neighbours()
            .add_bridge(ifindex, mac)
            .destination(*dst)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| kerr(format!("add fdb entry {} dst {dst}", show_mac(mac)), e))?;
        done.installed += 1;
    }
    Ok(done)
}

/// The device's packet counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceStats {
    /// Packets decapsulated and received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent (encapsulated).
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Packets not sent (no FDB entry, no route to the peer, ...).
    pub tx_dropped: u64,
    /// Malformed received packets.
    pub rx_errors: u64,
    /// Send failures.
    pub tx_errors: u64,
}

/// The counters of link `ifindex`.
pub async fn stats(h: &Handle, ifindex: u32) -> Result<DeviceStats, KernelError> {
    let link = super::link_by_index(h, ifindex).await?;
    Ok(link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(DeviceStats {
                rx_packets: s.rx_packets,
                rx_bytes: s.rx_bytes,
                tx_packets: s.tx_packets,
                tx_bytes: s.tx_bytes,
                rx_dropped: s.rx_dropped,
                tx_dropped: s.tx_dropped,
                rx_errors: s.rx_errors,
                tx_errors: s.tx_errors,
            }),
            _ => None,
        })
        .unwrap_or_default())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn show_mac(m: &MacBytes) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
