//! Which data path a node runs (`dataplane.mode`), and the kernel path's
//! device: found or created at start, removed when the node runs the
//! userspace path or is uninstalled, so that switching modes leaves
//! nothing of the old one behind.

use crate::config::{Attach, Config, Encap, Mode};
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
    /// The underlay interface's name.
    pub underlay_device: String,
    /// weftd created it at this start (false: adopted from a previous run,
    /// its entries untouched).
    pub created: bool,
}

/// Why a node runs the userspace path (for the log and `weftctl status`).
fn userspace_because(cfg: &Config) -> Option<&'static str> {
    if cfg.dataplane.mode == Mode::Userspace {
        return Some("dataplane.mode = \"userspace\"");
    }
    if cfg.dataplane.attach == Attach::Veth {
        return Some("veth attachment");
    }
    match cfg.overlay.encap {
        Encap::None => Some("no encapsulation"),
        // The ipip device would need routes via each node's underlay address
        // and a sit device for IPv6 pods; not built (this lab has no ipip
        // module to test it against).
        Encap::Ipip if !vxlan::module_present("ipip") => Some("the ipip module is absent"),
        Encap::Ipip => Some("the kernel IP-in-IP path is not built"),
        Encap::Vxlan if !vxlan::module_present("vxlan") => Some("the vxlan module is absent"),
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
    let device = &cfg.dataplane.kernel_device;
    let userspace = |why: &str| -> Result<Option<KernelDevice>, String> {
        tracing::info!(reason = why, "data path: userspace");
        remove(cfg)?;
        Ok(None)
    };
    if let Some(why) = userspace_because(cfg) {
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
    let up = crate::kernel::with_netlink(async |h| {
        let device = vxlan::ensure(&h, &spec).await?;
        // The userspace path's TUN is persistent: a node that ran it before
        // would keep it (and its routes) otherwise.
        if crate::kernel::remove_link(&h, &tun).await? {
            tracing::info!(%tun, "the userspace path's TUN removed");
        }
        Ok::<_, crate::kernel::KernelError>(device)
    });
    match up {
        Ok((ifindex, created)) => {
            tracing::info!(%device, ifindex, created, "data path: kernel vxlan device");
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
                underlay_device,
                created,
            }))
        }
        Err(e) if cfg.dataplane.mode == Mode::Kernel => {
            Err(format!("dataplane.mode = \"kernel\": {e}"))
        }
        Err(e) => userspace(&format!("the vxlan device cannot be created: {e}")),
    }
}

/// Removes the kernel path's device and its receive checks, if present.
/// Returns what it removed, for the uninstall report.
pub fn remove(cfg: &Config) -> Result<Vec<String>, String> {
    let name = cfg.dataplane.kernel_device.clone();
    let mut removed = Vec::new();
    let device = crate::kernel::with_netlink(async |h| vxlan::remove(&h, &name).await)
        .map_err(|e| e.to_string())?;
    if device {
        tracing::info!(device = %name, "kernel path's vxlan device removed");
        removed.push(format!("the vxlan device {name}"));
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
