//! weft's routes: in the main table a route per remote pod block through the
//! TUN device (with the node's own address of the block's family as the
//! preferred source, so the host's traffic to pods carries an address the
//! receiving node accepts), a blackhole per local block (pods get host
//! routes from the CNI plugin; any other address of the block must not leak
//! towards the default route); in weft's own table [`WEFT_TABLE`] a route
//! per remote node address through the TUN, which pods' traffic to nodes
//! looks up (see `kernel::rules`). Reconciliation makes the kernel's set of weft routes equal the
//! desired set with the fewest changes: routes already right are left alone
//! (a restart disturbs no traffic), changed ones are replaced atomically
//! (NLM_F_REPLACE), stale ones deleted. Routes of other protocols are never
//! touched.

use super::{kerr, KernelError, Stale};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The routing protocol number that marks weft's routes (`ip route show
/// proto 87`). Unassigned in iproute2's rt_protos.
pub const RTPROT_WEFT: u8 = 87;

/// weft's routing table: remote nodes' own addresses through the TUN, for
/// traffic from pods (`ip route show table 87`).
pub const WEFT_TABLE: u32 = 87;

/// One route weft owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeftRoute {
    /// A remote block, through a device (the TUN).
    Device {
        /// The block.
        dst: IpNet,
        /// The device's interface index.
        ifindex: u32,
        /// The preferred source address for the host's own traffic.
        src: Option<IpAddr>,
    },
    /// A remote node's own address through a device (the TUN, or the
    /// kernel path's vxlan device via the node's VTEP address), in
    /// [`WEFT_TABLE`]: pods reach other nodes through the overlay.
    NodeHost {
        /// The node's address (a /32 or /128).
        dst: IpNet,
        /// The device's interface index.
        ifindex: u32,
        /// The kernel path: the node's VTEP address (onlink).
        gateway: Option<IpAddr>,
    },
    /// A remote block through the kernel path's vxlan device, via its
    /// VTEP address (onlink; a permanent neighbour gives its MAC), as
    /// Flannel's VXLAN backend routes.
    Onlink {
        /// The block.
        dst: IpNet,
        /// The VTEP address (the block's network address).
        gateway: IpAddr,
        /// The vxlan device's index.
        ifindex: u32,
        /// The preferred source address for the host's own traffic.
        src: Option<IpAddr>,
    },
    /// A local block: drop what no pod route claims.
    Blackhole {
        /// The block.
        dst: IpNet,
    },
    /// A remote block straight to its node over the underlay, without
    /// encapsulation (CrossSubnet for a same-subnet node, or encap none).
    Via {
        /// The block.
        dst: IpNet,
        /// The node's underlay address.
        gateway: IpAddr,
        /// The underlay interface's index.
        ifindex: u32,
    },
}

impl WeftRoute {
    /// The destination prefix.
    pub fn dst(&self) -> IpNet {
        match self {
            WeftRoute::Device { dst, .. }
            | WeftRoute::NodeHost { dst, .. }
            | WeftRoute::Blackhole { dst }
            | WeftRoute::Via { dst, .. }
            | WeftRoute::Onlink { dst, .. } => *dst,
        }
    }

    fn message(&self) -> RouteMessage {
        let dst = self.dst();
        let builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .expect("an IpNet is a valid destination");
        let builder = builder.protocol(RouteProtocol::Other(RTPROT_WEFT));
        match self {
            WeftRoute::Device {
                ifindex, src: None, ..
            } => builder.output_interface(*ifindex).build(),
            WeftRoute::Device {
                ifindex,
                src: Some(src),
                ..
            } => builder
                .output_interface(*ifindex)
                .pref_source(*src)
                .expect("source of the block's family")
                .build(),
            WeftRoute::NodeHost {
                ifindex,
                gateway: None,
                ..
            } => builder
                .output_interface(*ifindex)
                .table_id(WEFT_TABLE)
                .build(),
            WeftRoute::NodeHost {
                ifindex,
                gateway: Some(gateway),
                ..
            } => builder
                .gateway(*gateway)
                .expect("gateway of the node's family")
                .output_interface(*ifindex)
                .onlink()
                .table_id(WEFT_TABLE)
                .build(),
            WeftRoute::Onlink {
                gateway,
                ifindex,
                src,
                ..
            } => {
                let b = builder
                    .gateway(*gateway)
                    .expect("gateway of the block's family")
                    .output_interface(*ifindex)
                    .onlink();
                match src {
                    Some(src) => b.pref_source(*src).expect("source of the block's family"),
                    None => b,
                }
                .build()
            }
            WeftRoute::Blackhole { .. } => builder.kind(RouteType::BlackHole).build(),
            WeftRoute::Via {
                gateway, ifindex, ..
            } => builder
                .gateway(*gateway)
                .expect("gateway of the block's family")
                .output_interface(*ifindex)
                .build(),
        }
    }
}

impl std::fmt::Display for WeftRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeftRoute::Device {
                dst,
                ifindex,
                src: None,
            } => write!(f, "{dst} dev #{ifindex}"),
            WeftRoute::Device {
                dst,
                ifindex,
                src: Some(src),
            } => write!(f, "{dst} dev #{ifindex} src {src}"),
            WeftRoute::NodeHost {
                dst,
                ifindex,
                gateway: None,
            } => write!(f, "{dst} dev #{ifindex} table {WEFT_TABLE}"),
            WeftRoute::NodeHost {
                dst,
                ifindex,
                gateway: Some(gw),
            } => write!(f, "{dst} via {gw} dev #{ifindex} onlink table {WEFT_TABLE}"),
            WeftRoute::Onlink {
                dst,
                gateway,
                ifindex,
                src,
            } => {
                write!(f, "{dst} via {gateway} dev #{ifindex} onlink")?;
                match src {
                    Some(src) => write!(f, " src {src}"),
                    None => Ok(()),
                }
            }
            WeftRoute::Blackhole { dst } => write!(f, "blackhole {dst}"),
            WeftRoute::Via {
                dst,
                gateway,
                ifindex,
            } => write!(f, "{dst} via {gateway} dev #{ifindex}"),
        }
    }
}

/// What a reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Routes added or replaced.
    pub installed: Vec<WeftRoute>,
    /// Routes deleted.
    pub removed: Vec<WeftRoute>,
    /// Routes already right.
    pub kept: usize,
}

/// weft's routes in the main table, through one netlink connection.
pub struct Routes {
    handle: Handle,
}

fn parse(msg: &RouteMessage) -> Option<WeftRoute> {
    let h = &msg.header;
    if h.protocol != RouteProtocol::Other(RTPROT_WEFT) {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst: Option<IpAddr> = None;
    let mut oif = None;
    let mut gateway: Option<IpAddr> = None;
    let mut src: Option<IpAddr> = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::PrefSource(RouteAddress::Inet(v4)) => src = Some((*v4).into()),
            RouteAttribute::PrefSource(RouteAddress::Inet6(v6)) => src = Some((*v6).into()),
            RouteAttribute::Gateway(RouteAddress::Inet(v4)) => gateway = Some((*v4).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => gateway = Some((*v6).into()),
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => dst = Some((*v4).into()),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => dst = Some((*v6).into()),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let dst = match (dst, h.address_family) {
        (Some(d), _) => d,
        (None, AddressFamily::Inet) => Ipv4Addr::UNSPECIFIED.into(),
        (None, AddressFamily::Inet6) => Ipv6Addr::UNSPECIFIED.into(),
        _ => return None,
    };
    let dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
    let onlink = h.flags.contains(RouteFlags::Onlink);
    if table == WEFT_TABLE {
        return match (h.kind, oif) {
            (RouteType::Unicast, Some(ifindex)) => Some(WeftRoute::NodeHost {
                dst,
                ifindex,
                gateway,
            }),
            _ => None,
        };
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    match (h.kind, oif, gateway) {
        (RouteType::BlackHole, _, _) => Some(WeftRoute::Blackhole { dst }),
        (RouteType::Unicast, Some(ifindex), Some(gateway)) if onlink => Some(WeftRoute::Onlink {
            dst,
            gateway,
            ifindex,
            src,
        }),
        (RouteType::Unicast, Some(ifindex), Some(gateway)) => Some(WeftRoute::Via {
            dst,
            gateway,
            ifindex,
        }),
        (RouteType::Unicast, Some(ifindex), None) => Some(WeftRoute::Device { dst, ifindex, src }),
        _ => None,
    }
}

impl Routes {
    /// Routes managed through `handle` (a connection in the network
    /// namespace to program).
    pub fn new(handle: Handle) -> Self {
        Routes { handle }
    }

    /// weft's routes now in the kernel (IPv4 and IPv6, main table and
    /// weft's).
    pub async fn list(&self) -> Result<Vec<WeftRoute>, KernelError> {
        let mut out = Vec::new();
        for filter in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            // A dump returns every table's routes; `parse` keeps weft's.
            let mut dump = self.handle.route().get(filter).execute();
            while let Some(msg) = dump.try_next().await.map_err(|e| kerr("dump routes", e))? {
                out.extend(parse(&msg));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Makes weft's routes equal `desired` (with [`Stale::Keep`], adds and
    /// corrects only).
    pub async fn reconcile(
        &self,
        desired: &BTreeSet<WeftRoute>,
        stale: Stale,
    ) -> Result<Reconciled, KernelError> {
        let current: BTreeMap<IpNet, WeftRoute> = self
            .list()
            .await?
            .into_iter()
            .map(|r| (r.dst(), r))
            .collect();
        let wanted: BTreeMap<IpNet, &WeftRoute> = desired.iter().map(|r| (r.dst(), r)).collect();
        let mut done = Reconciled::default();
        for (dst, route) in &wanted {
            if current.get(dst) == Some(*route) {
                done.kept += 1;
                continue;
            }
            self.handle
                .route()
                .add(route.message())
                .replace()
                .execute()
                .await
                .map_err(|e| kerr(format!("install route {route}"), e))?;
            done.installed.push((*route).clone());
        }
        for (dst, route) in current {
            if stale == Stale::Remove && !wanted.contains_key(&dst) {
                self.delete(&route).await?;
                done.removed.push(route);
            }
        }
        Ok(done)
    }

    async fn delete(&self, route: &WeftRoute) -> Result<(), KernelError> {
        self.handle
            .route()
            .del(route.message())
            .execute()
            .await
            .map_err(|e| kerr(format!("delete route {route}"), e))
    }

    /// Deletes every weft route (uninstall). Returns how many.
    pub async fn remove_all(&self) -> Result<usize, KernelError> {
        let all = self.list().await?;
        for r in &all {
            self.delete(r).await?;
        }
        Ok(all.len())
    }
}
