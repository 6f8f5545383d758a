//! The per-packet paths allocate nothing: encap, decap, split, coalesce and
//! ICMP construction run under a counting allocator that must stay at zero.

use encap::ecn::Ecn;
use encap::segment::{split_tcp, ChecksumFill, Layout, TcpCoalescer};
use encap::vxlan::{Vni, VxlanDecap, VxlanEncap};
use encap::{icmp, ipip, MacAddr, OuterIp};
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(|c| c.get());
    f();
    ALLOCS.with(|c| c.get()) - before
}

#[test]
fn hot_paths_do_not_allocate() {
    let mut buf = vec![0u8; 128 + 1400];
    encap::ipv4::Ipv4Header {
        src: [10, 244, 0, 2].into(),
        dst: [10, 244, 1, 2].into(),
        protocol: 6,
        tos: 2,
        ttl: 63,
        ident: 1,
        dont_frag: true,
        payload_len: 1380,
    }
    .write(&mut buf[128..])
    .unwrap();
    buf[128 + 32] = 5 << 4;
    buf[128 + 33] = 0x10;
    let vni = Vni::new(9).unwrap();
    let enc = VxlanEncap::new(
        vni,
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
    );
    let dec = VxlanDecap { vni, port: 4789 };
    let v4 = OuterIp::new("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap());
    let v6 = OuterIp::new("fd00:99::1".parse().unwrap(), "fd00:99::2".parse().unwrap());
    let inner = buf[128..].to_vec();
    let mut seg_out = vec![0u8; 64 * 1600];
    let mut lens = [0usize; 64];
    let mut merged = vec![0u8; 70_000];
    let mut icmp_out = [0u8; 1300];
    let end = buf.len();
    let n = allocations_during(|| {
        for outer in [&v4, &v6] {
            let s = enc.encap(&mut buf, 128..end, outer).unwrap();
            dec.decap(&mut buf[s..]).unwrap();
            let s = enc.encap_payload(&mut buf, 128..end).unwrap();
            dec.decap_payload(&mut buf[s..], Ecn::Ce).unwrap();
            let s = ipip::encap(&mut buf, 128..end, outer).unwrap();
            ipip::decap(&mut buf[s..]).unwrap();
        }
        let layout = Layout {
            headroom: 50,
            stride: 1600,
        };
        let k = split_tcp(&inner, 500, &mut seg_out, layout, &mut lens).unwrap();
        let mut c = TcpCoalescer::start(&mut merged, &seg_out[50..50 + lens[0]], true).unwrap();
        for i in 1..k {
            c.push(&seg_out[i * 1600 + 50..i * 1600 + 50 + lens[i]])
                .unwrap();
        }
        c.finish(ChecksumFill::Partial);
        icmp::frag_needed_v4(&inner, [169, 254, 1, 1].into(), 1000, &mut icmp_out).unwrap();
        // Error paths do not allocate either.
        let _ = dec.decap(&mut [0x45u8; 30]);
        let _ = ipip::decap(&mut []);
    });
    assert_eq!(n, 0, "{n} allocations on the per-packet paths");
    // The counter works: a Vec allocates.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}
