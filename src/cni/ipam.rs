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

/// What [`Store::allocate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocated {
    /// The addresses reserved (or already held).
    Addresses(Vec<IpAddr>),
    /// The node's blocks of one family (IPv4 if `v4`) have no free address.
    Full {
        /// The family that is full.
        v4: bool,
    },
}

/// Requested addresses must lie in a block (not its network address, which
/// is the node's), be free, and be one per family: code 7 otherwise.
fn check_requested(s: &State, blocks: &[IpNet], requested: &[IpAddr]) -> Result<(), CniError> {
    let refuse = |msg: String, details: String| CniError::new(code::INVALID_CONFIG, msg, details);
    for (i, ip) in requested.iter().enumerate() {
        if requested[..i].iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            return Err(refuse(
                "more than one address of a family requested".into(),
                format!(
                    "{ip} and {}",
                    requested[..i]
                        .iter()
                        .find(|o| o.is_ipv4() == ip.is_ipv4())
                        .expect("found")
                ),
            ));
        }
        let shown: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
        let Some(block) = blocks.iter().find(|b| b.contains(ip)) else {
            return Err(refuse(
                format!("requested address {ip} is not in this node's blocks"),
                format!("this node's blocks: {}", shown.join(", ")),
            ));
        };
        if *ip == block.network() {
            return Err(refuse(
                format!("requested address {ip} is the network address of block {block}"),
                "it is kept for the node".into(),
            ));
        }
        if let Some(a) = s.allocations.iter().find(|a| a.ip == *ip) {
            return Err(refuse(
                format!("requested address {ip} is in use"),
                format!("held by container {} ({})", a.container_id, a.ifname),
            ));
        }
    }
    Ok(())
}

/// The next free address of a family's blocks, continuing after the last
/// one handed out in each block (index 0, the block's network address,
/// stays for the node).
fn next_free(s: &State, family: &[&IpNet]) -> Option<IpAddr> {
    let taken: std::collections::HashSet<IpAddr> = s.allocations.iter().map(|a| a.ip).collect();
    for block in family {
        let n = size(block);
        let after = s
            .last
            .get(&block.to_string())
            .map(|last| match (last, block) {
                (IpAddr::V4(l), IpNet::V4(b)) => {
                    u128::from(u32::from(*l).wrapping_sub(u32::from(b.network())))
                }
                (IpAddr::V6(l), IpNet::V6(b)) => {
                    u128::from(*l).wrapping_sub(u128::from(b.network()))
                }
                _ => 0,
            });
        for k in 0..n {
            let i = (after.unwrap_or(0) + 1 + k) % n;
            if i == 0 {
                continue;
            }
            let ip = nth(block, i);
            if !taken.contains(&ip) {
                return Some(ip);
            }
        }
    }
    None
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

/// How many pod addresses a block gives (its network address, index 0,
/// stays for the node).
pub fn pod_addresses(block: &IpNet) -> u128 {
    size(block) - 1
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

    /// Reserves one address per family of the node's blocks for
    /// (container, ifname), or returns the ones it already holds (ADD is
    /// idempotent). `blocks` is read under the lock, so that weftd, which
    /// gives an emptied block back under the same lock, never has an
    /// address handed out from a block it is releasing. `requested`
    /// addresses (at most one per family) are reserved as asked when they
    /// lie in one of the blocks and are free, else the call fails with
    /// code 7; families not asked for get the next free address. A family
    /// whose blocks are full is [`Allocated::Full`], nothing reserved.
    pub fn allocate(
        &self,
        blocks: impl FnOnce() -> Result<Vec<IpNet>, CniError>,
        container_id: &str,
        ifname: &str,
        requested: &[IpAddr],
    ) -> Result<Allocated, CniError> {
        self.locked(|s| {
            let held: Vec<IpAddr> = s
                .allocations
                .iter()
                .filter(|a| a.container_id == container_id && a.ifname == ifname)
                .map(|a| a.ip)
                .collect();
            if !held.is_empty() {
                return Ok((Allocated::Addresses(held), false));
            }
            let blocks = blocks()?;
            if blocks.is_empty() {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    "no pod blocks configured",
                    "set \"blocks\" in the network configuration",
                ));
            }
            check_requested(s, &blocks, requested)?;
            let mut got = Vec::new();
            for v4 in [true, false] {
                if let Some(ip) = requested.iter().find(|ip| ip.is_ipv4() == v4) {
                    got.push(*ip);
                    continue;
                }
                let family: Vec<&IpNet> =
                    blocks.iter().filter(|b| b.addr().is_ipv4() == v4).collect();
                if family.is_empty() {
                    continue;
                }
                match next_free(s, &family) {
                    Some(ip) => got.push(ip),
                    None => return Ok((Allocated::Full { v4 }, false)),
                }
            }
            for ip in &got {
                if let Some(block) = blocks.iter().find(|b| b.contains(ip)) {
                    s.last.insert(block.to_string(), *ip);
                }
                s.allocations.push(Allocation {
                    ip: *ip,
                    container_id: container_id.into(),
                    ifname: ifname.into(),
                });
            }
            Ok((Allocated::Addresses(got), true))
        })
    }

    /// Runs `f` on the allocations while holding the lock: nothing is
    /// allocated meanwhile (weftd gives an empty block back this way).
    pub fn with_lock<T>(&self, f: impl FnOnce(&[Allocation]) -> T) -> Result<T, CniError> {
        self.locked(|s| Ok((f(&s.allocations), false)))
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

    fn alloc(
        s: &Store,
        blocks: &[IpNet],
        id: &str,
        want: &[IpAddr],
    ) -> Result<Allocated, CniError> {
        s.allocate(|| Ok(blocks.to_vec()), id, "eth0", want)
    }

    fn addrs(a: Allocated) -> Vec<IpAddr> {
        match a {
            Allocated::Addresses(v) => v,
            full => panic!("expected addresses, got {full:?}"),
        }
    }

    #[test]
    fn allocate_is_idempotent_and_round_robin() {
        let (s, dir) = store();
        let blocks: Vec<IpNet> = vec![
            "10.244.0.0/30".parse().unwrap(),
            "fd00::/126".parse().unwrap(),
        ];
        let a = addrs(alloc(&s, &blocks, "c1", &[]).unwrap());
        assert_eq!(
            a,
            vec![
                "10.244.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(
            addrs(alloc(&s, &blocks, "c1", &[]).unwrap()),
            a,
            "same container and interface: same addresses"
        );
        let b = addrs(alloc(&s, &blocks, "c2", &[]).unwrap());
        assert_eq!(b[0], "10.244.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(s.release("c1", "eth0").unwrap().len(), 2);
        // .1 was just freed; allocation continues after the last one.
        let c = addrs(alloc(&s, &blocks, "c3", &[]).unwrap());
        assert_eq!(c[0], "10.244.0.3".parse::<IpAddr>().unwrap());
        let d = addrs(alloc(&s, &blocks, "c4", &[]).unwrap());
        assert_eq!(d[0], "10.244.0.1".parse::<IpAddr>().unwrap());
        // Full: said so (the plugin then asks weftd for a block), and
        // nothing reserved for the failed attempt.
        assert_eq!(
            alloc(&s, &blocks, "c5", &[]).unwrap(),
            Allocated::Full { v4: true }
        );
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
        let e = alloc(&s, &["10.0.0.0/24".parse().unwrap()], "c", &[]).unwrap_err();
        assert_eq!(e.code, code::IO_FAILURE);
        assert_eq!(fs::read(dir.join("allocations.json")).unwrap(), b"{ torn");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn requested_addresses_are_given_when_free_and_in_a_block() {
        let (s, dir) = store();
        let blocks: Vec<IpNet> = vec![
            "10.244.0.0/28".parse().unwrap(),
            "10.244.0.64/28".parse().unwrap(),
            "fd00::/124".parse().unwrap(),
        ];
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        // In the second block, and the other family from the pool.
        let a = addrs(alloc(&s, &blocks, "c1", &[ip("10.244.0.70")]).unwrap());
        assert_eq!(a, vec![ip("10.244.0.70"), ip("fd00::1")]);
        // Both families asked for.
        let b = addrs(alloc(&s, &blocks, "c2", &[ip("fd00::9"), ip("10.244.0.9")]).unwrap());
        assert_eq!(b, vec![ip("10.244.0.9"), ip("fd00::9")]);
        let refused = |want: &[IpAddr], says: &str| {
            let e = alloc(&s, &blocks, "c3", want).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{e:?}");
            assert!(format!("{} {}", e.msg, e.details).contains(says), "{e:?}");
        };
        refused(&[ip("10.244.0.70")], "held by container c1");
        refused(&[ip("10.244.1.5")], "not in this node's blocks");
        refused(&[ip("10.244.0.64")], "network address");
        refused(
            &[ip("10.244.0.3"), ip("10.244.0.4")],
            "more than one address",
        );
        assert_eq!(
            s.allocations().unwrap().len(),
            4,
            "nothing reserved on refusal"
        );
        // The same attachment again: what it holds, whatever it asks.
        assert_eq!(
            addrs(alloc(&s, &blocks, "c1", &[ip("10.244.0.5")]).unwrap()),
            a
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_blocks_are_read_under_the_lock_and_errors_pass_through() {
        let (s, dir) = store();
        let e = s
            .allocate(
                || Err(CniError::new(code::TRY_AGAIN, "not yet", "")),
                "c",
                "eth0",
                &[],
            )
            .unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN);
        let seen = s.with_lock(|a| a.len()).unwrap();
        assert_eq!(seen, 0);
        fs::remove_dir_all(dir).unwrap();
    }
}
