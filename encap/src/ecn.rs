//! ECN across the tunnel (RFC 6040).
//!
//! On encapsulation weft is a "normal mode" ingress: the outer header gets
//! the inner TOS byte whole, so DSCP and ECN (including CE) are copied.
//! On decapsulation the inner ECN field is combined with the outer one by
//! RFC 6040's table, so a CE mark set by a congested underlay survives, and a
//! CE outer over a Not-ECT inner packet is dropped (the end hosts could not
//! see the mark, so the only signal left is loss).

use crate::error::{Error, Result};

/// The two ECN bits of a TOS / traffic-class byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecn {
    /// 00: not ECN-capable transport.
    NotEct,
    /// 01: ECN-capable transport, codepoint 1.
    Ect1,
    /// 10: ECN-capable transport, codepoint 0.
    Ect0,
    /// 11: congestion experienced.
    Ce,
}

impl Ecn {
    /// The ECN field of a TOS byte.
    pub fn from_tos(tos: u8) -> Ecn {
        match tos & 0b11 {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// The two bits.
    pub fn bits(self) -> u8 {
        match self {
            Ecn::NotEct => 0,
            Ecn::Ect1 => 1,
            Ecn::Ect0 => 2,
            Ecn::Ce => 3,
        }
    }

    /// `tos` with its ECN field replaced by this value.
    pub fn apply(self, tos: u8) -> u8 {
        (tos & !0b11) | self.bits()
    }
}

/// The outer TOS for an inner TOS: DSCP and ECN copied (RFC 6040 normal
/// mode, RFC 2983 uniform DSCP).
#[inline]
pub fn encap_tos(inner_tos: u8) -> u8 {
    inner_tos
}

/// RFC 6040 section 4.2: the ECN field the inner packet leaves the tunnel
/// with, or [`Error::EcnCeOverNotEct`] when it must be dropped.
#[inline]
pub fn decap(outer: Ecn, inner: Ecn) -> Result<Ecn> {
    match (inner, outer) {
        (Ecn::NotEct, Ecn::Ce) => Err(Error::EcnCeOverNotEct),
        (Ecn::NotEct, _) => Ok(Ecn::NotEct),
        (_, Ecn::Ce) => Ok(Ecn::Ce),
        (Ecn::Ect0, Ecn::Ect1) => Ok(Ecn::Ect1),
        (inner, _) => Ok(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ecn::*;

    #[test]
    fn rfc6040_figure_4() {
        // Rows: arriving inner; columns: arriving outer Not-ECT, ECT(0), ECT(1), CE.
        let outer = [NotEct, Ect0, Ect1, Ce];
        let table: [(Ecn, [Option<Ecn>; 4]); 4] = [
            (NotEct, [Some(NotEct), Some(NotEct), Some(NotEct), None]),
            (Ect0, [Some(Ect0), Some(Ect0), Some(Ect1), Some(Ce)]),
            (Ect1, [Some(Ect1), Some(Ect1), Some(Ect1), Some(Ce)]),
            (Ce, [Some(Ce), Some(Ce), Some(Ce), Some(Ce)]),
        ];
        for (inner, row) in table {
            for (o, want) in outer.iter().zip(row) {
                assert_eq!(decap(*o, inner).ok(), want, "inner {inner:?} outer {o:?}");
            }
        }
    }

    #[test]
    fn tos_round_trip() {
        for tos in 0..=255u8 {
            let e = Ecn::from_tos(tos);
            assert_eq!(e.apply(tos), tos);
            assert_eq!(e.bits(), tos & 3);
            assert_eq!(encap_tos(tos), tos);
        }
        assert_eq!(Ce.apply(0xb8), 0xbb);
    }
}
