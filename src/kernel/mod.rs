//! Programming the kernel over rtnetlink (no shelling out to `ip`).
//!
//! Only weft's own objects are touched: routes carry the routing protocol
//! number [`routes::RTPROT_WEFT`], so a restart finds and reconciles what the
//! previous run left, and an uninstall removes exactly that.

pub mod addresses;
pub mod ipip;
pub mod nat;
pub mod routes;
pub mod rules;
pub mod vxlan;
pub mod vxlan_guard;

/// What a reconciliation does with entries of weft's that are no longer
/// wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Delete them: the kernel ends equal to what is wanted.
    Remove,
    /// Keep them, only adding and correcting: a restarted weftd whose
    /// control plane has not caught up yet must not tear down paths the
    /// kernel is carrying traffic on.
    Keep,
}

/// A failure talking to the kernel, with what weft was doing.
#[derive(Debug)]
pub struct KernelError {
    /// What weft was doing ("add route 10.244.1.0/26 dev 7").
    pub action: String,
    /// What the kernel (or the netlink library) said.
    pub cause: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.action, self.cause)
    }
}

impl std::error::Error for KernelError {}

pub(crate) fn kerr(action: impl Into<String>, cause: impl std::fmt::Display) -> KernelError {
    KernelError {
        action: action.into(),
        cause: cause.to_string(),
    }
}

/// Runs `f` with a netlink handle in the calling thread's network namespace,
/// on a single-threaded runtime made for the call.
pub fn with_netlink<T, E: From<KernelError>>(
    f: impl AsyncFnOnce(rtnetlink::Handle) -> Result<T, E>,
) -> Result<T, E> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| E::from(kerr("start the netlink runtime", e)))?;
    rt.block_on(async move {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| E::from(kerr("open a netlink socket", e)))?;
        tokio::spawn(conn);
        f(handle).await
    })
}

/// Deletes the link named `name`, if there is one. Returns whether it was
/// there.
pub async fn remove_link(h: &rtnetlink::Handle, name: &str) -> Result<bool, KernelError> {
    remove_link_if(h, name, |_| true).await
}

/// The `IFLA_LINKINFO` items of `link` (its kind, its kind's data).
fn link_infos(
    link: &rtnetlink::packet_route::link::LinkMessage,
) -> impl Iterator<Item = &rtnetlink::packet_route::link::LinkInfo> {
    use rtnetlink::packet_route::link::LinkAttribute;
    link.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
}

/// Whether `link` is of `kind` (vxlan, ipip, ...).
pub fn link_is(
    link: &rtnetlink::packet_route::link::LinkMessage,
    kind: &rtnetlink::packet_route::link::InfoKind,
) -> bool {
    use rtnetlink::packet_route::link::LinkInfo;
    link_infos(link).any(|i| matches!(i, LinkInfo::Kind(k) if k == kind))
}

/// The kind-specific data of `link` (`IFLA_INFO_DATA`), if any.
pub fn link_data(
    link: &rtnetlink::packet_route::link::LinkMessage,
) -> Option<&rtnetlink::packet_route::link::InfoData> {
    use rtnetlink::packet_route::link::LinkInfo;
    link_infos(link).find_map(|i| match i {
        LinkInfo::Data(d) => Some(d),
        _ => None,
    })
}

/// Makes the link `name` exist as `matches` wants it and be up with `mtu`:
/// a matching link is adopted untouched (its entries keep carrying
/// traffic); one that differs is deleted and `create` is added in its
/// place (then `created` runs). Returns its index and whether it was
/// (re)created. The kernel path's devices (vxlan, ipip) share this.
pub async fn ensure_link(
    h: &rtnetlink::Handle,
    name: &str,
    matches: impl Fn(&rtnetlink::packet_route::link::LinkMessage) -> bool,
    create: rtnetlink::packet_route::link::LinkMessage,
    mtu: u32,
    created: impl FnOnce(),
) -> Result<(u32, bool), KernelError> {
    let mut made = false;
    let index = match vxlan::find(h, name).await? {
        Some(link) if matches(&link) => link.header.index,
        existing => {
            if let Some(link) = existing {
                tracing::warn!(device = %name, "existing link differs from the configuration: re-created");
                delete_link(h, link.header.index, name).await?;
            }
            h.link()
                .add(create)
                .execute()
                .await
                .map_err(|e| kerr(format!("create {name}"), e))?;
            made = true;
            created();
            vxlan::find(h, name)
                .await?
                .ok_or_else(|| kerr(format!("create {name}"), "gone after creation"))?
                .header
                .index
        }
    };
    h.link()
        .set(
            rtnetlink::LinkUnspec::new_with_index(index)
                .mtu(mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| kerr(format!("set {name} up, mtu {mtu}"), e))?;
    Ok((index, made))
}

/// Deletes the link named `name` if there is one and `which` accepts it.
/// Returns whether it was deleted.
pub async fn remove_link_if(
    h: &rtnetlink::Handle,
    name: &str,
    which: impl Fn(&rtnetlink::packet_route::link::LinkMessage) -> bool,
) -> Result<bool, KernelError> {
    match vxlan::find(h, name).await? {
        Some(link) if which(&link) => {
            delete_link(h, link.header.index, name).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Deletes link `ifindex` (`name` is for the error).
pub async fn delete_link(
    h: &rtnetlink::Handle,
    ifindex: u32,
    name: &str,
) -> Result<(), KernelError> {
    h.link()
        .del(ifindex)
        .execute()
        .await
        .map_err(|e| kerr(format!("delete link {name}"), e))
}

/// Link `ifindex`, read over rtnetlink.
pub async fn link_by_index(
    h: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<rtnetlink::packet_route::link::LinkMessage, KernelError> {
    use futures::TryStreamExt;
    h.link()
        .get()
        .match_index(ifindex)
        .execute()
        .try_next()
        .await
        .map_err(|e| kerr(format!("read link #{ifindex}"), e))?
        .ok_or_else(|| kerr(format!("read link #{ifindex}"), "no such link"))
}

/// The MTU of interface `ifindex`, read over rtnetlink.
pub fn link_mtu(ifindex: u32) -> Result<u32, KernelError> {
    use rtnetlink::packet_route::link::LinkAttribute;
    with_netlink(async move |h| {
        let link = link_by_index(&h, ifindex).await?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .ok_or_else(|| kerr(format!("read link #{ifindex}"), "no MTU attribute"))
    })
}
