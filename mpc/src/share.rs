//! Additive 2-of-2 shares over Z_2^64 and XOR shares of 64-bit words.
//!
//! A secret `x` is held as `x = x₀ + x₁ (mod 2^64)`; party `i` holds `xᵢ`. A share alone
//! is uniformly random and says nothing about `x`. Share containers zeroize their memory
//! on drop and their `Debug` output never shows a value.

use std::fmt;
use std::num::Wrapping;

use ndarray::{Array, Array1, Array2, Dimension, Ix1, Ix2};
use rand_core::Rng;
use zeroize::Zeroize;

use crate::error::{MpcError, Result};
use crate::ring::{R64, ZERO};

/// One of the two computing parties: 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Party(u8);

impl Party {
    /// Party 0 (adds public constants).
    pub const P0: Party = Party(0);
    /// Party 1.
    pub const P1: Party = Party(1);

    /// Party `i`; errors unless `i` is 0 or 1.
    pub fn new(i: usize) -> Result<Self> {
        match i {
            0 => Ok(Self::P0),
            1 => Ok(Self::P1),
            _ => Err(MpcError::Param(format!(
                "party index must be 0 or 1, got {i}"
            ))),
        }
    }

    /// 0 or 1.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The other party.
    pub fn other(self) -> Party {
        Party(1 - self.0)
    }

    /// True for party 0.
    pub fn is_first(self) -> bool {
        self.0 == 0
    }
}

/// This party's additive share of an array of secrets.
pub struct Shared<D: Dimension>(Array<R64, D>);

/// A shared vector.
pub type SharedVec = Shared<Ix1>;
/// A shared matrix.
pub type SharedMat = Shared<Ix2>;

impl<D: Dimension> Drop for Shared<D> {
    fn drop(&mut self) {
        for x in self.0.iter_mut() {
            x.zeroize();
        }
    }
}

impl<D: Dimension> fmt::Debug for Shared<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared(shape {:?}, <redacted>)", self.0.shape())
    }
}

impl<D: Dimension> Clone for Shared<D> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<D: Dimension> Shared<D> {
    /// Wraps raw share values.
    pub fn from_raw(a: Array<R64, D>) -> Self {
        Self(a)
    }

    /// The share values (this party's half only).
    pub fn raw(&self) -> &Array<R64, D> {
        &self.0
    }

    /// Mutable access to the share values.
    pub fn raw_mut(&mut self) -> &mut Array<R64, D> {
        &mut self.0
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    /// A zero share of the given shape (a valid share of zero for either party).
    pub fn zeros(shape: D) -> Self {
        Self(Array::from_elem(shape, ZERO))
    }

    fn check(&self, other: &Self) -> Result<()> {
        if self.0.shape() != other.0.shape() {
            return Err(MpcError::Shape(format!(
                "{:?} vs {:?}",
                self.0.shape(),
                other.0.shape()
            )));
        }
        Ok(())
    }

    /// Share of `x + y` (local).
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.check(other)?;
        Ok(Self(&self.0 + &other.0))
    }

    /// Share of `x − y` (local).
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.check(other)?;
        Ok(Self(&self.0 - &other.0))
    }

    /// Share of `c · x` for a public ring constant `c` (local; no truncation).
    pub fn mul_public(&self, c: R64) -> Self {
        Self(self.0.mapv(|x| x * c))
    }

    /// Share of `x + p` for a public array `p`: only party 0 adds it.
    pub fn add_public(&self, party: Party, p: &Array<R64, D>) -> Result<Self> {
        if self.0.shape() != p.shape() {
            return Err(MpcError::Shape(format!(
                "{:?} vs public {:?}",
                self.0.shape(),
                p.shape()
            )));
        }
        if party.is_first() {
            Ok(Self(&self.0 + p))
        } else {
            Ok(self.clone())
        }
    }

    /// Share of `x + c` for a public scalar `c` added to every element (party 0 adds).
    pub fn add_scalar(&self, party: Party, c: R64) -> Self {
        if party.is_first() {
            Self(self.0.mapv(|x| x + c))
        } else {
            self.clone()
        }
    }

    /// Reconstructs the secrets from both shares (test and output helper).
    pub fn reconstruct(a: &Self, b: &Self) -> Result<Array<R64, D>> {
        a.check(b)?;
        Ok(&a.0 + &b.0)
    }
}

impl SharedVec {
    /// Wraps a vector of share values.
    pub fn from_vec(v: Vec<R64>) -> Self {
        Self(Array1::from_vec(v))
    }

    /// Share values as a slice.
    pub fn as_slice(&self) -> &[R64] {
        self.0.as_slice().expect("owned 1-d arrays are contiguous")
    }
}

impl SharedMat {
    /// Share values in row-major order (copied if not contiguous).
    pub fn to_row_major(&self) -> Vec<R64> {
        self.0.iter().copied().collect()
    }
}

/// Splits a public (or privately known) array into two random shares.
pub fn share<D: Dimension, G: Rng + ?Sized>(
    secret: &Array<R64, D>,
    rng: &mut G,
) -> (Shared<D>, Shared<D>) {
    let r = secret.mapv(|_| Wrapping(rng.next_u64()));
    let other = secret - &r;
    (Shared(r), Shared(other))
}

/// The trivial sharing of a value owned by `owner`: the owner's share is the value and the
/// other party's share is zero. Hides nothing from the owner (who knows the value).
pub fn owned<D: Dimension>(me: Party, owner: Party, value: Array<R64, D>) -> Shared<D> {
    if me == owner {
        Shared(value)
    } else {
        Shared(value.mapv(|_| ZERO))
    }
}

/// A matrix owned by one party, shared trivially (see [`owned`]).
pub fn owned_mat(me: Party, owner: Party, value: Array2<R64>) -> SharedMat {
    owned(me, owner, value)
}

/// This party's XOR share of 64-bit words (each word often holds one bit in bit 0).
pub struct BoolShares(Vec<u64>);

impl Drop for BoolShares {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for BoolShares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoolShares(len {}, <redacted>)", self.0.len())
    }
}

impl BoolShares {
    /// Wraps raw XOR-share words.
    pub fn from_raw(v: Vec<u64>) -> Self {
        Self(v)
    }

    /// The raw share words.
    pub fn raw(&self) -> &[u64] {
        &self.0
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reconstructs the words from both shares.
    pub fn reconstruct(a: &Self, b: &Self) -> Result<Vec<u64>> {
        if a.0.len() != b.0.len() {
            return Err(MpcError::Shape(format!("{} vs {}", a.0.len(), b.0.len())));
        }
        Ok(a.0.iter().zip(&b.0).map(|(x, y)| x ^ y).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha12Rng;
    use rand_core::SeedableRng;

    fn vec_of(xs: &[u64]) -> Array1<R64> {
        xs.iter().map(|&x| Wrapping(x)).collect()
    }

    proptest! {
        #[test]
        fn reconstruction(xs in proptest::collection::vec(any::<u64>(), 1..40), seed in any::<u64>()) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let x = vec_of(&xs);
            let (a, b) = share(&x, &mut rng);
            prop_assert_eq!(Shared::reconstruct(&a, &b).unwrap(), x);
        }

        #[test]
        fn linearity(xs in proptest::collection::vec(any::<u64>(), 8), ys in proptest::collection::vec(any::<u64>(), 8),
                     c in any::<u64>(), k in any::<u64>(), seed in any::<u64>()) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let (x, y) = (vec_of(&xs), vec_of(&ys));
            let (x0, x1) = share(&x, &mut rng);
            let (y0, y1) = share(&y, &mut rng);
            let c = Wrapping(c);
            let k = Wrapping(k);
            // c·x + y − k, each party locally.
            let z0 = x0.mul_public(c).add(&y0).unwrap().add_scalar(Party::P0, -k);
            let z1 = x1.mul_public(c).add(&y1).unwrap().add_scalar(Party::P1, -k);
            let expect = x.mapv(|v| v * c) + &y - x.mapv(|_| k);
            prop_assert_eq!(Shared::reconstruct(&z0, &z1).unwrap(), expect);
            let d0 = x0.sub(&y0).unwrap();
            let d1 = x1.sub(&y1).unwrap();
            prop_assert_eq!(Shared::reconstruct(&d0, &d1).unwrap(), &x - &y);
        }
    }

    #[test]
    fn debug_never_prints_values() {
        let s = SharedVec::from_vec(vec![Wrapping(0xDEAD_BEEF)]);
        let text = format!("{s:?}");
        assert!(!text.contains("3735928559") && !text.contains("deadbeef"));
        assert!(text.contains("redacted"));
        let b = BoolShares::from_raw(vec![0xDEAD_BEEF]);
        assert!(!format!("{b:?}").contains("3735928559"));
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = SharedVec::zeros(ndarray::Ix1(3));
        let b = SharedVec::zeros(ndarray::Ix1(4));
        assert!(a.add(&b).is_err());
        assert!(Party::new(2).is_err());
        assert_eq!(Party::P0.other(), Party::P1);
    }
}
