//! weft's wire formats: VXLAN (RFC 7348), IP-in-IP, the outer headers,
//! checksums, ECN across the tunnel (RFC 6040), ICMP "fragmentation needed" /
//! "packet too big", flow hashing and TCP segmentation/coalescing.
//!
//! No I/O and no allocation. Parsers are typed, checked views over byte
//! buffers in the manner of smoltcp's `wire` module: `new_checked` validates
//! lengths once, accessors then read fields without further checks. Every
//! parser returns [`Error`] for bad input and never panics, on any bytes.
//!
//! Encapsulation writes headers into headroom reserved in front of the inner
//! packet, in the caller's buffer; decapsulation returns the inner packet's
//! byte range in the buffer it was given.
//!
//! ```
//! use encap::{vxlan::{Vni, VxlanEncap, VxlanDecap}, MacAddr, OuterIp};
//! let mut buf = [0u8; 128];
//! // An inner IPv4 packet of 28 bytes at offset 64, headroom in front.
//! let inner = 64..92;
//! buf[64] = 0x45;
//! buf[66..68].copy_from_slice(&28u16.to_be_bytes());
//! let vni = Vni::new(42).unwrap();
//! let enc = VxlanEncap::new(vni, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
//! let outer = OuterIp::new("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap());
//! let start = enc.encap(&mut buf, inner, &outer).unwrap();
//! assert_eq!(start, 64 - encap::mtu::VXLAN_V4_OVERHEAD);
//! let dec = VxlanDecap { vni, port: 4789 }.decap(&mut buf[start..92]).unwrap();
//! assert_eq!(dec.inner, 50..78);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod ecn;
pub mod error;
pub mod ethernet;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod icmp;
pub mod ip;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod mtu;
pub mod nd;
pub mod segment;
pub mod tcp;
pub mod tunnel;
pub mod udp;
pub mod virtio;
pub mod vxlan;

pub use error::{Error, Layer, Result};
pub use ethernet::MacAddr;
pub use ip::{Family, IpPacket};
pub use mtu::Encapsulation;
pub use tunnel::{Decapsulated, OuterIp};
