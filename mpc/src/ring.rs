//! The ring Z_2^64 (wrapping `u64`) and fixed-point encoding.
//!
//! Ring elements are `std::num::Wrapping<u64>` ([`R64`]) so that ndarray's generic
//! matrix products wrap instead of panicking on overflow.
//!
//! Fixed point: a real `v` is encoded as `round(v · 2^f)` in two's complement, with
//! `f` fractional bits ([`FixedPoint`], default [`DEFAULT_FRAC_BITS`] = 18). Encoding
//! rounds to nearest, so `|decode(encode(v)) − v| ≤ 2^−(f+1)` for `|v| < 2^(62−f)`.

use std::num::Wrapping;

use crate::error::{MpcError, Result};

/// One element of Z_2^64.
pub type R64 = Wrapping<u64>;

/// Default number of fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 18;

/// Zero of the ring.
pub const ZERO: R64 = Wrapping(0);

/// Fixed-point codec with `frac_bits` fractional bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        Self {
            frac_bits: DEFAULT_FRAC_BITS,
        }
    }
}

impl FixedPoint {
    /// A codec with `frac_bits` fractional bits; 8..=30 are accepted (16–20 is the useful
    /// range for training: products of two values are `2f` bits and must stay below 2^62).
    pub fn new(frac_bits: u32) -> Result<Self> {
        if !(8..=30).contains(&frac_bits) {
            return Err(MpcError::Param(format!(
                "fractional bits must be in 8..=30, got {frac_bits}"
            )));
        }
        Ok(Self { frac_bits })
    }

    /// Fractional bits.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// 2^f as a float.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// Largest magnitude that encodes without leaving the safe range (2^(62−f)).
    pub fn max_abs(&self) -> f64 {
        (1u64 << (62 - self.frac_bits)) as f64
    }

    /// Encodes `v` (rounded to nearest). Errors on NaN, infinities and `|v| ≥ 2^(62−f)`.
    pub fn encode(&self, v: f64) -> Result<R64> {
        let reason = if v.is_nan() {
            Some("not a number")
        } else if !v.is_finite() {
            Some("infinite")
        } else if v.abs() >= self.max_abs() {
            Some("out of range")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(MpcError::Encode {
                value: v,
                frac_bits: self.frac_bits,
                reason,
            });
        }
        Ok(Wrapping((v * self.scale()).round() as i64 as u64))
    }

    /// Encodes a slice.
    pub fn encode_all(&self, vs: &[f64]) -> Result<Vec<R64>> {
        vs.iter().map(|&v| self.encode(v)).collect()
    }

    /// Decodes a ring element as a signed fixed-point number.
    pub fn decode(&self, x: R64) -> f64 {
        x.0 as i64 as f64 / self.scale()
    }

    /// Decodes a slice.
    pub fn decode_all(&self, xs: &[R64]) -> Vec<f64> {
        xs.iter().map(|&x| self.decode(x)).collect()
    }
}

/// Serializes ring elements as little-endian words.
pub fn to_bytes(xs: &[R64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * 8);
    for x in xs {
        out.extend_from_slice(&x.0.to_le_bytes());
    }
    out
}

/// Serializes plain words as little-endian bytes.
pub fn words_to_bytes(xs: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * 8);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parses little-endian words; `None` if the length is not a multiple of 8.
pub fn words_from_bytes(bytes: &[u8]) -> Option<Vec<u64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_error_is_half_ulp(v in -1.0e6f64..1.0e6, f in 12u32..=24) {
            let fp = FixedPoint::new(f).unwrap();
            let back = fp.decode(fp.encode(v).unwrap());
            prop_assert!((back - v).abs() <= 0.5 / fp.scale() + v.abs() * f64::EPSILON);
        }

        #[test]
        fn encoding_is_additive_up_to_one_ulp(a in -1.0e5f64..1.0e5, b in -1.0e5f64..1.0e5) {
            let fp = FixedPoint::default();
            let s = fp.encode(a).unwrap() + fp.encode(b).unwrap();
            prop_assert!((fp.decode(s) - (a + b)).abs() <= 1.0 / fp.scale() + 1e-9);
        }

        #[test]
        fn bytes_roundtrip(xs in proptest::collection::vec(any::<u64>(), 0..50)) {
            let r: Vec<R64> = xs.iter().map(|&x| Wrapping(x)).collect();
            prop_assert_eq!(words_from_bytes(&to_bytes(&r)).unwrap(), xs);
        }
    }

    #[test]
    fn rejects_non_finite_and_out_of_range() {
        let fp = FixedPoint::default();
        assert!(fp.encode(f64::NAN).is_err());
        assert!(fp.encode(f64::INFINITY).is_err());
        assert!(fp.encode(fp.max_abs()).is_err());
        assert!(fp.encode(-fp.max_abs() + 1.0).is_ok());
        assert!(FixedPoint::new(40).is_err());
        assert!(words_from_bytes(&[1, 2, 3]).is_none());
    }
}
