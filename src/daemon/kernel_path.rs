//! Which data path a node runs (`dataplane.mode`), and the kernel path's
//! device (vxlan, or ipip for `encap = "ipip"`): found or created at start,
//! removed when the node runs the userspace path or is uninstalled, so that
//! switching modes leaves nothing of the old one behind.

use crate::config::{Attach, Config, Encap, Mode};
use crate::kernel::ipip;
use crate::kernel::vxlan::{self, DeviceSpec};
use std::net::IpAddr;

/// The kernel path's device, once it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDevice {
    /// Its name (`dataplane.kernel_device`).
    pub name: String,
    /// Its interface index.
    pub ifindex: u32,
    /// It speaks IPv6 on the underlay.
    pub v6: bool,
    /// An ipip device (IP-in-IP; else vxlan).
    pub ipip: bool,
    /// The underlay interface's name.
    pub underlay_device: String,
    /// weftd created it at this start (false: adopted from a previous run,
    /// its entries untouched).
    pub created: bool,
}

/// The kernel path's device name: `dataplane.kernel_device`, except that
/// its default names the vxlan device and an ipip device is `weft-ipip`.
pub fn device_name(cfg: &Config) -> String {
    let name = &cfg.dataplane.kernel_device;
    if cfg.overlay.encap == Encap::Ipip && *name == crate::config::DEFAULT_KERNEL_DEVICE {
        IPIP_DEVICE.to_string()
    } else {
        name.clone()
    }
}

/// The ipip device's name unless `dataplane.kernel_device` says otherwise.
pub const IPIP_DEVICE: &str = "weft-ipip";

/// Why a node runs the userspace path (for the log and `weftctl status`),
/// on a kernel that has the modules `has_module` says it has.
fn userspace_because(
    cfg: &Config,
    underlay: IpAddr,
    has_module: impl Fn(&str) -> bool,
) -> Option<&'static str> {
    if cfg.dataplane.mode == Mode::Userspace {
        return Some("dataplane.mode = \"userspace\"");
    }
    if cfg.dataplane.attach == Attach::Veth {
        return Some("veth attachment");
    }
    let ipv6_pods = cfg.overlay.pools.iter().any(|p| p.addr().is_ipv6());
    match cfg.overlay.encap {
        Encap::None => Some("no encapsulation"),
        Encap::Ipip if !has_module("ipip") => Some("the ipip module is absent"),
        // The ipip device carries IPv4 in IPv4; IPv6 pods would need a sit
        // device (with ISATAP-form gateways), an IPv6 underlay an ip6tnl
        // one: not built.
        Encap::Ipip if underlay.is_ipv6() => {
            Some("the kernel IP-in-IP path over an IPv6 underlay is not built")
        }
        Encap::Ipip if ipv6_pods => Some("the kernel IP-in-IP path carries IPv4 pods only"),
        // The multicast plane taps the kernel path's vxlan device for the
        // copies it decapsulates; an ipip device has no such frames.
        Encap::Ipip if cfg.multicast.enabled => {
            Some("multicast over the kernel IP-in-IP path is not built")
        }
        Encap::Ipip => None,
        Encap::Vxlan if !has_module("vxlan") => Some("the vxlan module is absent"),
        Encap::Vxlan => None,
    }
}

/// Picks the data path and, for the kernel's, brings its device up (or
/// adopts it). Returns None for the userspace path, after removing what a
/// previous kernel-path run left. `dataplane.mode = "kernel"` fails where
/// the kernel path cannot run; `"auto"` falls back.
pub fn choose(
    cfg: &Config,
    name: &str,
    underlay: IpAddr,
    overlay_mtu: usize,
) -> Result<Option<KernelDevice>, String> {
    let device = &device_name(cfg);
    let userspace = |why: &str| -> Result<Option<KernelDevice>, String> {
        tracing::info!(reason = why, "data path: userspace");
        remove(cfg)?;
        Ok(None)
    };
    if let Some(why) = userspace_because(cfg, underlay, vxlan::module_present) {
        if cfg.dataplane.mode == Mode::Kernel {
            return Err(format!(
                "dataplane.mode = \"kernel\": cannot run here: {why}"
            ));
        }
        return userspace(why);
    }
    let (_, underlay_ifindex) = super::node::underlay_link(underlay)?;
    let spec = DeviceSpec {
        name: device.clone(),
        vni: cfg.overlay.vni,
        port: cfg.overlay.port,
        mac: crate::dataplane::vtep_mac(name).0,
        mtu: overlay_mtu as u32,
        local: underlay,
        underlay_ifindex,
    };
    let tun = cfg.overlay.tun_name.clone();
    let ipip = cfg.overlay.encap == Encap::Ipip;
    let ipip_spec = match underlay {
        IpAddr::V4(local) => Some(ipip::DeviceSpec {
            name: device.clone(),
            mtu: overlay_mtu as u32,
            local,
            underlay_ifindex,
        }),
        IpAddr::V6(_) => None,
    };
    let up = crate::kernel::with_netlink(async |h| {
        let device = match &ipip_spec {
            Some(spec) if ipip => ipip::ensure(&h, spec).await?,
            _ => vxlan::ensure(&h, &spec).await?,
        };
        // The userspace path's TUN is persistent: a node that ran it before
        // would keep it (and its routes) otherwise.
        if crate::kernel::remove_link(&h, &tun).await? {
            tracing::info!(%tun, "the userspace path's TUN removed");
        }
        Ok::<_, crate::kernel::KernelError>(device)
    });
    match up {
        Ok((ifindex, created)) => {
            let kind = if ipip { "ipip" } else { "vxlan" };
            tracing::info!(%device, ifindex, created, kind, "data path: kernel device");
            if created {
                // Checks hooked to a device of the same name that is gone
                // must be made again.
                crate::kernel::vxlan_guard::remove().map_err(|e| e.to_string())?;
            }
            let underlay_device = nix::net::if_::if_indextoname(underlay_ifindex)
                .map_err(|e| format!("underlay interface #{underlay_ifindex}: {e}"))?
                .to_string_lossy()
                .into_owned();
            Ok(Some(KernelDevice {
                name: device.clone(),
                ifindex,
                v6: underlay.is_ipv6(),
                ipip,
                underlay_device,
                created,
            }))
        }
        Err(e) if cfg.dataplane.mode == Mode::Kernel => {
            Err(format!("dataplane.mode = \"kernel\": {e}"))
        }
        Err(e) => userspace(&format!("the kernel device cannot be created: {e}")),
    }
}

/// Removes the kernel path's device and its receive checks, if present.
/// Returns what it removed, for the uninstall report.
pub fn remove(cfg: &Config) -> Result<Vec<String>, String> {
    let name = cfg.dataplane.kernel_device.clone();
    let ipip_name = if name == crate::config::DEFAULT_KERNEL_DEVICE {
        IPIP_DEVICE.to_string()
    } else {
        name.clone()
    };
    let mut removed = Vec::new();
    let (vxlan, ipip) = crate::kernel::with_netlink(async |h| {
        let v = vxlan::remove(&h, &name).await?;
        let i = ipip::remove(&h, &ipip_name).await?;
        Ok::<_, crate::kernel::KernelError>((v, i))
    })
    .map_err(|e| e.to_string())?;
    if vxlan {
        tracing::info!(device = %name, "kernel path's vxlan device removed");
        removed.push(format!("the vxlan device {name}"));
    }
    if ipip {
        tracing::info!(device = %ipip_name, "kernel path's ipip device removed");
        removed.push(format!("the ipip device {ipip_name}"));
    }
    if crate::kernel::vxlan_guard::remove().map_err(|e| e.to_string())? {
        removed.push(format!(
            "the nftables table netdev {}",
            crate::kernel::vxlan_guard::TABLE
        ));
    }
    Ok(removed)
}

/// The kernel path's counters: the device's (packets, bytes, its own drops
/// and errors) and the receive checks' drops by reason.
pub fn stats(device: &KernelDevice) -> serde_json::Value {
    let ifindex = device.ifindex;
    let dev = crate::kernel::with_netlink(async |h| vxlan::stats(&h, ifindex).await);
    let mut drops = serde_json::Map::new();
    let guard = crate::kernel::vxlan_guard::counters();
    for name in crate::kernel::vxlan_guard::COUNTERS {
        drops.insert(name.into(), guard.get(name).copied().unwrap_or(0).into());
    }
    let mut v = serde_json::json!({
        "device": device.name,
        "ifindex": ifindex,
    });
    match dev {
        Ok(s) => {
            drops.insert("rx_dropped".into(), s.rx_dropped.into());
            drops.insert("tx_dropped".into(), s.tx_dropped.into());
            drops.insert("rx_errors".into(), s.rx_errors.into());
            drops.insert("tx_errors".into(), s.tx_errors.into());
            v["rx_packets"] = s.rx_packets.into();
            v["rx_bytes"] = s.rx_bytes.into();
            v["tx_packets"] = s.tx_packets.into();
            v["tx_bytes"] = s.tx_bytes.into();
        }
        Err(e) => v["error"] = e.to_string().into(),
    }
    v["drops"] = drops.into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the kernel IP-in-IP path runs, were the ipip module present
    /// (this machine has none): IPv4 pods over an IPv4 underlay, without
    /// multicast; otherwise the userspace path, with the reason.
    #[test]
    fn the_kernel_ip_in_ip_path_is_chosen_only_where_it_is_built() {
        let cfg = |toml: &str| Config::from_toml(toml, "test").unwrap();
        let v4: IpAddr = "10.99.0.1".parse().unwrap();
        let v6: IpAddr = "fd00:99::1".parse().unwrap();
        let all = |_: &str| true;
        let ipip = "[overlay]\nencap = \"ipip\"\npools = [\"10.244.0.0/16\"]\n";
        assert_eq!(userspace_because(&cfg(ipip), v4, all), None);
        assert_eq!(
            userspace_because(&cfg(ipip), v4, |m| m != "ipip"),
            Some("the ipip module is absent")
        );
        assert!(
            userspace_because(&cfg(ipip), v6, all).is_some_and(|why| why.contains("IPv6 underlay"))
        );
        let dual = "[overlay]\nencap = \"ipip\"\npools = [\"10.244.0.0/16\", \"fd00:244::/48\"]\n";
        assert!(userspace_because(&cfg(dual), v4, all)
            .is_some_and(|why| why.contains("IPv4 pods only")));
        let multicast = format!("{ipip}[multicast]\nenabled = true\n");
        assert!(userspace_because(&cfg(&multicast), v4, all)
            .is_some_and(|why| why.contains("multicast")));
        let forced = format!("{ipip}[dataplane]\nmode = \"userspace\"\n");
        assert!(userspace_because(&cfg(&forced), v4, all).is_some());
        // The device's name: weft-ipip unless the operator named one.
        assert_eq!(device_name(&cfg(ipip)), IPIP_DEVICE);
        let named = format!("{ipip}[dataplane]\nkernel_device = \"tunl9\"\n");
        assert_eq!(device_name(&cfg(&named)), "tunl9");
        assert_eq!(device_name(&cfg("")), crate::config::DEFAULT_KERNEL_DEVICE);
    }
}
