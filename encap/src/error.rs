//! The one error type of the wire formats.
//!
//! Every parser in this crate returns [`Error`] for truncated, malformed or
//! unsupported input; none of them panics on any byte string. The data path
//! counts drops by [`Error::reason`], a short stable name per variant.

use core::fmt;

/// Which header an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header (the inner frame of VXLAN).
    Ethernet,
    /// IPv4 header.
    Ipv4,
    /// IPv6 header.
    Ipv6,
    /// UDP header.
    Udp,
    /// TCP header.
    Tcp,
    /// VXLAN header.
    Vxlan,
    /// ICMP or ICMPv6 message.
    Icmp,
    /// The packet carried inside a tunnel.
    Inner,
    /// An ARP message.
    Arp,
    /// A caller-supplied output buffer.
    Buffer,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Udp => "udp",
            Layer::Tcp => "tcp",
            Layer::Vxlan => "vxlan",
            Layer::Icmp => "icmp",
            Layer::Inner => "inner",
            Layer::Arp => "arp",
            Layer::Buffer => "buffer",
        })
    }
}

/// Why a packet could not be parsed, built or forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the header (or its declared length) needs.
    Truncated {
        /// Header concerned.
        layer: Layer,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A field holds a value the format forbids (bad version, length, flag).
    Malformed {
        /// Header concerned.
        layer: Layer,
        /// The offending field and what was wrong with it.
        what: &'static str,
    },
    /// A checksum did not verify.
    Checksum {
        /// Header concerned.
        layer: Layer,
    },
    /// Well-formed, but not something weft carries (e.g. a fragmented outer
    /// packet, a non-IP inner frame, IPv6 extension headers before TCP).
    Unsupported {
        /// Header concerned.
        layer: Layer,
        /// What is not supported.
        what: &'static str,
    },
    /// A VXLAN packet for a VNI other than the one configured.
    WrongVni {
        /// VNI configured.
        expected: u32,
        /// VNI received.
        got: u32,
    },
    /// A UDP datagram to a port other than the VXLAN port configured.
    WrongPort {
        /// Port configured.
        expected: u16,
        /// Port received.
        got: u16,
    },
    /// RFC 6040: a CE-marked outer header over a Not-ECT inner packet must be
    /// dropped at decapsulation.
    EcnCeOverNotEct,
    /// The buffer has too little headroom in front of the inner packet for the
    /// headers to prepend.
    NoHeadroom {
        /// Bytes needed in front of the inner packet.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// An output buffer (or slot array) is too small for the result.
    NoRoom {
        /// Bytes (or slots) needed.
        need: usize,
        /// Bytes (or slots) available.
        have: usize,
    },
    /// Outer source and destination addresses are of different families.
    FamilyMismatch,
}

impl Error {
    /// A short, stable name for drop counters and logs, e.g. `"ipv4_truncated"`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Truncated { layer, .. } => match layer {
                Layer::Ethernet => "ethernet_truncated",
                Layer::Ipv4 => "ipv4_truncated",
                Layer::Ipv6 => "ipv6_truncated",
                Layer::Udp => "udp_truncated",
                Layer::Tcp => "tcp_truncated",
                Layer::Vxlan => "vxlan_truncated",
                Layer::Icmp => "icmp_truncated",
                Layer::Inner => "inner_truncated",
                Layer::Buffer => "buffer_truncated",
                Layer::Arp => "arp_truncated",
            },
            Error::Malformed { layer, .. } => match layer {
                Layer::Ethernet => "ethernet_malformed",
                Layer::Ipv4 => "ipv4_malformed",
                Layer::Ipv6 => "ipv6_malformed",
                Layer::Udp => "udp_malformed",
                Layer::Tcp => "tcp_malformed",
                Layer::Vxlan => "vxlan_malformed",
                Layer::Icmp => "icmp_malformed",
                Layer::Inner => "inner_malformed",
                Layer::Buffer => "buffer_malformed",
                Layer::Arp => "arp_malformed",
            },
            Error::Checksum { layer } => match layer {
                Layer::Ipv4 => "ipv4_bad_checksum",
                Layer::Udp => "udp_bad_checksum",
                Layer::Tcp => "tcp_bad_checksum",
                Layer::Icmp => "icmp_bad_checksum",
                _ => "bad_checksum",
            },
            Error::Unsupported { .. } => "unsupported",
            Error::WrongVni { .. } => "wrong_vni",
            Error::WrongPort { .. } => "wrong_port",
            Error::EcnCeOverNotEct => "ecn_ce_over_not_ect",
            Error::NoHeadroom { .. } => "no_headroom",
            Error::NoRoom { .. } => "no_room",
            Error::FamilyMismatch => "family_mismatch",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { layer, need, have } => {
                write!(f, "{layer}: truncated: need {need} bytes, have {have}")
            }
            Error::Malformed { layer, what } => write!(f, "{layer}: malformed: {what}"),
            Error::Checksum { layer } => write!(f, "{layer}: checksum does not verify"),
            Error::Unsupported { layer, what } => write!(f, "{layer}: unsupported: {what}"),
            Error::WrongVni { expected, got } => {
                write!(f, "vxlan: VNI {got} received, {expected} configured")
            }
            Error::WrongPort { expected, got } => {
                write!(f, "udp: destination port {got}, VXLAN port is {expected}")
            }
            Error::EcnCeOverNotEct => {
                f.write_str("ecn: CE outer over a Not-ECT inner packet (RFC 6040: drop)")
            }
            Error::NoHeadroom { need, have } => {
                write!(
                    f,
                    "buffer: {need} bytes of headroom needed, {have} available"
                )
            }
            Error::NoRoom { need, have } => {
                write!(f, "buffer: room for {need} needed, {have} available")
            }
            Error::FamilyMismatch => f.write_str("outer source and destination differ in family"),
        }
    }
}

impl std::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// Returns `Err(Truncated)` unless `have >= need`.
#[inline]
pub(crate) fn need(layer: Layer, need: usize, have: usize) -> Result<()> {
    if have < need {
        Err(Error::Truncated { layer, need, have })
    } else {
        Ok(())
    }
}
