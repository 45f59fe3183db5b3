//! Base OT: Chou–Orlandi "Simplest OT" over ristretto255, with the transcript hashed into
//! the key derivation (see the crate docs).

use confide_mpc::transport::{Transport, TransportError};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rayon::prelude::*;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::block::Block;
use crate::{OtError, Result};

const KDF_DST: &[u8] = b"confide-ot/base-ot/kdf/v1";

/// The sender's keys: `k0[i]`, `k1[i]` for OT `i`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SenderKeys {
    /// Keys for choice 0.
    pub k0: Vec<Block>,
    /// Keys for choice 1.
    pub k1: Vec<Block>,
}

impl std::fmt::Debug for SenderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenderKeys({} pairs, hidden)", self.k0.len())
    }
}

/// The receiver's keys: `k[i] = k_{c_i}[i]`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ReceiverKeys {
    /// The chosen keys.
    pub k: Vec<Block>,
}

impl std::fmt::Debug for ReceiverKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiverKeys({} keys, hidden)", self.k.len())
    }
}

fn kdf(a: &[u8; 32], b: &[u8; 32], i: u64, p: &RistrettoPoint) -> Block {
    let mut h = Sha512::new();
    h.update(KDF_DST);
    h.update(a);
    h.update(b);
    h.update(i.to_le_bytes());
    h.update(p.compress().as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    u128::from_le_bytes(out)
}

fn decode_point(peer: &str, bytes: &[u8]) -> Result<RistrettoPoint> {
    let p = CompressedRistretto::from_slice(bytes)
        .ok()
        .and_then(|c| c.decompress())
        .ok_or_else(|| OtError::BadPoint(peer.to_string()))?;
    if p == RistrettoPoint::identity() {
        return Err(OtError::BadPoint(peer.to_string()));
    }
    Ok(p)
}

/// Runs `n` base OTs as the sender with `peer`.
pub async fn send<T: Transport>(t: &T, peer: &str, n: usize) -> Result<SenderKeys> {
    let a = Zeroizing::new(Scalar::random(&mut rand::rng()));
    let big_a = RistrettoPoint::mul_base(&a);
    let a_bytes = big_a.compress().to_bytes();
    t.send(peer, a_bytes.to_vec()).await?;
    let msg = t.recv(peer).await?;
    if msg.len() != n * 32 {
        return Err(TransportError::malformed(peer, "base OT: wrong number of points").into());
    }
    let pairs: Vec<(Block, Block)> = msg
        .par_chunks_exact(32)
        .enumerate()
        .map(|(i, c)| {
            let b = decode_point(peer, c)?;
            let mut b_bytes = [0u8; 32];
            b_bytes.copy_from_slice(c);
            let k0 = kdf(&a_bytes, &b_bytes, i as u64, &(b * *a));
            let k1 = kdf(&a_bytes, &b_bytes, i as u64, &((b - big_a) * *a));
            Ok((k0, k1))
        })
        .collect::<Result<_>>()?;
    let (k0, k1) = pairs.into_iter().unzip();
    Ok(SenderKeys { k0, k1 })
}

/// Runs `choices.len()` base OTs as the receiver with `peer`.
pub async fn receive<T: Transport>(t: &T, peer: &str, choices: &[bool]) -> Result<ReceiverKeys> {
    let msg = t.recv(peer).await?;
    let big_a = decode_point(peer, &msg)?;
    let mut a_bytes = [0u8; 32];
    a_bytes.copy_from_slice(&msg);
    let (points, k): (Vec<[u8; 32]>, Vec<Block>) = choices
        .par_iter()
        .enumerate()
        .map(|(i, &c)| {
            let b = Zeroizing::new(Scalar::random(&mut rand::rng()));
            let mut big_b = RistrettoPoint::mul_base(&b);
            if c {
                big_b += big_a;
            }
            let b_bytes = big_b.compress().to_bytes();
            (b_bytes, kdf(&a_bytes, &b_bytes, i as u64, &(big_a * *b)))
        })
        .unzip();
    t.send(peer, points.concat()).await?;
    Ok(ReceiverKeys { k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receiver_gets_the_chosen_key_only() {
        let (s, r) = crate::test_pair();
        let choices: Vec<bool> = (0..64).map(|_| rand::random()).collect();
        let (ks, kr) = tokio::join!(send(&s, "r", 64), receive(&r, "s", &choices));
        let (ks, kr) = (ks.unwrap(), kr.unwrap());
        for (i, &c) in choices.iter().enumerate() {
            let (chosen, other) = if c {
                (ks.k1[i], ks.k0[i])
            } else {
                (ks.k0[i], ks.k1[i])
            };
            assert_eq!(kr.k[i], chosen);
            assert_ne!(kr.k[i], other);
            assert_ne!(chosen, 0);
        }
        let mut all: Vec<Block> = ks.k0.iter().chain(&ks.k1).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 128, "keys are distinct");
    }

    #[tokio::test]
    async fn identity_point_is_refused() {
        let (s, r) = crate::test_pair();
        s.send(
            "r",
            RistrettoPoint::identity().compress().to_bytes().to_vec(),
        )
        .await
        .unwrap();
        assert!(matches!(
            receive(&r, "s", &[true]).await,
            Err(OtError::BadPoint(_))
        ));
    }
}
