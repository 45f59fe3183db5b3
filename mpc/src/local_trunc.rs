//! SecureML local truncation (Mohassel & Zhang 2017), no communication.
//!
//! Party 0 outputs `x₀ ≫ₐ f` (arithmetic shift of its share read as `i64`); party 1
//! outputs `−((−x₁) ≫ₐ f)`.
//!
//! **Error bound.** Read the shares as signed integers. If `x₀ + x₁` does not overflow
//! `i64` (equivalently, the signed sum equals the signed secret `x`), the result differs
//! from `x / 2^f` by less than 1 unit (it is `⌊x/2^f⌋` or `⌊x/2^f⌋ + 1`, as `⌊a⌋ + ⌈b⌉`
//! with `a + b = x / 2^f`). With `x₀` uniform, the overflow happens with probability
//! `|x| / 2^64` at most (≤ 2^(ℓ−64) when `|x| < 2^ℓ`), and then the result is off by
//! about `2^(64−f)`: a catastrophic error. With f = 18 and products of two values of
//! magnitude 32 (`|x| < 2^46`), that is one failure per 2^18 truncations, which is why
//! training uses the dealer's truncation pairs ([`crate::Engine::trunc`]) instead, which
//! have no failure event.

use std::num::Wrapping;

use crate::ring::R64;
use crate::share::Party;

/// This party's share of the truncation of `x` by `bits` (local, see the module docs).
pub fn trunc_local(party: Party, x: R64, bits: u32) -> R64 {
    if party.is_first() {
        Wrapping(((x.0 as i64) >> bits) as u64)
    } else {
        Wrapping((-(((x.0.wrapping_neg()) as i64) >> bits)) as u64)
    }
}

/// True when the local truncation of this sharing is guaranteed within one unit:
/// the signed shares add up to the signed secret without overflow, and `x₁ ≠ −2^63`.
pub fn local_trunc_is_safe(x0: R64, x1: R64) -> bool {
    x1.0 != 1u64 << 63
        && (x0.0 as i64)
            .checked_add(x1.0 as i64)
            .is_some_and(|s| s == (x0 + x1).0 as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha12Rng;
    use rand_core::{Rng, SeedableRng};

    proptest! {
        /// Whenever the documented no-overflow condition holds, the error is below one unit.
        #[test]
        fn error_below_one_unit_without_overflow(x in -(1i64 << 61)..(1i64 << 61), x0 in any::<u64>(), bits in 1u32..30) {
            let x0 = Wrapping(x0);
            let x1 = Wrapping(x as u64) - x0;
            prop_assume!(local_trunc_is_safe(x0, x1));
            let t = trunc_local(Party::P0, x0, bits) + trunc_local(Party::P1, x1, bits);
            let exact = x >> bits; // floor
            let got = t.0 as i64;
            prop_assert!(got == exact || got == exact + 1, "x={x} got={got} exact={exact}");
        }
    }

    /// The failure rate matches the documented bound |x| / 2^64.
    #[test]
    fn failure_rate_within_bound() {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        let x: i64 = 1 << 56; // bound: 2^-8 per truncation
        let trials = 20_000u32;
        let mut failures = 0u32;
        for _ in 0..trials {
            let x0 = Wrapping(rng.next_u64());
            let x1 = Wrapping(x as u64) - x0;
            let t = (trunc_local(Party::P0, x0, 18) + trunc_local(Party::P1, x1, 18)).0 as i64;
            let exact = x >> 18;
            if !(t == exact || t == exact + 1) {
                failures += 1;
                assert!(!local_trunc_is_safe(x0, x1));
            }
        }
        // Expected 20000 / 256 ≈ 78; bound it loosely from both sides (a real, rare event).
        assert!(failures > 20 && failures < 200, "{failures}");
    }
}
