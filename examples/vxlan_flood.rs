//! Floods a VXLAN port with hostile datagrams from inside a network
//! namespace (the lab's flood bench, netns-lab/flood.sh).
//!
//! vxlan_flood NETNS SRC_IP DST_IP:PORT SECONDS INNER_SRC INNER_DST VTEP_MAC KIND[,KIND...]
//! KIND: truncated | wrong-vni | i-flag-clear | spoofed-inner | valid

#[path = "../tests/support/flood.rs"]
mod flood;

use std::time::Duration;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 8 {
        eprintln!("usage: vxlan_flood NETNS SRC_IP DST_IP:PORT SECONDS INNER_SRC INNER_DST VTEP_MAC KINDS");
        std::process::exit(2);
    }
    let mac: Vec<u8> = a[6]
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("MAC like 02:00:00:00:00:01"))
        .collect();
    let mac: [u8; 6] = mac.try_into().expect("six MAC bytes");
    let packets: Vec<Vec<u8>> = a[7]
        .split(',')
        .map(|k| {
            let kind = flood::Kind::parse(k).expect("a known kind");
            flood::datagram(
                kind,
                1,
                a[4].parse().expect("inner src"),
                a[5].parse().expect("inner dst"),
                mac,
            )
        })
        .collect();
    let sent = flood::flood(
        &a[0],
        a[1].parse().expect("source address"),
        a[2].parse().expect("destination address:port"),
        packets,
        Duration::from_secs(a[3].parse().expect("seconds")),
    );
    println!("{sent}");
}
