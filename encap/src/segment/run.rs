//! A run of either kind, for the data path's in-place writes.

use super::{ChecksumFill, Coalesced, Refusal, TcpCoalescer, UdpCoalescer};
use crate::ipv4::PROTO_UDP;

/// What an [`InPlaceRun`] may merge, and how it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRules {
    /// Merge UDP datagrams too (the destination takes USO super-packets);
    /// TCP segments are always merged.
    pub udp: bool,
    /// Check every segment's transport checksum before merging it. Off only
    /// where a checksum over the same bytes was verified already (the
    /// outer UDP checksum of the datagram that carried them): the merged
    /// packet's checksum is recomputed, so an unchecked corrupt segment
    /// would otherwise be laundered.
    pub verify: bool,
}

/// A super-packet being built in place, of either transport: what a receive
/// path that merges whatever arrives holds.
#[derive(Debug)]
pub enum InPlaceRun<'a> {
    /// TCP segments ([`TcpCoalescer::start_in_place`]).
    Tcp(TcpCoalescer<'a>),
    /// UDP datagrams ([`UdpCoalescer`]).
    Udp(UdpCoalescer<'a>),
}

impl<'a> InPlaceRun<'a> {
    /// Starts a run with `first`, by its transport protocol: TCP always,
    /// UDP only with `rules.udp`. Returns where `first`'s payload lies in
    /// it.
    pub fn start(
        out: &'a mut [u8],
        first: &[u8],
        rules: RunRules,
    ) -> core::result::Result<(Self, core::ops::Range<usize>), Refusal> {
        let RunRules { udp, verify } = rules;
        let proto = match first.first().map(|b| b >> 4) {
            Some(4) => first.get(9),
            Some(6) => first.get(6),
            _ => None,
        };
        match proto {
            Some(&PROTO_UDP) if udp => UdpCoalescer::start_in_place(out, first, verify)
                .map(|(r, p)| (InPlaceRun::Udp(r), p)),
            Some(&PROTO_UDP) => Err(Refusal::NotUdp),
            _ => TcpCoalescer::start_in_place(out, first, verify)
                .map(|(r, p)| (InPlaceRun::Tcp(r), p)),
        }
    }

    /// Segments (datagrams) merged so far.
    pub fn segments(&self) -> usize {
        match self {
            InPlaceRun::Tcp(r) => r.segments(),
            InPlaceRun::Udp(r) => r.segments(),
        }
    }

    /// Merges `seg`; see [`TcpCoalescer::push_in_place`] and
    /// [`UdpCoalescer::push_in_place`].
    pub fn push(&mut self, seg: &[u8]) -> core::result::Result<core::ops::Range<usize>, Refusal> {
        match self {
            InPlaceRun::Tcp(r) => r.push_in_place(seg),
            InPlaceRun::Udp(r) => r.push_in_place(seg),
        }
    }

    /// Finishes the super-packet with a partial checksum (for NEEDS_CSUM).
    pub fn finish(self) -> Coalesced {
        match self {
            InPlaceRun::Tcp(r) => r.finish(ChecksumFill::Partial),
            InPlaceRun::Udp(r) => r.finish(),
        }
    }
}
