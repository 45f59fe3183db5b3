//! The curve operations of ECDH-PSI over ristretto255.
//!
//! * `P(id) = hash_from_bytes::<Sha512>(DST ‖ id)` ([`hash_to_point`]).
//! * Every party keeps only `k/2` of its job key `k` ([`JobKey`]): masking multiplies by
//!   `k/2` and [`RistrettoPoint::double_and_compress_batch`] doubles while it compresses,
//!   which costs one batched inversion per chunk instead of one inversion per point.
//! * The fully masked points are compared as [`Tag`]s: the first [`TAG_LEN`] bytes of
//!   `SHA-512(TAG_DST ‖ encoding)`.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use rayon::prelude::*;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Domain-separation tag of the hash to the group.
pub const HASH_TO_POINT_DST: &[u8] = b"confide-psi-v1/ristretto255-SHA512/hash-to-point\0";
/// Domain-separation tag of the hash that truncates fully masked points.
pub const TAG_DST: &[u8] = b"confide-psi-v1/tag\0";
/// Bytes kept of each fully masked point's hash. 96 bits: for two sets of 10^7 the
/// chance of a false match anywhere is about 10^14 / 2^96 < 2^-49.
pub const TAG_LEN: usize = 12;
/// Bytes of a compressed ristretto255 point.
pub const POINT_LEN: usize = 32;
/// Items per batched compression (one field inversion each).
const BATCH: usize = 256;

/// A truncated hash of a fully masked point.
pub type Tag = [u8; TAG_LEN];

/// Hashes an ID (already trimmed) to the group: `hash_from_bytes::<Sha512>(DST ‖ id)`.
pub fn hash_to_point(id: &[u8]) -> RistrettoPoint {
    RistrettoPoint::from_hash(
        Sha512::new()
            .chain_update(HASH_TO_POINT_DST)
            .chain_update(id),
    )
}

/// The tag of a fully masked point's encoding.
pub fn tag_of(encoding: &[u8; POINT_LEN]) -> Tag {
    let digest = Sha512::new()
        .chain_update(TAG_DST)
        .chain_update(encoding)
        .finalize();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&digest[..TAG_LEN]);
    tag
}

/// A party's secret key for one job, held as `k/2` (see the module docs). Zeroized on
/// drop; its Debug output is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct JobKey {
    half: Scalar,
}

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(<redacted>)")
    }
}

impl JobKey {
    /// Draws a fresh non-zero key from the thread's CSPRNG.
    pub fn random() -> Self {
        let mut rng = rand::rng();
        loop {
            let mut k = Scalar::random(&mut rng);
            if k != Scalar::ZERO {
                let key = Self::from_scalar(k);
                k.zeroize();
                return key;
            }
        }
    }

    /// The key `k` (tests and benchmarks use fixed keys; `k` must be non-zero).
    pub fn from_scalar(mut k: Scalar) -> Self {
        let half = k * Scalar::from(2u8).invert();
        k.zeroize();
        Self { half }
    }

    /// The key's bytes (for a checkpoint: a resumed job must mask with the same key).
    /// Secret: zeroized when dropped.
    pub(crate) fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.half.to_bytes())
    }

    /// The key of [`Self::to_bytes`]; `None` if the bytes are not a canonical non-zero
    /// scalar.
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let half = Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes))?;
        (half != Scalar::ZERO).then_some(Self { half })
    }

    /// `k·P` of each point, compressed.
    fn mask_points(&self, points: &[RistrettoPoint]) -> Vec<CompressedRistretto> {
        let halves: Vec<RistrettoPoint> = points.iter().map(|p| p * self.half).collect();
        RistrettoPoint::double_and_compress_batch(&halves)
    }

    /// Masks IDs: the encodings of `k·P(id)`, concatenated, in the order of `ids`.
    pub fn mask_ids<S: AsRef<[u8]> + Sync>(&self, ids: &[S]) -> Vec<u8> {
        let parts: Vec<Vec<u8>> = ids
            .par_chunks(BATCH)
            .map(|chunk| {
                let points: Vec<RistrettoPoint> =
                    chunk.iter().map(|id| hash_to_point(id.as_ref())).collect();
                flatten(&self.mask_points(&points))
            })
            .collect();
        parts.concat()
    }

    /// Raises each received encoding (concatenated 32-byte points) to this key; returns
    /// the re-masked encodings, concatenated, in the same order. A bad encoding (not a
    /// canonical ristretto255 point, or the identity) is an error naming its index.
    pub fn remask(&self, encodings: &[u8]) -> Result<Vec<u8>, BadPoint> {
        let parts: Result<Vec<Vec<u8>>, BadPoint> = encodings
            .par_chunks(BATCH * POINT_LEN)
            .enumerate()
            .map(|(c, chunk)| {
                let points = decompress_all(chunk, c * BATCH)?;
                Ok(flatten(&self.mask_points(&points)))
            })
            .collect();
        Ok(parts?.concat())
    }

    /// Raises each received encoding to this key and returns the tags, in order.
    pub fn remask_to_tags(&self, encodings: &[u8]) -> Result<Vec<Tag>, BadPoint> {
        let parts: Result<Vec<Vec<Tag>>, BadPoint> = encodings
            .par_chunks(BATCH * POINT_LEN)
            .enumerate()
            .map(|(c, chunk)| {
                let points = decompress_all(chunk, c * BATCH)?;
                Ok(self
                    .mask_points(&points)
                    .iter()
                    .map(|p| tag_of(p.as_bytes()))
                    .collect())
            })
            .collect();
        Ok(parts?.concat())
    }
}

/// A received point encoding that is not a valid non-identity ristretto255 point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPoint {
    /// Its index in the decoded slice.
    pub index: usize,
}

/// Decodes concatenated 32-byte encodings, rejecting non-canonical ones and the identity.
pub fn decompress_all(bytes: &[u8], first_index: usize) -> Result<Vec<RistrettoPoint>, BadPoint> {
    bytes
        .chunks(POINT_LEN)
        .enumerate()
        .map(|(i, enc)| {
            let bad = BadPoint {
                index: first_index + i,
            };
            let compressed = CompressedRistretto::from_slice(enc).map_err(|_| bad)?;
            if compressed.as_bytes() == &[0u8; POINT_LEN] {
                return Err(bad);
            }
            compressed.decompress().ok_or(bad)
        })
        .collect()
}

fn flatten(points: &[CompressedRistretto]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * POINT_LEN);
    for p in points {
        out.extend_from_slice(p.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_commutes_and_matches_plain_scalar_mult() {
        let a = JobKey::from_scalar(Scalar::from(12345u64));
        let b = JobKey::from_scalar(Scalar::from(987654321u64));
        let ids = ["alice", "bob", "carol"];
        let ma = a.mask_ids(&ids);
        let mb = b.mask_ids(&ids);
        for (i, id) in ids.iter().enumerate() {
            let expect = (hash_to_point(id.as_bytes()) * Scalar::from(12345u64)).compress();
            assert_eq!(&ma[i * 32..(i + 1) * 32], expect.as_bytes());
        }
        let tab = b.remask_to_tags(&ma).unwrap();
        let tba = a.remask_to_tags(&mb).unwrap();
        assert_eq!(tab, tba);
        let twice = b.remask(&ma).unwrap();
        let expected_tags: Vec<Tag> = twice
            .chunks(32)
            .map(|c| tag_of(c.try_into().unwrap()))
            .collect();
        assert_eq!(expected_tags, tab);
    }

    #[test]
    fn bad_encodings_are_errors() {
        let k = JobKey::from_scalar(Scalar::from(7u8));
        let mut enc = k.mask_ids(&["x", "y"]);
        assert!(k.remask(&enc).is_ok());
        enc[32..64].copy_from_slice(&[0xff; 32]);
        assert_eq!(k.remask(&enc), Err(BadPoint { index: 1 }));
        assert_eq!(
            k.remask_to_tags(&[0u8; 32]),
            Err(BadPoint { index: 0 }),
            "identity rejected"
        );
    }

    #[test]
    fn key_debug_is_redacted() {
        let k = JobKey::random();
        assert_eq!(format!("{k:?}"), "JobKey(<redacted>)");
    }
}
