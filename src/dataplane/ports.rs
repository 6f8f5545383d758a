//! Veth attachment: the pod ports weftd owns (the host ends of pod veths),
//! each with its packet socket, the pod's MAC and addresses.
//!
//! The table is read on every frame and written only when the CNI plugin
//! registers or unregisters a port: readers load an `Arc` snapshot
//! (arc-swap), writers copy, change and swap under a mutex only writers
//! take. Each port's socket is watched by one worker's epoll (chosen by
//! ifindex). The registered ports are kept in a file so a restarted weftd
//! takes them up again.

use super::sys::packet_socket::PacketSocket;
use arc_swap::ArcSwap;
use encap::MacAddr;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The MAC pods see as their gateway's (169.254.1.1 and the IPv6 gateway),
/// the same as with the TUN attachment. The host ends of the veths carry a
/// different one, so the host's own stack sees the pods' routed frames as
/// addressed to another host and drops them before IP: only weftd reads them.
pub const GATEWAY_MAC: MacAddr = MacAddr(crate::podnet::HOST_MAC);

/// What the CNI plugin registers, and what the ports file keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host end's interface name.
    pub name: String,
    /// The pod end's MAC.
    #[serde(with = "crate::podnet::mac_text")]
    pub mac: MacAddr,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
}

/// A registered port.
#[derive(Debug)]
pub struct Port {
    /// What was registered.
    pub spec: PortSpec,
    /// The host end's interface index.
    pub ifindex: u32,
    /// The packet socket on it.
    pub socket: PacketSocket,
}

impl Port {
    /// True if `ip` is one of the pod's addresses.
    #[inline]
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.spec.ips.contains(&ip)
    }
}

/// The port table and the workers' epolls.
pub struct Ports {
    table: ArcSwap<HashMap<u32, Arc<Port>>>,
    epolls: Vec<Epoll>,
    file: PathBuf,
    writer: Mutex<()>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("ports", &self.table.load().len())
            .field("file", &self.file)
            .finish()
    }
}

impl Ports {
    /// An empty table with one epoll per worker, persisted to `file`.
    pub fn new(workers: usize, file: PathBuf) -> std::io::Result<Ports> {
        let epolls = (0..workers.max(1))
            .map(|_| Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from))
            .collect::<Result<_, _>>()?;
        Ok(Ports {
            table: ArcSwap::from_pointee(HashMap::new()),
            epolls,
            file,
            writer: Mutex::new(()),
        })
    }

    /// Worker `k`'s epoll (ready events carry the port's ifindex).
    pub fn epoll(&self, k: usize) -> &Epoll {
        &self.epolls[k % self.epolls.len()]
    }

    /// The port with interface index `ifindex`.
    #[inline]
    pub fn get(&self, ifindex: u32) -> Option<Arc<Port>> {
        self.table.load().get(&ifindex).cloned()
    }

    /// All ports, for the admin view.
    pub fn all(&self) -> Vec<Arc<Port>> {
        let mut v: Vec<_> = self.table.load().values().cloned().collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    /// Opens a socket on the named interface and starts reading it; a port
    /// already registered under that name is replaced. Returns the ifindex.
    pub fn register(&self, spec: PortSpec) -> Result<u32, String> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let ifindex = nix::net::if_::if_nametoindex(spec.name.as_str())
            .map_err(|e| format!("port {}: no such interface ({e})", spec.name))?;
        if spec.ips.is_empty() {
            return Err(format!("port {}: no addresses", spec.name));
        }
        let socket = PacketSocket::open(ifindex)
            .map_err(|e| format!("port {}: packet socket: {e}", spec.name))?;
        let port = Arc::new(Port {
            spec,
            ifindex,
            socket,
        });
        let mut next: HashMap<u32, Arc<Port>> = (**self.table.load()).clone();
        next.retain(|_, p| p.spec.name != port.spec.name);
        if let Some(old) = next.insert(ifindex, Arc::clone(&port)) {
            let _ = self.epoll(ifindex as usize).delete(&old.socket);
        }
        self.epoll(ifindex as usize)
            .add(
                &port.socket,
                EpollEvent::new(EpollFlags::EPOLLIN, u64::from(ifindex)),
            )
            .map_err(|e| format!("port {}: epoll: {e}", port.spec.name))?;
        self.table.store(Arc::new(next));
        self.save();
        Ok(ifindex)
    }

    /// Stops reading the named port (its interface may be gone already).
    /// Returns what it held.
    pub fn unregister(&self, name: &str) -> Option<PortSpec> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next: HashMap<u32, Arc<Port>> = (**self.table.load()).clone();
        let (&ifindex, _) = next.iter().find(|(_, p)| p.spec.name == name)?;
        let port = next.remove(&ifindex)?;
        let _ = self.epoll(ifindex as usize).delete(&port.socket);
        self.table.store(Arc::new(next));
        self.save();
        Some(port.spec.clone())
    }

    /// Registers the ports the file lists whose interfaces still exist;
    /// returns them with their ifindex (the rest are reported and dropped).
    pub fn restore(&self) -> Vec<(PortSpec, u32)> {
        let specs: Vec<PortSpec> = match std::fs::read(&self.file) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{}: unreadable, ignored: {e}", self.file.display());
                    return vec![];
                }
            },
            Err(_) => return vec![],
        };
        let mut back = vec![];
        for spec in specs {
            match self.register(spec.clone()) {
                Ok(i) => back.push((spec, i)),
                Err(e) => tracing::info!("not restored: {e}"),
            }
        }
        self.save();
        back
    }

    /// Writes the table to the ports file (temp file + rename).
    fn save(&self) {
        let specs: Vec<PortSpec> = self.all().iter().map(|p| p.spec.clone()).collect();
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self.file.with_extension("tmp");
        let text = serde_json::to_vec_pretty(&specs).expect("ports serialise");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.file)) {
            tracing::warn!("{}: {e}", self.file.display());
        }
    }
}
