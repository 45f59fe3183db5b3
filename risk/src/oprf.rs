//! RFC 9497 OPRF, suite ristretto255-SHA512, base mode (0x00), and its two-share evaluation.
//!
//! * [`hash_to_group`], [`hash_to_scalar`], [`derive_key_pair`], [`blind_with`], [`OprfKey::blind_evaluate`]
//!   and [`finalize`] follow RFC 9497 §3.2–§3.3.1 and §4.1 to the byte and are tested against the
//!   RFC's Appendix A ristretto255-SHA512 OPRF vectors.
//! * **Two-share evaluation.** The compute nodes S0, S1 hold `k0`, `k1` with `k = k0 + k1`. The
//!   client sends the same blinded element `r·P(x)` to both, adds `k0·r·P + k1·r·P = k·r·P`,
//!   unblinds and finalizes: the result is exactly the RFC OPRF output under the single key `k`.
//! * **Tag.** `Tag(x)` is the 64-byte RFC 9497 `Finalize` output under `k`:
//!   `SHA-512(I2OSP(len(x),2) ‖ x ‖ I2OSP(32,2) ‖ Serialize(k·HashToGroup(x)) ‖ "Finalize")`,
//!   with `HashToGroup` using DST `"HashToGroup-OPRFV1-\x00-ristretto255-SHA512"`.
//!
//! Costs follow the design's "physical limit": a server multiplies by `k/2` and uses
//! `double_and_compress_batch`, and the client inverts its blinds in one batch.

use std::fmt;
use std::num::NonZero;

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use hash2curve::{ExpandMsg, ExpandMsgXmd, Expander};
use rand_core::CryptoRng;
use rayon::prelude::*;
use sha2::digest::consts::U16;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, RiskError};

/// RFC 9497 `contextString` for mode 0x00 and identifier `ristretto255-SHA512`.
pub const CONTEXT_STRING: &[u8] = b"OPRFV1-\x00-ristretto255-SHA512";
/// DST of `HashToGroup`: `"HashToGroup-" ‖ contextString`.
pub const HASH_TO_GROUP_DST: &[u8] = b"HashToGroup-OPRFV1-\x00-ristretto255-SHA512";
/// DST of `HashToScalar`: `"HashToScalar-" ‖ contextString`.
pub const HASH_TO_SCALAR_DST: &[u8] = b"HashToScalar-OPRFV1-\x00-ristretto255-SHA512";
/// DST of `DeriveKeyPair`: `"DeriveKeyPair" ‖ contextString`.
pub const DERIVE_KEY_PAIR_DST: &[u8] = b"DeriveKeyPairOPRFV1-\x00-ristretto255-SHA512";

/// Serialized group element (`Ne = 32`).
pub type Element = [u8; 32];
/// A pseudonymous tag: the 64-byte OPRF output (`Nh = 64`).
pub type Tag = [u8; 64];

/// `expand_message_xmd(msg, dst, 64)` with SHA-512 (RFC 9380 §5.3.1).
fn expand_64(msg: &[&[u8]], dst: &[u8]) -> [u8; 64] {
    let dst = [dst];
    let len = NonZero::new(64u16).expect("64 is non-zero");
    let mut out = [0u8; 64];
    let mut expander = <ExpandMsgXmd<Sha512> as ExpandMsg<U16>>::expand_message(msg, &dst, len)
        .expect("our DSTs are non-empty and shorter than 255 bytes; 64 <= 255 * 64");
    expander
        .fill_bytes(&mut out)
        .expect("the expander yields exactly the 64 bytes requested");
    out
}

/// RFC 9497 `HashToGroup` for ristretto255: `hash_to_ristretto255` (RFC 9380 / RFC 9496 one-way
/// map over 64 bytes of `expand_message_xmd`) with DST [`HASH_TO_GROUP_DST`].
pub fn hash_to_group(input: &[u8]) -> RistrettoPoint {
    RistrettoPoint::from_uniform_bytes(&expand_64(&[input], HASH_TO_GROUP_DST))
}

/// RFC 9497 `HashToScalar` for ristretto255: 64 bytes of `expand_message_xmd`, read little-endian,
/// reduced modulo the group order.
pub fn hash_to_scalar(input: &[&[u8]], dst: &[u8]) -> Scalar {
    let mut wide = expand_64(input, dst);
    let s = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    s
}

/// RFC 9497 `DeriveKeyPair(seed, info)`: a deterministic key from a seed (at least 32 bytes of
/// entropy) and public key info. Fails if `info` is longer than 65,535 bytes (and, with
/// negligible probability, if 256 counters all give zero).
pub fn derive_key_pair(seed: &[u8], info: &[u8]) -> Result<OprfKey> {
    let info_len = u16::try_from(info.len())
        .map_err(|_| RiskError::InvalidInput("key info longer than 65535 bytes".into()))?;
    for counter in 0u8..=255 {
        let sk = hash_to_scalar(
            &[seed, &info_len.to_be_bytes(), info, &[counter]],
            DERIVE_KEY_PAIR_DST,
        );
        if sk != Scalar::ZERO {
            return Ok(OprfKey(sk));
        }
    }
    Err(RiskError::InvalidInput("DeriveKeyPairError".into()))
}

/// An OPRF private key (the whole `k`, or one compute node's share `k_j`).
///
/// Zeroized on drop, compared in constant time, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct OprfKey(Scalar);

impl fmt::Debug for OprfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OprfKey(<redacted>)")
    }
}

impl ConstantTimeEq for OprfKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for OprfKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}
impl Eq for OprfKey {}

impl OprfKey {
    /// A fresh random non-zero key (RFC 9497 `GenerateKeyPair`).
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let s = Scalar::random(rng);
            if s != Scalar::ZERO {
                return Self(s);
            }
        }
    }

    /// `DeserializeScalar`: 32 little-endian bytes, canonical and non-zero.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let s: Option<Scalar> = Scalar::from_canonical_bytes(*bytes).into();
        match s {
            Some(s) if s != Scalar::ZERO => Ok(Self(s)),
            _ => Err(RiskError::InvalidInput(
                "OPRF key is not a canonical non-zero scalar".into(),
            )),
        }
    }

    /// `SerializeScalar` (32 bytes little-endian), zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key `k·G`, serialized (what the chain anchors for each share).
    pub fn public_key(&self) -> Element {
        RistrettoPoint::mul_base(&self.0).compress().to_bytes()
    }

    /// Splits the key into two additive shares `(k0, k1)` with `k0 + k1 = k`.
    pub fn split<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> (OprfKey, OprfKey) {
        loop {
            let k0 = Self::random(rng);
            let k1 = self.0 - k0.0;
            if k1 != Scalar::ZERO {
                return (k0, Self(k1));
            }
        }
    }

    /// `k0 + k1` (only tests and key ceremonies ever hold both shares).
    pub fn combine(k0: &OprfKey, k1: &OprfKey) -> Result<OprfKey> {
        let k = k0.0 + k1.0;
        if k == Scalar::ZERO {
            return Err(RiskError::InvalidInput("shares sum to zero".into()));
        }
        Ok(Self(k))
    }

    /// RFC 9497 `BlindEvaluate` over a batch: `k·B` for each serialized blinded element `B`.
    ///
    /// Every element is deserialized first (invalid encodings and the identity are refused with
    /// their position). Computed as `double(k/2 · B)` so the compressions batch, in parallel.
    pub fn blind_evaluate(&self, blinded: &[Element]) -> Result<Vec<Element>> {
        let points = decompress_all(blinded)?;
        let half = Zeroizing::new(self.0 * Scalar::from(2u8).invert());
        Ok(par_mul_double_compress(&points, |_| *half))
    }
}

/// Deserializes elements, refusing invalid encodings and the identity (RFC 9497 §2.1).
pub fn decompress_all(elements: &[Element]) -> Result<Vec<RistrettoPoint>> {
    elements
        .par_iter()
        .enumerate()
        .map(|(i, e)| decompress(e).ok_or(RiskError::InvalidElement(i)))
        .collect()
}

fn decompress(e: &Element) -> Option<RistrettoPoint> {
    let p = CompressedRistretto(*e).decompress()?;
    (p != RistrettoPoint::identity()).then_some(p)
}

/// `compress(2 · (s_i · P_i))` for all i, in parallel chunks with batched compression.
fn par_mul_double_compress(
    points: &[RistrettoPoint],
    scalar: impl Fn(usize) -> Scalar + Sync,
) -> Vec<Element> {
    const CHUNK: usize = 512;
    points
        .par_chunks(CHUNK)
        .enumerate()
        .flat_map_iter(|(c, chunk)| {
            let products: Vec<RistrettoPoint> = chunk
                .iter()
                .enumerate()
                .map(|(i, p)| scalar(c * CHUNK + i) * p)
                .collect();
            RistrettoPoint::double_and_compress_batch(&products)
                .into_iter()
                .map(|c| c.to_bytes())
        })
        .collect()
}

/// RFC 9497 `Blind` with a caller-chosen blind (deterministic; for tests and vectors).
pub fn blind_with(input: &[u8], blind: &Scalar) -> Result<Element> {
    let p = hash_to_group(input);
    if p == RistrettoPoint::identity() {
        return Err(RiskError::InvalidInput(
            "InvalidInputError: HashToGroup gave the identity".into(),
        ));
    }
    Ok((blind * p).compress().to_bytes())
}

/// RFC 9497 `Blind`: a random non-zero blind and the blinded element.
pub fn blind<R: CryptoRng + ?Sized>(
    input: &[u8],
    rng: &mut R,
) -> Result<(Zeroizing<Scalar>, Element)> {
    let r = Zeroizing::new(random_nonzero(rng));
    let b = blind_with(input, &r)?;
    Ok((r, b))
}

fn random_nonzero<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    loop {
        let s = Scalar::random(rng);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

/// RFC 9497 `Finalize`: unblind `evaluated` and hash.
pub fn finalize(input: &[u8], blind: &Scalar, evaluated: &Element) -> Result<Tag> {
    let z = decompress(evaluated).ok_or(RiskError::InvalidElement(0))?;
    let n = (blind.invert() * z).compress().to_bytes();
    finalize_hash(input, &n)
}

/// The hash of RFC 9497 `Finalize` over an unblinded, serialized element.
pub fn finalize_hash(input: &[u8], unblinded: &Element) -> Result<Tag> {
    let len = u16::try_from(input.len())
        .map_err(|_| RiskError::InvalidInput("ID longer than 65535 bytes".into()))?;
    let mut h = Sha512::new();
    h.update(len.to_be_bytes());
    h.update(input);
    h.update(32u16.to_be_bytes());
    h.update(unblinded);
    h.update(b"Finalize");
    Ok(h.finalize().into())
}

/// The OPRF output under `k` computed directly (`Evaluate` without blinding). Only for tests and
/// key owners: a party holding the whole `k` does not exist in the deployment.
pub fn evaluate(key: &OprfKey, input: &[u8]) -> Result<Tag> {
    let p = hash_to_group(input);
    finalize_hash(input, &(key.0 * p).compress().to_bytes())
}

/// A batch of blinded inputs waiting for the two compute nodes' evaluations.
///
/// The blinds are zeroized on drop. Dummy (padding) elements are random group elements whose
/// evaluations are discarded; they are indistinguishable from real blinded elements.
pub struct BlindedBatch {
    blinds: Zeroizing<Vec<Scalar>>,
    elements: Vec<Element>,
    real: usize,
}

impl fmt::Debug for BlindedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindedBatch")
            .field("real", &self.real)
            .field("total", &self.elements.len())
            .field("blinds", &"<redacted>")
            .finish()
    }
}

impl BlindedBatch {
    /// Blinds `inputs` and appends `dummies` random elements (they come last, but a compute node
    /// cannot tell them from real ones: every blinded element is a uniformly random point).
    pub fn new<I: AsRef<[u8]> + Sync, R: CryptoRng + ?Sized>(
        inputs: &[I],
        dummies: usize,
        rng: &mut R,
    ) -> Result<Self> {
        if let Some(i) = inputs
            .iter()
            .position(|x| x.as_ref().len() > u16::MAX as usize)
        {
            return Err(RiskError::InvalidInput(format!(
                "ID #{i} longer than 65535 bytes"
            )));
        }
        let blinds: Zeroizing<Vec<Scalar>> =
            Zeroizing::new((0..inputs.len()).map(|_| random_nonzero(rng)).collect());
        let dummy_scalars: Zeroizing<Vec<Scalar>> =
            Zeroizing::new((0..dummies).map(|_| random_nonzero(rng)).collect());
        let mut hashed: Vec<RistrettoPoint> = inputs
            .par_iter()
            .map(|x| hash_to_group(x.as_ref()))
            .collect();
        if hashed.iter().any(|p| *p == RistrettoPoint::identity()) {
            return Err(RiskError::InvalidInput(
                "InvalidInputError: HashToGroup gave the identity".into(),
            ));
        }
        // Dummies: r·G for random r (blinded elements are uniformly random too).
        hashed.extend(std::iter::repeat_n(RISTRETTO_BASEPOINT_POINT, dummies));
        let halves: Zeroizing<Vec<Scalar>> = Zeroizing::new(
            blinds
                .iter()
                .chain(dummy_scalars.iter())
                .map(|r| r * Scalar::from(2u8).invert())
                .collect(),
        );
        let elements = par_mul_double_compress(&hashed, |i| halves[i]);
        Ok(Self {
            blinds,
            elements,
            real: inputs.len(),
        })
    }

    /// The serialized blinded elements to send (real ones first, then dummies).
    pub fn elements(&self) -> &[Element] {
        &self.elements
    }

    /// Number of real inputs.
    pub fn real_len(&self) -> usize {
        self.real
    }

    /// Adds the two compute nodes' evaluations, unblinds and finalizes: one tag per real input.
    pub fn finalize<I: AsRef<[u8]> + Sync>(
        &self,
        inputs: &[I],
        eval0: &[Element],
        eval1: &[Element],
    ) -> Result<Vec<Tag>> {
        if inputs.len() != self.real {
            return Err(RiskError::InvalidInput(format!(
                "{} inputs for a batch of {}",
                inputs.len(),
                self.real
            )));
        }
        for (j, e) in [eval0, eval1].iter().enumerate() {
            if e.len() != self.elements.len() {
                return Err(RiskError::Decode(format!(
                    "compute node {j} returned {} evaluations for {} elements",
                    e.len(),
                    self.elements.len()
                )));
            }
        }
        let z0 = decompress_all(&eval0[..self.real])?;
        let z1 = decompress_all(&eval1[..self.real])?;
        let sums: Vec<RistrettoPoint> = z0.iter().zip(&z1).map(|(a, b)| a + b).collect();
        let mut inv: Zeroizing<Vec<Scalar>> = Zeroizing::new(self.blinds.to_vec());
        if !inv.is_empty() {
            Scalar::invert_batch_alloc(&mut inv);
        }
        let half = Scalar::from(2u8).invert();
        let unblinded = par_mul_double_compress(&sums, |i| inv[i] * half);
        inputs
            .par_iter()
            .zip(unblinded.par_iter())
            .map(|(x, n)| finalize_hash(x.as_ref(), n))
            .collect()
    }
}
