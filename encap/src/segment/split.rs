//! Super-packet → segments: TCP (TSO) and UDP (USO) super-packets cut
//! at a fixed stride with headroom for tunnel headers.

use super::{parse_tcp, parse_udp, pseudo, set_ip_lengths, Layout};
use crate::checksum::Checksum;
use crate::error::{Error, Layer, Result};
use crate::ip::Family;
use crate::ipv4::PROTO_UDP;
use crate::tcp::{self};
use core::net::IpAddr;

/// Splits a TCP super-packet into segments of at most `mss` payload bytes,
/// written at `layout` positions in `out`, their lengths in `lens`. Each
/// segment gets its IP length, IPv4 id (+1 per segment) and header checksum,
/// TCP sequence number and a full TCP checksum; FIN and PSH stay on the last
/// segment only, CWR on the first only. Returns the number of segments.
pub fn split_tcp(
    packet: &[u8],
    mss: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
) -> Result<usize> {
    split(packet, mss, out, layout, lens, true).map(|s| s.segments)
}

/// Where [`split_tcp_headers`] left things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitHeaders {
    /// Number of segments.
    pub segments: usize,
    /// Length of each segment's IP + TCP headers.
    pub header_len: usize,
    /// Payload bytes per segment (the last may have fewer).
    pub mss: usize,
}

impl SplitHeaders {
    /// The payload of segment `i`, in place in the super-packet.
    pub fn payload<'a>(&self, packet: &'a [u8], i: usize) -> &'a [u8] {
        let total = packet.len().min(match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 4 => usize::from(u16::from_be_bytes([packet[2], packet[3]])),
            Some(6) if packet.len() >= 6 => {
                40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]))
            }
            _ => packet.len(),
        });
        let start = (self.header_len + i * self.mss).min(total);
        &packet[start..(start + self.mss).min(total)]
    }
}

/// As [`split_tcp`], but writes only each segment's headers into its slot
/// (`lens[i]` = header length) and leaves the payloads in place: segment `i`
/// is the slot's headers followed by [`SplitHeaders::payload`]`(packet, i)`,
/// for a scatter-gather send (one iovec pair per segment) with no copy of
/// the payload at all.
pub fn split_tcp_headers(
    packet: &[u8],
    mss: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
) -> Result<SplitHeaders> {
    split(packet, mss, out, layout, lens, false)
}

fn split(
    packet: &[u8],
    mss: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
    copy: bool,
) -> Result<SplitHeaders> {
    if mss == 0 {
        return Err(Error::Malformed {
            layer: Layer::Tcp,
            what: "MSS of zero",
        });
    }
    let p = parse_tcp(packet)?;
    let hdr_len = p.hdr_len();
    let payload = &packet[hdr_len..p.total];
    let n = payload.len().div_ceil(mss).max(1);
    let per_slot = hdr_len + if copy { mss } else { 0 };
    let last_len = if copy {
        payload.len() - (n - 1) * mss
    } else {
        0
    };
    check_room(
        n,
        lens.len(),
        layout,
        per_slot,
        hdr_len + last_len,
        out.len(),
    )?;
    let seq0 = u32::from_be_bytes([
        packet[p.ip_hl + 4],
        packet[p.ip_hl + 5],
        packet[p.ip_hl + 6],
        packet[p.ip_hl + 7],
    ]);
    let flags0 = packet[p.ip_hl + 13];
    let id0 = u16::from_be_bytes([packet[4], packet[5]]);
    let addr_sum = pseudo(&p, 0);
    for i in 0..n {
        let chunk = &payload[i * mss..((i + 1) * mss).min(payload.len())];
        let at = i * layout.stride + layout.headroom;
        let seg_len = hdr_len + if copy { chunk.len() } else { 0 };
        let seg = &mut out[at..at + seg_len];
        seg[..hdr_len].copy_from_slice(&packet[..hdr_len]);
        if copy {
            seg[hdr_len..].copy_from_slice(chunk);
        }
        let ident = (p.family == Family::V4).then(|| id0.wrapping_add(i as u16));
        set_ip_lengths(seg, &p, chunk.len(), ident);
        let t = &mut seg[p.ip_hl..hdr_len];
        let seq = seq0.wrapping_add((i * mss) as u32);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 != n {
            flags &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
        }
        if i != 0 {
            flags &= !tcp::FLAG_CWR;
        }
        t[13] = flags;
        t[16..18].fill(0);
        // The TCP header has an even length, so header and payload sums add.
        let mut c = addr_sum;
        c.add_u32((p.l4_hl + chunk.len()) as u32).add(t).add(chunk);
        t[16..18].copy_from_slice(&c.finish().to_be_bytes());
        lens[i] = seg_len;
    }
    Ok(SplitHeaders {
        segments: n,
        header_len: hdr_len,
        mss,
    })
}

/// Checks that `n` pieces fit: as many length slots, a stride that holds
/// `per_slot` bytes after the headroom (when there is more than one), and
/// an output buffer that reaches the end of the last piece (`last` bytes).
fn check_room(
    n: usize,
    slots: usize,
    layout: Layout,
    per_slot: usize,
    last: usize,
    out: usize,
) -> Result<()> {
    if n > slots {
        return Err(Error::NoRoom {
            need: n,
            have: slots,
        });
    }
    if n > 1 && layout.stride < layout.headroom + per_slot {
        return Err(Error::NoRoom {
            need: layout.headroom + per_slot,
            have: layout.stride,
        });
    }
    let need = (n - 1) * layout.stride + layout.headroom + last;
    if out < need {
        return Err(Error::NoRoom { need, have: out });
    }
    Ok(())
}

/// Splits a UDP super-packet (virtio `GSO_UDP_L4`) into datagrams of at
/// most `size` payload bytes each, written at `layout` positions in `out`,
/// their lengths in `lens`. Each datagram gets the IP header (its length,
/// IPv4 id +1 per datagram and header checksum) and the UDP header (its
/// length and a full checksum) of the original. Returns the number of
/// datagrams.
pub fn split_udp(
    packet: &[u8],
    size: usize,
    out: &mut [u8],
    layout: Layout,
    lens: &mut [usize],
) -> Result<usize> {
    if size == 0 {
        return Err(Error::Malformed {
            layer: Layer::Udp,
            what: "segment size of zero",
        });
    }
    let p = parse_udp(packet)?;
    let hdr_len = p.hdr_len();
    let payload = &packet[hdr_len..p.total];
    let n = payload.len().div_ceil(size).max(1);
    let last_len = payload.len() - (n - 1) * size;
    check_room(
        n,
        lens.len(),
        layout,
        hdr_len + size,
        hdr_len + last_len,
        out.len(),
    )?;
    let id0 = u16::from_be_bytes([packet[4], packet[5]]);
    for i in 0..n {
        let chunk = &payload[i * size..((i + 1) * size).min(payload.len())];
        let at = i * layout.stride + layout.headroom;
        let seg = &mut out[at..at + hdr_len + chunk.len()];
        seg[..hdr_len].copy_from_slice(&packet[..hdr_len]);
        seg[hdr_len..].copy_from_slice(chunk);
        let ident = (p.family == Family::V4).then(|| id0.wrapping_add(i as u16));
        set_ip_lengths(seg, &p, chunk.len(), ident);
        let udp_len = 8 + chunk.len();
        let u = &mut seg[p.ip_hl..];
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[6..8].fill(0);
        let mut c = match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Checksum::pseudo_v4(s, d, PROTO_UDP, udp_len as u32),
            (IpAddr::V6(s), IpAddr::V6(d)) => Checksum::pseudo_v6(s, d, PROTO_UDP, udp_len as u32),
            _ => Checksum::new(),
        };
        // A computed zero is sent as all ones (zero means "no checksum").
        let sum = match c.add(&u[..udp_len]).finish() {
            0 => 0xffff,
            x => x,
        };
        u[6..8].copy_from_slice(&sum.to_be_bytes());
        lens[i] = hdr_len + chunk.len();
    }
    Ok(n)
}
