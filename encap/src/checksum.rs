//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The sum is taken over big-endian 32-bit words into a 64-bit accumulator:
//! because 2^16 ≡ 1 (mod 2^16 − 1), folding that sum gives the same result
//! as summing 16-bit words, at half the additions. Four independent
//! accumulators let the CPU overlap the adds.

use core::net::{Ipv4Addr, Ipv6Addr};

/// A running ones-complement sum. Feed it with [`Checksum::add`] (every slice
/// but the last must have an even length) and read it with
/// [`Checksum::finish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    /// An empty sum.
    #[inline]
    pub const fn new() -> Self {
        Checksum(0)
    }

    /// Adds the bytes of `data`, as 16-bit big-endian words (an odd last byte
    /// is padded with zero).
    #[inline]
    pub fn add(&mut self, data: &[u8]) -> &mut Self {
        self.0 = add_carry(self.0, sum_words(data));
        self
    }

    /// Adds one 16-bit word.
    #[inline]
    pub fn add_u16(&mut self, word: u16) -> &mut Self {
        self.0 = add_carry(self.0, u64::from(word));
        self
    }

    /// Adds one 32-bit value as two 16-bit words.
    #[inline]
    pub fn add_u32(&mut self, value: u32) -> &mut Self {
        self.0 = add_carry(self.0, u64::from(value));
        self
    }

    /// Adds a partial sum previously obtained with [`Checksum::fold`].
    #[inline]
    pub fn add_folded(&mut self, folded: u16) -> &mut Self {
        self.add_u16(folded)
    }

    /// The sum folded to 16 bits, not complemented.
    #[inline]
    pub fn fold(&self) -> u16 {
        fold(self.0)
    }

    /// The checksum field value: the complement of the folded sum.
    #[inline]
    pub fn finish(&self) -> u16 {
        !self.fold()
    }

    /// The TCP/UDP pseudo-header over IPv4.
    #[inline]
    pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> Self {
        let mut c = Checksum::new();
        c.add_u32(u32::from(src))
            .add_u32(u32::from(dst))
            .add_u16(u16::from(proto))
            .add_u32(len);
        c
    }

    /// The TCP/UDP/ICMPv6 pseudo-header over IPv6.
    #[inline]
    pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> Self {
        let mut c = Checksum::new();
        c.add(&src.octets())
            .add(&dst.octets())
            .add_u32(len)
            .add_u16(u16::from(proto));
        c
    }
}

#[inline]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// Folds a wide ones-complement sum to 16 bits.
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The ones-complement sum of `data` as big-endian 16-bit words, folded to
/// 16 bits (returned widened, ready to add to other sums).
///
/// The loop sums native-endian (little-endian on x86) 32-bit words into u64
/// lanes, which the compiler vectorises with plain SSE2; RFC 1071's byte-order
/// independence lets the folded result be byte-swapped once at the end.
#[inline]
pub fn sum_words(data: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    // Each lane holds at most len/32 values below 2^32: no overflow below
    // 2^37 bytes.
    let mut sum: u64 = lanes.iter().sum();
    let mut quads = blocks.remainder().chunks_exact(4);
    for w in &mut quads {
        sum += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut words = quads.remainder().chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_ne_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    let native = fold(sum);
    u64::from(if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    })
}

/// The Internet checksum of `data`, ready to store in a header field.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data))
}

/// RFC 1624 eqn. 3: the checksum field after one 16-bit word of the covered
/// data changed from `old` to `new`.
#[inline]
pub fn update(field: u16, old: u16, new: u16) -> u16 {
    let sum = u64::from(!field) + u64::from(!old) + u64::from(new);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from(pair[0]) << 8
            };
            sum += u32::from(w);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic header whose checksum is b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] = 0x3f; // TTL 64 -> 63
        let new = u16::from_be_bytes([h[8], h[9]]);
        let updated = update(0xb861, old, new);
        h[10..12].fill(0);
        assert_eq!(updated, checksum(&h));
    }

    proptest::proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(checksum(&data), reference(&data));
        }

        #[test]
        fn split_sums_add_up(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600), cut in 0usize..300) {
            let cut = (cut * 2).min(data.len() & !1);
            let mut c = Checksum::new();
            c.add(&data[..cut]).add(&data[cut..]);
            proptest::prop_assert_eq!(c.finish(), checksum(&data));
        }
    }
}
