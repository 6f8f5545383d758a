//! weft's route programming against the real kernel, inside a private
//! network namespace (unshared by a test thread, so it disappears with the
//! thread: nothing to clean up, nothing touched outside).
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN). Fails when it cannot run,
//! unless WEFT_SKIP_NETNS=1 is set.

use futures::TryStreamExt;
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::{new_connection, Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use weft::kernel::routes::{Routes, WeftRoute};
use weft::kernel::Stale;

/// Runs `f` on a thread in a fresh network namespace with a tokio runtime
/// and a netlink handle; returns false if skipped.
fn in_private_netns<F, Fut>(f: F) -> bool
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let joined = std::thread::spawn(move || {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            if std::env::var("WEFT_SKIP_NETNS").as_deref() == Ok("1") {
                eprintln!("cannot create a network namespace ({e}): skipped because WEFT_SKIP_NETNS=1");
                return false;
            }
            panic!("cannot create a network namespace ({e}); run as root, or set WEFT_SKIP_NETNS=1 to skip");
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (conn, handle, _) = new_connection().unwrap();
            tokio::spawn(conn);
            f(handle).await;
        });
        true
    })
    .join();
    match joined {
        Ok(ran) => ran,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn veth_up(handle: &Handle, name: &str, peer: &str) -> u32 {
    handle
        .link()
        .add(LinkVeth::new(name, peer).build())
        .execute()
        .await
        .unwrap();
    let link = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .unwrap()
        .unwrap();
    let index = link.header.index;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .unwrap();
    index
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn reconcile_installs_keeps_replaces_and_removes_only_weft_routes() {
    let ran = in_private_netns(|handle| async move {
        let tun = veth_up(&handle, "wt0", "wt1").await;
        // A route that is not weft's: it must survive everything below.
        let foreign = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(10, 9, 0, 0), 24)
            .output_interface(tun)
            .protocol(RouteProtocol::Static)
            .build();
        handle.route().add(foreign).execute().await.unwrap();

        let desired: BTreeSet<WeftRoute> = [
            WeftRoute::Device {
                dst: net("10.244.1.0/26"),
                ifindex: tun,
                src: None,
            },
            WeftRoute::Device {
                dst: net("fd00:244:0:1::/122"),
                ifindex: tun,
                src: None,
            },
            WeftRoute::Blackhole {
                dst: net("10.244.0.0/26"),
            },
            WeftRoute::Blackhole {
                dst: net("fd00:244::/122"),
            },
        ]
        .into();
        let routes = Routes::new(handle.clone());
        let first = routes.reconcile(&desired, Stale::Remove).await.unwrap();
        assert_eq!(
            (first.installed.len(), first.removed.len(), first.kept),
            (4, 0, 0)
        );
        assert_eq!(
            routes.list().await.unwrap(),
            desired.iter().cloned().collect::<Vec<_>>()
        );

        // A restart: a new programmer finds everything in place and changes nothing.
        let again = Routes::new(handle.clone())
            .reconcile(&desired, Stale::Remove)
            .await
            .unwrap();
        assert_eq!(
            (again.installed.len(), again.removed.len(), again.kept),
            (0, 0, 4)
        );
        assert_eq!(routes.list().await.unwrap().len(), 4, "no duplicates");

        // The remote block becomes local (replaced in place), a v6 route goes.
        let mut next = desired.clone();
        next.remove(&WeftRoute::Device {
            dst: net("10.244.1.0/26"),
            ifindex: tun,
            src: None,
        });
        next.remove(&WeftRoute::Device {
            dst: net("fd00:244:0:1::/122"),
            ifindex: tun,
            src: None,
        });
        next.insert(WeftRoute::Blackhole {
            dst: net("10.244.1.0/26"),
        });
        let changed = routes.reconcile(&next, Stale::Remove).await.unwrap();
        assert_eq!(
            changed.installed,
            vec![WeftRoute::Blackhole {
                dst: net("10.244.1.0/26")
            }]
        );
        assert_eq!(
            changed.removed,
            vec![WeftRoute::Device {
                dst: net("fd00:244:0:1::/122"),
                ifindex: tun,
                src: None
            }]
        );
        assert_eq!(changed.kept, 2);
        assert_eq!(
            routes.list().await.unwrap(),
            next.iter().cloned().collect::<Vec<_>>()
        );

        // Uninstall removes weft's routes and nothing else.
        assert_eq!(routes.remove_all().await.unwrap(), 3);
        assert!(routes.list().await.unwrap().is_empty());
        let mut dump = handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut foreign_left = false;
        while let Some(m) = dump.try_next().await.unwrap() {
            foreign_left |= m.header.protocol == RouteProtocol::Static
                && m.header.destination_prefix_length == 24;
        }
        assert!(foreign_left, "the static route of another owner survived");
    });
    if !ran {
        eprintln!("skipped");
    }
}

#[test]
fn a_failure_names_the_route() {
    in_private_netns(|handle| async move {
        let routes = Routes::new(handle);
        // Interface 999 does not exist.
        let bad: BTreeSet<WeftRoute> = [WeftRoute::Device {
            dst: net("10.244.5.0/26"),
            ifindex: 999,
            src: None,
        }]
        .into();
        let err = routes.reconcile(&bad, Stale::Remove).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("install route 10.244.5.0/26 dev #999:"),
            "{err}"
        );
        assert!(routes.list().await.unwrap().is_empty());
    });
}
