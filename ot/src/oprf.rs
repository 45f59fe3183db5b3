//! KKRT16 batched related-key OPRF: the OT-extension matrix with 512-bit pseudorandom code
//! words (see the crate docs).

use confide_mpc::transport::{Transport, TransportError};
use rayon::prelude::*;
use zeroize::Zeroize;

use crate::base;
use crate::block::{Block, FixedAes, blocks_from_bytes, blocks_to_bytes, row_hash};
use crate::ext::{pack_bits, run_coder, run_holder};
use crate::{OtError, Result};

/// Code-word width in bits (four AES blocks); see the crate docs for why 512.
pub const CODE_BITS: usize = 512;
const WB: usize = CODE_BITS / 128;
/// Hash tweak of OPRF outputs.
const TWEAK_OPRF: u8 = 2;
/// Inputs per batch when computing code words.
const BATCH: usize = 1024;

/// The pseudorandom code `C(x) = AES_{k_0}(x) ‖ … ‖ AES_{k_3}(x)`.
struct Code([FixedAes; WB]);

impl Code {
    fn new(keys: &[Block]) -> Self {
        Self(std::array::from_fn(|k| FixedAes::new(keys[k])))
    }

    /// Writes `C(xs[r])` to `out[r*WB .. (r+1)*WB]`.
    fn encode(&self, xs: &[Block], out: &mut [Block]) {
        let mut tmp = vec![0u128; xs.len()];
        for (k, aes) in self.0.iter().enumerate() {
            tmp.copy_from_slice(xs);
            aes.encrypt(&mut tmp);
            for (r, c) in tmp.iter().enumerate() {
                out[r * WB + k] = *c;
            }
        }
    }
}

/// The OPRF key holder's state after the extension: it evaluates `F_j(x)` for any `j < m`
/// and any `x`.
pub struct OprfSender {
    s: [Block; WB],
    code_keys: [Block; WB],
    code: Code,
    q: Vec<Block>,
}

impl Drop for OprfSender {
    fn drop(&mut self) {
        self.s.zeroize();
        self.code_keys.zeroize();
        self.q.zeroize();
    }
}

impl std::fmt::Debug for OprfSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OprfSender({} instances, key hidden)", self.q.len() / WB)
    }
}

impl OprfSender {
    /// Number of OPRF instances.
    pub fn instances(&self) -> usize {
        self.q.len() / WB
    }

    /// The key as bytes (`s`, the code keys, the matrix), for a checkpoint that lets a job
    /// resume without running the extension again. Secret: the caller zeroizes it.
    pub fn export(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity((2 * WB + self.q.len()) * 16));
        for b in self.s.iter().chain(&self.code_keys).chain(&self.q) {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    /// The key of [`Self::export`]; `None` if `bytes` is not a whole key.
    pub fn import(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(16 * WB) || bytes.len() < 2 * WB * 16 {
            return None;
        }
        let mut blocks: Vec<Block> = bytes
            .chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                let v = u128::from_le_bytes(a);
                a.zeroize();
                v
            })
            .collect();
        let mut s = [0u128; WB];
        let mut code_keys = [0u128; WB];
        s.copy_from_slice(&blocks[..WB]);
        code_keys.copy_from_slice(&blocks[WB..2 * WB]);
        let q = blocks[2 * WB..].to_vec();
        blocks.zeroize();
        Some(Self {
            s,
            code: Code::new(&code_keys),
            code_keys,
            q,
        })
    }

    /// `F_j(x)` for every `(j, x)` in `queries`; `None` if some `j` is out of range.
    pub fn eval(&self, queries: &[(usize, Block)]) -> Option<Vec<Block>> {
        if queries.iter().any(|&(j, _)| j >= self.instances()) {
            return None;
        }
        let mut out = vec![0u128; queries.len()];
        out.par_chunks_mut(BATCH)
            .zip(queries.par_chunks(BATCH))
            .for_each(|(out, qs)| {
                let xs: Vec<Block> = qs.iter().map(|&(_, x)| x).collect();
                let mut codes = vec![0u128; xs.len() * WB];
                self.code.encode(&xs, &mut codes);
                for ((o, &(j, _)), c) in out.iter_mut().zip(qs).zip(codes.chunks_exact(WB)) {
                    let mut row = [0u128; WB];
                    for k in 0..WB {
                        row[k] = self.q[j * WB + k] ^ (c[k] & self.s[k]);
                    }
                    *o = row_hash(TWEAK_OPRF, j as u64, &row);
                }
            });
        Some(out)
    }
}

/// `m` OPRF instances as the key holder with `peer`.
pub async fn send<T: Transport>(t: &T, peer: &str, m: usize) -> Result<OprfSender> {
    let s_bits: Vec<bool> = (0..CODE_BITS).map(|_| rand::random()).collect();
    let keys = base::receive(t, peer, &s_bits).await?;
    let code_keys: Vec<Block> = (0..WB).map(|_| rand::random()).collect();
    let mut msg = Vec::new();
    blocks_to_bytes(&code_keys, &mut msg);
    t.send(peer, msg).await?;
    let mut s = [0u128; WB];
    s.copy_from_slice(&pack_bits(&s_bits));
    let mut q = vec![0u128; m * WB];
    run_holder(t, peer, &keys, &s_bits, m, |j, row| {
        q[j * WB..(j + 1) * WB].copy_from_slice(row);
    })
    .await?;
    let mut ck = [0u128; WB];
    ck.copy_from_slice(&code_keys);
    Ok(OprfSender {
        s,
        code: Code::new(&code_keys),
        code_keys: ck,
        q,
    })
}

/// One OPRF instance per input as the receiver with `peer`: returns `F_j(inputs[j])`.
pub async fn receive<T: Transport>(t: &T, peer: &str, inputs: &[Block]) -> Result<Vec<Block>> {
    let keys = base::send(t, peer, CODE_BITS).await?;
    let msg = t.recv(peer).await?;
    let code_keys = blocks_from_bytes(&msg, WB).ok_or_else(|| {
        OtError::from(TransportError::malformed(peer, "OPRF: wrong code-key size"))
    })?;
    let code = Code::new(&code_keys);
    let codes = |start: usize, _rows: usize, buf: &mut [Block]| {
        let end = (start + buf.len() / WB).min(inputs.len());
        let xs = &inputs[start.min(end)..end];
        buf.par_chunks_mut(BATCH * WB)
            .zip(xs.par_chunks(BATCH))
            .for_each(|(b, x)| code.encode(x, &mut b[..x.len() * WB]));
    };
    let mut out = vec![0u128; inputs.len()];
    run_coder(t, peer, &keys, inputs.len(), codes, |j, row| {
        out[j] = row_hash(TWEAK_OPRF, j as u64, row);
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn oprf(inputs: Vec<Block>) -> (OprfSender, Vec<Block>) {
        let (s, r) = crate::test_pair();
        let (a, b) = tokio::join!(send(&s, "r", inputs.len()), receive(&r, "s", &inputs));
        (a.unwrap(), b.unwrap())
    }

    fn check(inputs: &[Block], s: &OprfSender, r: &[Block]) {
        let own: Vec<(usize, Block)> = inputs.iter().copied().enumerate().collect();
        let other: Vec<(usize, Block)> = inputs.iter().map(|&x| x ^ 1).enumerate().collect();
        let f_own = s.eval(&own).unwrap();
        let f_other = s.eval(&other).unwrap();
        assert_eq!(f_own, r, "F_j(x_j) is the receiver's output");
        for j in 0..inputs.len() {
            assert_ne!(f_other[j], r[j], "F_j(x') differs for x' != x_j");
            assert_ne!(r[j], 0);
        }
        // Related keys: the same input in another instance gives another value.
        if inputs.len() >= 2 {
            let shifted = s.eval(&[(1, inputs[0])]).unwrap();
            assert_ne!(shifted[0], r[0]);
        }
        let mut all = r.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), r.len(), "outputs are distinct");
        assert!(s.eval(&[(inputs.len(), 0)]).is_none());
    }

    #[tokio::test]
    async fn oprf_identity_across_chunks() {
        let n = crate::ext::CHUNK_ROWS * 2 + 77;
        let inputs: Vec<Block> = (0..n).map(|_| rand::random()).collect();
        let (s, r) = oprf(inputs.clone()).await;
        check(&inputs, &s, &r);
    }

    #[tokio::test]
    async fn equal_inputs_in_different_instances_give_unrelated_outputs() {
        let (s, r) = oprf(vec![7, 7, 7]).await;
        check(&[7, 7, 7], &s, &r);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10))]
        #[test]
        fn oprf_identity(inputs in proptest::collection::vec(any::<u128>(), 0..600)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (s, r) = rt.block_on(oprf(inputs.clone()));
            check(&inputs, &s, &r);
        }
    }
}
