//! The kernel path's IP-in-IP device, where the kernel has the ipip
//! module: weft's own ipip device with this node's underlay address as its
//! local end and no remote (a point-to-multipoint tunnel, as Calico's
//! `tunl0`). A route through it via a node's underlay address (onlink) is
//! the tunnel's far end: the kernel takes the outer destination from the
//! route's gateway ([`super::routes::WeftRoute::Onlink`]). No neighbours,
//! no FDB: nothing else to program.
//!
//! IPv4 pods over an IPv4 underlay only (the ipip device carries protocol
//! 4; IPv6 pods would need a sit device, an IPv6 underlay an ip6tnl one).
//! The machine weft is developed on has no ipip module, so this device has
//! never been created there: only the choice around it (module absent:
//! the userspace path) is tested.

use super::KernelError;
use rtnetlink::packet_route::link::{InfoData, InfoIpTunnel, InfoKind, LinkMessage};
use rtnetlink::{Handle, LinkIpIp};
use std::net::{IpAddr, Ipv4Addr};

/// What weft's ipip device must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Interface name.
    pub name: String,
    /// Overlay MTU.
    pub mtu: u32,
    /// The node's underlay address (outer source).
    pub local: Ipv4Addr,
    /// The underlay interface.
    pub underlay_ifindex: u32,
}

fn tunnel_info(link: &LinkMessage) -> Option<&[InfoIpTunnel]> {
    match super::link_data(link)? {
        InfoData::IpTunnel(v) => Some(v.as_slice()),
        _ => None,
    }
}

/// Whether `link` is an ipip device.
pub fn is_ipip(link: &LinkMessage) -> bool {
    super::link_is(link, &InfoKind::IpIp)
}

/// Whether an existing link is the device `spec` describes (MTU aside,
/// which is set in place).
fn matches(link: &LinkMessage, spec: &DeviceSpec) -> bool {
    let Some(info) = tunnel_info(link).filter(|_| is_ipip(link)) else {
        return false;
    };
    let no_remote = info.iter().all(|i| match i {
        InfoIpTunnel::Remote(IpAddr::V4(r)) => r.is_unspecified(),
        _ => true,
    });
    info.contains(&InfoIpTunnel::Local(IpAddr::V4(spec.local)))
        && info.contains(&InfoIpTunnel::Link(spec.underlay_ifindex))
        && no_remote
}

/// The creation message for `spec`: local end, no remote, the underlay
/// interface, path MTU discovery on (DF set on the outer header, so the
/// underlay's too-big answers reach the pod), TTL inherited from the inner
/// packet (0).
pub fn creation(spec: &DeviceSpec) -> LinkMessage {
    LinkIpIp::new(&spec.name)
        .local(spec.local)
        .remote(Ipv4Addr::UNSPECIFIED)
        .dev(spec.underlay_ifindex)
        .ttl(0)
        .pmtudisc(true)
        .mtu(spec.mtu)
        .build()
}

/// Makes the device exist as `spec` says and be up; returns its index and
/// whether it was (re)created. A matching device is adopted untouched;
/// one that differs is deleted and created again.
pub async fn ensure(h: &Handle, spec: &DeviceSpec) -> Result<(u32, bool), KernelError> {
    let matching = |l: &LinkMessage| matches(l, spec);
    super::ensure_link(h, &spec.name, matching, creation(spec), spec.mtu, || {}).await
}

/// Deletes the link named `name` if it is an ipip device (uninstall, or a
/// node switched to another path). Returns whether it was there.
pub async fn remove(h: &Handle, name: &str) -> Result<bool, KernelError> {
    super::remove_link_if(h, name, is_ipip).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::LinkAttribute;

    /// The message asks for what the design needs (checked here, since no
    /// kernel this is developed on can create the device): an ipip link
    /// with this node's address as local end, no remote, bound to the
    /// underlay interface; and an adopted link is judged by those.
    #[test]
    fn the_device_is_a_point_to_multipoint_tunnel_from_the_underlay_address() {
        let spec = DeviceSpec {
            name: "weft-ipip".into(),
            mtu: 1480,
            local: Ipv4Addr::new(10, 99, 0, 1),
            underlay_ifindex: 7,
        };
        let msg = creation(&spec);
        assert!(is_ipip(&msg));
        let info = tunnel_info(&msg).expect("tunnel attributes");
        assert!(info.contains(&InfoIpTunnel::Local(IpAddr::V4(spec.local))));
        assert!(info.contains(&InfoIpTunnel::Remote(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
        assert!(info.contains(&InfoIpTunnel::Link(7)));
        assert!(info.contains(&InfoIpTunnel::PMtuDisc(true)));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1480)));
        assert!(msg
            .attributes
            .contains(&LinkAttribute::IfName("weft-ipip".into())));
        assert!(matches(&msg, &spec));
        let elsewhere = DeviceSpec {
            local: Ipv4Addr::new(10, 99, 0, 9),
            ..spec.clone()
        };
        assert!(!matches(&msg, &elsewhere));
        let with_remote = LinkIpIp::new("weft-ipip")
            .local(spec.local)
            .remote(Ipv4Addr::new(10, 99, 0, 2))
            .dev(7)
            .build();
        assert!(!matches(&with_remote, &spec));
    }
}
