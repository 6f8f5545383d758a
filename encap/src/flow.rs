//! Flow hashing: the VXLAN UDP source port (RFC 7348 section 5) and the IPv6
//! flow label (RFC 6438) come from a hash of the inner flow, so one flow
//! keeps one path through ECMP underlays and different flows spread.
//!
//! The hash is fixed (no random seed) so it is stable per flow across
//! restarts and across nodes. It reads the 5-tuple where the packet has one
//! (TCP, UDP, SCTP, UDP-Lite, not a fragment) and the 3-tuple otherwise; all
//! fragments of a datagram hash alike. Never panics on any input.

/// The lowest VXLAN source port by default: Linux's vxlan device uses the
/// local port range, 32768-60999 unless a host changed it.
pub const SRC_PORT_MIN: u16 = 32768;
/// The highest VXLAN source port by default.
pub const SRC_PORT_MAX: u16 = 60999;

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K).rotate_left(29)
}

#[inline]
fn finish(mut h: u64) -> u32 {
    // murmur3's fmix64 finaliser.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

#[inline]
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

/// The flow hash of an IP packet (any bytes accepted; garbage hashes too).
#[inline]
pub fn flow_hash(packet: &[u8]) -> u32 {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let proto = packet[9];
            let frag = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0;
            let addrs = u64_at(packet, 12);
            let mut h = mix(0x4, addrs);
            let mut extra = u64::from(proto);
            if !frag && has_ports(proto) && ihl >= 20 && packet.len() >= ihl + 4 {
                let ports = u32::from_ne_bytes([
                    packet[ihl],
                    packet[ihl + 1],
                    packet[ihl + 2],
                    packet[ihl + 3],
                ]);
                extra |= u64::from(ports) << 8;
            }
            h = mix(h, extra);
            finish(h)
        }
        Some(6) if packet.len() >= 40 => {
            let proto = packet[6];
            let mut h = 0x6;
            for at in [8, 16, 24, 32] {
                h = mix(h, u64_at(packet, at));
            }
            let mut extra = u64::from(proto);
            if has_ports(proto) && packet.len() >= 44 {
                let ports = u32::from_ne_bytes([packet[40], packet[41], packet[42], packet[43]]);
                extra |= u64::from(ports) << 8;
            }
            finish(mix(h, extra))
        }
        _ => {
            let mut h = 0;
            for b in packet.iter().take(40) {
                h = mix(h, u64::from(*b));
            }
            finish(h)
        }
    }
}

/// Maps a flow hash onto `min..=max` (as Linux's `udp_flow_src_port` does:
/// multiply-shift, no modulo bias worth the name).
#[inline]
pub fn source_port(hash: u32, min: u16, max: u16) -> u16 {
    let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
    let span = u64::from(hi - lo) + 1;
    lo + ((u64::from(hash) * span) >> 32) as u16
}

/// The IPv6 flow label (20 bits, never zero) for a flow hash.
#[inline]
pub fn flow_label(hash: u32) -> u32 {
    let l = (hash ^ (hash >> 20)) & 0xfffff;
    if l == 0 {
        1
    } else {
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp4(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 244, 0, 2]);
        p[16..20].copy_from_slice(&[10, 244, 1, 2]);
        p[20..22].copy_from_slice(&src_port.to_be_bytes());
        p[22..24].copy_from_slice(&dst_port.to_be_bytes());
        p
    }

    #[test]
    fn stable_and_port_sensitive() {
        let a = tcp4(40000, 80);
        assert_eq!(flow_hash(&a), flow_hash(&a.clone()));
        // The payload and the IP id do not change the hash.
        let mut b = a.clone();
        b[4] = 9;
        b[39] = 1;
        assert_eq!(flow_hash(&a), flow_hash(&b));
        // Ports do.
        assert_ne!(flow_hash(&a), flow_hash(&tcp4(40001, 80)));
        // Fragments fall back to the 3-tuple: first and later fragments agree.
        let mut first = a.clone();
        first[6] = 0x20; // MF
        let mut later = tcp4(1, 2);
        later[7] = 10; // offset 80
        assert_eq!(flow_hash(&first), flow_hash(&later));
    }

    #[test]
    fn ports_spread_over_the_range() {
        let mut seen = std::collections::HashSet::new();
        for port in 0..2000u16 {
            let p = source_port(flow_hash(&tcp4(port, 443)), SRC_PORT_MIN, SRC_PORT_MAX);
            assert!((SRC_PORT_MIN..=SRC_PORT_MAX).contains(&p));
            seen.insert((p - SRC_PORT_MIN) / 1024);
        }
        // All 28 buckets of 1024 ports (the last one partial) are used by
        // 2000 flows.
        assert_eq!(seen.len(), 28);
    }

    #[test]
    fn port_range_edges() {
        assert_eq!(source_port(0, 49152, 65535), 49152);
        assert_eq!(source_port(u32::MAX, 49152, 65535), 65535);
        assert_eq!(source_port(u32::MAX, 5000, 5000), 5000);
        assert_eq!(source_port(u32::MAX, 6000, 5000), 6000);
        assert_ne!(flow_label(0), 0);
        assert!(flow_label(u32::MAX) <= 0xfffff);
    }

    #[test]
    fn never_panics_on_short_input() {
        for len in 0..60 {
            let mut p = vec![0x4f; len];
            let _ = flow_hash(&p);
            if let Some(b) = p.first_mut() {
                *b = 0x60;
            }
            let _ = flow_hash(&p);
        }
    }
}
