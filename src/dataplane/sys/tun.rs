//! weft's TUN device: virtio-net headers and TSO/USO offloads on (tun-rs),
//! one queue per worker, and persistent, so the device and the routes
//! through it survive a weftd restart or upgrade (the gap is only the time
//! no process forwards).

use std::os::fd::AsRawFd;

mod sys {
    #![allow(missing_docs)]
    // TUNSETPERSIST = _IOW('T', 203, int). tun-rs has no persist option on
    // Linux; this is the one ioctl weft issues itself.
    nix::ioctl_write_int_bad!(tun_set_persist, 0x4004_54cb);
}

/// Opens (or re-attaches to) the TUN device `name` with `queues` queues.
pub fn open(name: &str, mtu: u16, queues: usize) -> std::io::Result<Vec<tun_rs::SyncDevice>> {
    let first = tun_rs::DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .offload(true)
        .multi_queue(queues > 1)
        .build_sync()?;
    set_persist(&first, true)?;
    let mut all = Vec::with_capacity(queues);
    for _ in 1..queues {
        all.push(first.try_clone()?);
    }
    all.insert(0, first);
    Ok(all)
}

/// Makes the device outlive its file descriptors (or not).
#[allow(unsafe_code)]
pub fn set_persist(dev: &tun_rs::SyncDevice, on: bool) -> std::io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an int by value on a TUN file descriptor
    // that `dev` keeps open for the duration of the call.
    unsafe { sys::tun_set_persist(dev.as_raw_fd(), i32::from(on)) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}
