//! Address allocation from the node's pod blocks, persisted on disk.
//!
//! Every change happens under an exclusive `flock` on `<dir>/lock`, reads
//! `<dir>/allocations.json`, and writes the new state to a temporary file
//! that is fsynced and renamed over the old one (then the directory is
//! fsynced). A process killed at any point leaves either the old or the new
//! state, never a torn one, so an address is never handed out twice. A crash
//! between reserving and wiring can leave a reservation behind; DEL or GC
//! releases it.

use super::spec::{code, CniError};
use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One reserved address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The address.
    pub ip: IpAddr,
    /// The container it belongs to.
    pub container_id: String,
    /// The interface in that container.
    pub ifname: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    allocations: Vec<Allocation>,
    /// The last address handed out per block: allocation continues after
    /// it, so a just-released address is not reused at once.
    last: BTreeMap<String, IpAddr>,
}

/// The allocation store in one directory.
pub struct Store {
    dir: PathBuf,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        code::IO_FAILURE,
        format!("IPAM store: cannot {what}"),
        format!("{}: {e}", path.display()),
    )
}

fn nth(block: &IpNet, i: u128) -> IpAddr {
    match block {
        IpNet::V4(n) => IpAddr::V4((u32::from(n.network()) + i as u32).into()),
        IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) + i).into()),
    }
}

fn size(block: &IpNet) -> u128 {
    1u128 << (block.max_prefix_len() - block.prefix_len()).min(64)
}

impl Store {
    /// The store in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Store, CniError> {
        fs::create_dir_all(dir).map_err(|e| io_error("create the state directory", dir, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("allocations.json")
    }

    /// Runs `f` on the state under the lock; writes it back if `f` says so.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(T, bool), CniError>,
    ) -> Result<T, CniError> {
        let lock_path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("open the lock file", &lock_path, e))?;
        let _lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_error("lock", &lock_path, e))?;
        let path = self.state_path();
        let mut state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_error("read the state (corrupt; not overwritten)", &path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: 1,
                ..State::default()
            },
            Err(e) => return Err(io_error("read the state", &path, e)),
        };
        let (out, dirty) = f(&mut state)?;
        if dirty {
            self.write_atomically(&state)?;
        }
        Ok(out)
    }

    fn write_atomically(&self, state: &State) -> Result<(), CniError> {
        let path = self.state_path();
        let tmp = self
            .dir
            .join(format!("allocations.json.tmp-{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(state).expect("plain data");
        let mut f = File::create(&tmp).map_err(|e| io_error("write the state", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| io_error("write the state", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error("replace the state", &path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync the state directory", &self.dir, e))?;
        Ok(())
    }

    /// Reserves one address per family of `blocks` for (container, ifname),
    /// or returns the ones it already holds (ADD is idempotent). Fails with
    /// code 11 (try again later) when a family's blocks are full.
    pub fn allocate(
        &self,
        blocks: &[IpNet],
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, CniError> {
        self.locked(|s| {
            let held: Vec<IpAddr> = s
                .allocations
                .iter()
                .filter(|a| a.container_id == container_id && a.ifname == ifname)
                .map(|a| a.ip)
                .collect();
            if !held.is_empty() {
                return Ok((held, false));
            }
            let mut got = Vec::new();
            for v4 in [true, false] {
                let family: Vec<&IpNet> = blocks.iter().filter(|b| b.addr().is_ipv4() == v4).collect();
                if family.is_empty() {
                    continue;
                }
                let taken: std::collections::HashSet<IpAddr> = s.allocations.iter().map(|a| a.ip).collect();
                let mut found = None;
                'blocks: for block in family {
                    let n = size(block);
                    let after = s.last.get(&block.to_string()).map(|last| match (last, block) {
                        (IpAddr::V4(l), IpNet::V4(b)) => u128::from(u32::from(*l).wrapping_sub(u32::from(b.network()))),
                        (IpAddr::V6(l), IpNet::V6(b)) => u128::from(*l).wrapping_sub(u128::from(b.network())),
                        _ => 0,
                    });
                    // Index 0 (the block's network address) stays for the node.
                    for k in 0..n {
                        let i = (after.unwrap_or(0) + 1 + k) % n;
                        if i == 0 {
                            continue;
                        }
                        let ip = nth(block, i);
                        if !taken.contains(&ip) {
                            s.last.insert(block.to_string(), ip);
                            found = Some(ip);
                            break 'blocks;
                        }
                    }
                }
                match found {
                    Some(ip) => got.push(ip),
                    None => {
                        return Err(CniError::new(
                            code::TRY_AGAIN,
                            format!("no free IPv{} address in this node's blocks", if v4 { 4 } else { 6 }),
                            "the node's blocks are full and weftd could not be asked for another; try again later",
                        ))
                    }
                }
            }
            if got.is_empty() {
                return Err(CniError::new(code::INVALID_CONFIG, "no pod blocks configured", "set \"blocks\" in the network configuration"));
            }
            for ip in &got {
                s.allocations.push(Allocation { ip: *ip, container_id: container_id.into(), ifname: ifname.into() });
            }
            Ok((got, true))
        })
    }

    /// Releases what (container, ifname) holds; returns it (empty if none).
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        self.locked(|s| {
            let (gone, kept): (Vec<Allocation>, Vec<Allocation>) = s
                .allocations
                .drain(..)
                .partition(|a| a.container_id == container_id && a.ifname == ifname);
            s.allocations = kept;
            let dirty = !gone.is_empty();
            Ok((gone.into_iter().map(|a| a.ip).collect(), dirty))
        })
    }

    /// Releases every allocation whose (container, ifname) is not in `valid`.
    pub fn gc(&self, valid: &[(String, String)]) -> Result<Vec<Allocation>, CniError> {
        self.locked(|s| {
            let (keep, gone): (Vec<Allocation>, Vec<Allocation>) =
                s.allocations.drain(..).partition(|a| {
                    valid
                        .iter()
                        .any(|(id, ifn)| *id == a.container_id && *ifn == a.ifname)
                });
            s.allocations = keep;
            let dirty = !gone.is_empty();
            Ok((gone, dirty))
        })
    }

    /// All current allocations.
    pub fn allocations(&self) -> Result<Vec<Allocation>, CniError> {
        self.locked(|s| Ok((s.allocations.clone(), false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "weft-ipam-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        (Store::open(&dir).unwrap(), dir)
    }

    #[test]
    fn allocate_is_idempotent_and_round_robin() {
        let (s, dir) = store();
        let blocks: Vec<IpNet> = vec![
            "10.244.0.0/30".parse().unwrap(),
            "fd00::/126".parse().unwrap(),
        ];
        let a = s.allocate(&blocks, "c1", "eth0").unwrap();
        assert_eq!(
            a,
            vec![
                "10.244.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(
            s.allocate(&blocks, "c1", "eth0").unwrap(),
            a,
            "same container and interface: same addresses"
        );
        let b = s.allocate(&blocks, "c2", "eth0").unwrap();
        assert_eq!(b[0], "10.244.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(s.release("c1", "eth0").unwrap().len(), 2);
        // .1 was just freed; allocation continues after the last one.
        let c = s.allocate(&blocks, "c3", "eth0").unwrap();
        assert_eq!(c[0], "10.244.0.3".parse::<IpAddr>().unwrap());
        let d = s.allocate(&blocks, "c4", "eth0").unwrap();
        assert_eq!(d[0], "10.244.0.1".parse::<IpAddr>().unwrap());
        // Full: code 11, and nothing reserved for the failed attempt.
        let e = s.allocate(&blocks, "c5", "eth0").unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN);
        assert_eq!(s.allocations().unwrap().len(), 6);
        assert!(s
            .allocations()
            .unwrap()
            .iter()
            .all(|a| a.container_id != "c5"));
        let gone = s.gc(&[("c3".into(), "eth0".into())]).unwrap();
        assert_eq!(gone.len(), 4);
        assert_eq!(s.allocations().unwrap().len(), 2);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_a_reset() {
        let (s, dir) = store();
        fs::write(dir.join("allocations.json"), b"{ torn").unwrap();
        let e = s
            .allocate(&["10.0.0.0/24".parse().unwrap()], "c", "eth0")
            .unwrap_err();
        assert_eq!(e.code, code::IO_FAILURE);
        assert_eq!(fs::read(dir.join("allocations.json")).unwrap(), b"{ torn");
        fs::remove_dir_all(dir).unwrap();
    }
}
