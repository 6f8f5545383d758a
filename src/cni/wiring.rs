//! Pod wiring over rtnetlink, Calico-style: a veth pair whose host end
//! (MAC ee:ee:ee:ee:ee:ee, proxy ARP on) routes to the pod's /32 and /128,
//! and whose pod end, renamed to CNI_IFNAME inside the pod's namespace,
//! holds the addresses and a default route via 169.254.1.1 (IPv6: via the
//! host end's link-local address, derived from that fixed MAC).
//!
//! In veth attachment (`veth_attach`) weftd owns the host end: it gets a MAC
//! of its own (so the host's stack drops the frames pods send to the
//! gateway MAC as meant for another host: only weftd reads them), no IPv6,
//! no proxy ARP and no host routes.
//!
//! Work inside the pod's namespace runs on a thread that has `setns`'d into
//! it, with its own netlink socket (a netlink socket talks to the namespace
//! it was opened in).

use super::spec::{code, CniError};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

pub use crate::podnet::{host_ifname, pod_mac, GATEWAY_V4, GATEWAY_V6, HOST_MAC};

/// Routing protocol number of the host routes to pods (weftd's own routes
/// use 87; keeping them apart means neither reconciler touches the other's).
pub const RTPROT_WEFT_CNI: u8 = 88;

fn kernel(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CniError {
    CniError::new(code::KERNEL, format!("cannot {what}"), e.to_string())
}

fn mismatch(what: impl Into<String>) -> CniError {
    CniError::new(
        code::CHECK_MISMATCH,
        "the attachment is not as ADD left it",
        what,
    )
}

fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub use crate::kernel::with_netlink;

/// Opens the network namespace file at `netns` (code 3 if there is none).
fn open_netns(netns: &Path) -> Result<std::fs::File, CniError> {
    std::fs::File::open(netns).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            "cannot open the container's network namespace",
            format!("{}: {e}", netns.display()),
        )
    })
}

/// Runs `f` with a netlink handle inside the namespace at `netns`.
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl AsyncFnOnce(Handle) -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    let file = open_netns(netns)?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                "cannot enter the container's network namespace",
                e.to_string(),
            )
        })?;
        with_netlink(f)
    })
    .join()
    .unwrap_or_else(|_| {
        Err(CniError::new(
            code::KERNEL,
            "the namespace worker panicked",
            "",
        ))
    })
}

async fn link_index(
    handle: &Handle,
    name: &str,
) -> Result<Option<(u32, Vec<LinkAttribute>)>, CniError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some((l.header.index, l.attributes))),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => Ok(None),
        Err(e) => Err(kernel(format!("look up link {name}"), e)),
    }
}

const fn libc_enodev() -> i32 {
    19
}

/// What ADD built, for the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    /// The pod end's MAC.
    pub container_mac: String,
}

/// The host end's MAC in veth attachment: locally administered, derived
/// from its name, never the gateway MAC.
pub fn port_mac(host: &str) -> [u8; 6] {
    let b = fdb::fnv1a(host.as_bytes()).to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

/// Wires the pod: see the module comment. On failure the host end is
/// deleted (taking the pod end and the host routes with it).
pub fn add(
    netns: &Path,
    ifname: &str,
    host: &str,
    ips: &[IpAddr],
    mtu: u32,
    veth_attach: bool,
) -> Result<Wired, CniError> {
    let netns_file = open_netns(netns)?;
    let (host_owned, ifname_owned) = (host.to_string(), ifname.to_string());
    let created = with_netlink(async |h| {
        if let Some((index, _)) = link_index(&h, &host_owned).await? {
            // A leftover of an earlier, interrupted ADD: start clean.
            h.link()
                .del(index)
                .execute()
                .await
                .map_err(|e| kernel(format!("delete stale link {host_owned}"), e))?;
        }
        // The pod end is created in the pod's namespace under its final
        // name: moving or renaming a link afterwards costs an RCU grace
        // period each (measured: ~15 ms of a ~25 ms ADD).
        use std::os::fd::AsRawFd;
        let mut msg = LinkVeth::new(&host_owned, &ifname_owned).mtu(mtu).build();
        for attr in msg.attributes.iter_mut() {
            if let LinkAttribute::LinkInfo(infos) = attr {
                for info in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                        peer.attributes
                            .push(LinkAttribute::NetNsFd(netns_file.as_raw_fd()));
                        peer.attributes.push(LinkAttribute::Mtu(mtu));
                        peer.attributes
                            .push(LinkAttribute::Address(pod_mac(&host_owned).to_vec()));
                    }
                }
            }
        }
        h.link().add(msg).execute().await.map_err(|e| {
            kernel(
                format!("create veth {host_owned} with {ifname_owned} in the container"),
                e,
            )
        })?;
        let (host_index, _) = link_index(&h, &host_owned)
            .await?
            .ok_or_else(|| kernel("find the new veth", "missing"))?;
        let mac = if veth_attach {
            // No IPv6 on weftd's port: the host stack must neither answer
            // the pod's neighbour solicitations nor send it anything.
            let path = format!("/proc/sys/net/ipv6/conf/{host_owned}/disable_ipv6");
            if std::path::Path::new(&path).exists() {
                std::fs::write(&path, "1")
                    .map_err(|e| kernel(format!("disable IPv6 on {host_owned}"), e))?;
            }
            port_mac(&host_owned)
        } else {
            // The gateway must answer at once: no duplicate address
            // detection on the host end's link-local address (the pods'
            // IPv6 gateway), or the pod's first IPv6 packets wait ~1 s.
            let path = format!("/proc/sys/net/ipv6/conf/{host_owned}/accept_dad");
            if std::path::Path::new(&path).exists() {
                std::fs::write(&path, "0")
                    .map_err(|e| kernel(format!("turn off DAD on {host_owned}"), e))?;
            }
            HOST_MAC
        };
        h.link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .address(mac.to_vec())
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| kernel(format!("configure {host_owned}"), e))?;
        Ok(host_index)
    });
    let host_index = match created {
        Ok(i) => i,
        Err(e) => {
            let _ = del(host);
            return Err(e);
        }
    };
    let result = (|| {
        if !veth_attach {
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{host}/proxy_arp"), "1")
                .map_err(|e| kernel(format!("enable proxy ARP on {host}"), e))?;
            // Answer the pod's ARP for its gateway at once: the default
            // proxy_delay (80 jiffies) holds a new pod's first packet up to
            // 0.8 s.
            std::fs::write(format!("/proc/sys/net/ipv4/neigh/{host}/proxy_delay"), "0")
                .map_err(|e| kernel(format!("set proxy_delay 0 on {host}"), e))?;
        }
        let (ifname_owned, ips_owned) = (ifname.to_string(), ips.to_vec());
        let mac = in_netns(netns, async move |h| {
            let (index, attrs) = link_index(&h, &ifname_owned)
                .await?
                .ok_or_else(|| kernel("find the veth in the container", "missing"))?;
            h.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| kernel(format!("bring up {ifname_owned}"), e))?;
            for ip in &ips_owned {
                crate::kernel::addresses::add_host_address(&h, index, *ip)
                    .await
                    .map_err(|e| kernel(format!("add address {ip} to {ifname_owned}"), e))?;
            }
            if ips_owned.iter().any(IpAddr::is_ipv4) {
                let link_route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(GATEWAY_V4, 32)
                    .output_interface(index)
                    .scope(RouteScope::Link)
                    .build();
                h.route()
                    .add(link_route)
                    .execute()
                    .await
                    .map_err(|e| kernel("add the route to 169.254.1.1", e))?;
                let default = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(GATEWAY_V4)
                    .output_interface(index)
                    .build();
                h.route()
                    .add(default)
                    .execute()
                    .await
                    .map_err(|e| kernel("add the IPv4 default route", e))?;
            }
            if ips_owned.iter().any(IpAddr::is_ipv6) {
                let default = RouteMessageBuilder::<Ipv6Addr>::new()
                    .gateway(GATEWAY_V6)
                    .output_interface(index)
                    .build();
                h.route()
                    .add(default)
                    .execute()
                    .await
                    .map_err(|e| kernel("add the IPv6 default route", e))?;
            }
            let mac = attrs.iter().find_map(|a| match a {
                LinkAttribute::Address(b) => Some(mac_string(b)),
                _ => None,
            });
            Ok(mac.unwrap_or_default())
        })?;
        if veth_attach {
            return Ok(Wired { container_mac: mac });
        }
        let ips_owned = ips.to_vec();
        let host_owned = host.to_string();
        with_netlink(async move |h| {
            for ip in &ips_owned {
                let route = RouteMessageBuilder::<IpAddr>::new()
                    .destination_prefix(*ip, if ip.is_ipv4() { 32 } else { 128 })
                    .map_err(|e| kernel("build a host route", e))?
                    .output_interface(host_index)
                    .scope(RouteScope::Link)
                    .protocol(RouteProtocol::Other(RTPROT_WEFT_CNI))
                    .build();
                h.route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(|e| kernel(format!("add host route {ip} dev {host_owned}"), e))?;
            }
            Ok::<(), CniError>(())
        })?;
        Ok(Wired { container_mac: mac })
    })();
    if result.is_err() {
        let _ = del(host);
    }
    result
}

/// Deletes the host end (the pod end and host routes go with it). Absent is
/// fine: DEL must succeed when there is nothing left to remove.
pub fn del(host: &str) -> Result<(), CniError> {
    let host = host.to_string();
    with_netlink(async move |h| {
        if let Some((index, _)) = link_index(&h, &host).await? {
            match h.link().del(index).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {}
                Err(e) => return Err(kernel(format!("delete {host}"), e)),
            }
        }
        Ok(())
    })
}

/// Checks that the attachment is as ADD left it.
pub fn check(
    netns: &Path,
    ifname: &str,
    host: &str,
    ips: &[IpAddr],
    veth_attach: bool,
) -> Result<(), CniError> {
    let (host_owned, ips_owned) = (host.to_string(), ips.to_vec());
    with_netlink(async move |h| {
        let (index, attrs) = link_index(&h, &host_owned)
            .await?
            .ok_or_else(|| mismatch(format!("host interface {host_owned} is missing")))?;
        if veth_attach {
            return Ok(()); // no host MAC or routes to check: weftd owns the port
        }
        if !attrs
            .iter()
            .any(|a| matches!(a, LinkAttribute::Address(b) if b[..] == HOST_MAC))
        {
            return Err(mismatch(format!(
                "{host_owned} lost its MAC ee:ee:ee:ee:ee:ee"
            )));
        }
        for ip in &ips_owned {
            if !has_route(&h, *ip, if ip.is_ipv4() { 32 } else { 128 }, Some(index)).await? {
                return Err(mismatch(format!(
                    "host route to {ip} via {host_owned} is missing"
                )));
            }
        }
        Ok(())
    })?;
    let (ifname_owned, ips_owned) = (ifname.to_string(), ips.to_vec());
    in_netns(netns, async move |h| {
        let (index, _) = link_index(&h, &ifname_owned)
            .await?
            .ok_or_else(|| mismatch(format!("{ifname_owned} is missing in the container")))?;
        let mut addrs = h.address().get().set_link_index_filter(index).execute();
        let mut present = Vec::new();
        while let Some(a) = addrs
            .try_next()
            .await
            .map_err(|e| kernel("list addresses", e))?
        {
            for attr in a.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    present.push(ip);
                }
            }
        }
        for ip in &ips_owned {
            if !present.contains(ip) {
                return Err(mismatch(format!(
                    "address {ip} is missing on {ifname_owned}"
                )));
            }
            let default: IpAddr = if ip.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            };
            if !has_route(&h, default, 0, Some(index)).await? {
                return Err(mismatch(format!(
                    "the default route for {ip} on {ifname_owned} is missing"
                )));
            }
        }
        Ok(())
    })
}

async fn has_route(h: &Handle, dst: IpAddr, len: u8, oif: Option<u32>) -> Result<bool, CniError> {
    let filter = match dst {
        IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    let mut routes = h.route().get(filter).execute();
    while let Some(r) = routes
        .try_next()
        .await
        .map_err(|e| kernel("list routes", e))?
    {
        if r.header.destination_prefix_length != len {
            continue;
        }
        let mut rdst = None;
        let mut roif = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(v)) => rdst = Some(IpAddr::V4(*v)),
                RouteAttribute::Destination(RouteAddress::Inet6(v)) => rdst = Some(IpAddr::V6(*v)),
                RouteAttribute::Oif(i) => roif = Some(*i),
                _ => {}
            }
        }
        let dst_ok = if len == 0 {
            rdst.is_none() || rdst.is_some_and(|d| d.is_unspecified())
        } else {
            rdst == Some(dst)
        };
        if dst_ok && (oif.is_none() || roif == oif) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert!(crate::podnet::is_host_ifname(&a));
        assert!(!crate::podnet::is_host_ifname("weft0"));
        assert!(!crate::podnet::is_host_ifname("wefttunnel1234x"));
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("weft"));
        assert_ne!(a, host_ifname("0123456789abcdef", "eth1"));
        assert_ne!(a, host_ifname("0123456789abcdee", "eth0"));
    }

    #[test]
    fn gateway_v6_is_the_eui64_of_the_host_mac() {
        // ee:ee:ee:ee:ee:ee -> flip the U/L bit (ee -> ec), insert ff:fe.
        assert_eq!(GATEWAY_V6.to_string(), "fe80::ecee:eeff:feee:eeee");
    }
}
