//! IKNP OT extension (random-OT form) and the chunked extension core shared with the
//! KKRT16 OPRF (the `oprf` module, above this one), which is the same matrix with wider
//! code words.

use confide_mpc::transport::{Transport, TransportError};
use rayon::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::base;
use crate::block::{Block, Prg, blocks_from_bytes, blocks_to_bytes, row_hash, transpose};
use crate::{OtError, Result};

/// Rows of the extension matrix per message (a multiple of 128). A chunk of a 512-bit-wide
/// matrix is 512 KiB on the wire and bounds the memory of both sides.
pub const CHUNK_ROWS: usize = 1 << 13;

/// Hash tweak of random-OT outputs.
const TWEAK_ROT: u8 = 1;

/// The chunks that carry `m` rows: (first row, rows on the wire), [`CHUNK_ROWS`] each, the
/// last one rounded up to a multiple of 128.
fn chunks(m: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..m.div_ceil(CHUNK_ROWS)).map(move |c| {
        let start = c * CHUNK_ROWS;
        let real = (m - start).min(CHUNK_ROWS);
        (start, real.div_ceil(128) * 128)
    })
}

/// Runs the extension as the party with the code words (the base-OT *sender*): sends
/// `u^i = t^i ⊕ G(k_i^0) ⊕ G(k_i^1) ⊕ c^i` chunk by chunk and calls `out(j, t_j)` for every
/// real row `j < m`. `codes(start, rows, buf)` writes the code words of rows
/// `start .. start+rows` (row-major, `width/128` blocks each; rows `≥ m` are padding).
pub(crate) async fn run_coder<T: Transport>(
    t: &T,
    peer: &str,
    keys: &base::SenderKeys,
    m: usize,
    codes: impl Fn(usize, usize, &mut [Block]) + Sync,
    mut out: impl FnMut(usize, &[Block]),
) -> Result<()> {
    let width = keys.k0.len();
    let wb = width / 128;
    let mut g0: Vec<Prg> = keys.k0.iter().map(|&k| Prg::new(k)).collect();
    let mut g1: Vec<Prg> = keys.k1.iter().map(|&k| Prg::new(k)).collect();
    for (start, rows) in chunks(m) {
        let rb = rows / 128;
        let mut code_rows = vec![0u128; rows * wb];
        codes(start, rows, &mut code_rows);
        let c_cols = transpose(&code_rows, rows, width);
        code_rows.zeroize();
        let mut t_cols = vec![0u128; width * rb];
        let mut u_cols = vec![0u128; width * rb];
        t_cols
            .par_chunks_mut(rb)
            .zip(u_cols.par_chunks_mut(rb))
            .zip(g0.par_iter_mut().zip(g1.par_iter_mut()))
            .zip(c_cols.par_chunks(rb))
            .for_each(|(((t, u), (g0, g1)), c)| {
                g0.fill(t);
                g1.fill(u);
                for ((u, t), c) in u.iter_mut().zip(t.iter()).zip(c) {
                    *u ^= t ^ c;
                }
            });
        let mut msg = Vec::with_capacity(u_cols.len() * 16);
        blocks_to_bytes(&u_cols, &mut msg);
        t.send(peer, msg).await?;
        emit_rows(t_cols, width, start, rows, m, &mut out);
    }
    Ok(())
}

/// Runs the extension as the party holding `s` (the base-OT *receiver*, `keys[i]` the seed
/// `k_i^{s_i}`): receives `u` chunk by chunk and calls `out(j, q_j)` for every real row,
/// `q_j = t_j ⊕ (c_j ∧ s)`.
pub(crate) async fn run_holder<T: Transport>(
    t: &T,
    peer: &str,
    keys: &base::ReceiverKeys,
    s_bits: &[bool],
    m: usize,
    mut out: impl FnMut(usize, &[Block]),
) -> Result<()> {
    let width = keys.k.len();
    let mut g: Vec<Prg> = keys.k.iter().map(|&k| Prg::new(k)).collect();
    for (start, rows) in chunks(m) {
        let rb = rows / 128;
        let msg = t.recv(peer).await?;
        let mut q_cols = blocks_from_bytes(&msg, width * rb).ok_or_else(|| {
            OtError::from(TransportError::malformed(
                peer,
                "OT extension: wrong chunk size",
            ))
        })?;
        q_cols
            .par_chunks_mut(rb)
            .zip(g.par_iter_mut())
            .zip(s_bits.par_iter())
            .for_each(|((col, g), &s)| {
                let mut pad = vec![0u128; col.len()];
                g.fill(&mut pad);
                for (q, p) in col.iter_mut().zip(&pad) {
                    *q = if s { *q ^ p } else { *p };
                }
            });
        emit_rows(q_cols, width, start, rows, m, &mut out);
    }
    Ok(())
}

/// The end of one chunk at either party: transposes the chunk's `width` columns back into
/// rows, calls `out(start + j, row_j)` for every real row (`< m`), and wipes both forms.
fn emit_rows(
    mut cols: Vec<Block>,
    width: usize,
    start: usize,
    rows: usize,
    m: usize,
    out: &mut impl FnMut(usize, &[Block]),
) {
    let mut rows_t = transpose(&cols, width, rows);
    cols.zeroize();
    let real = (m - start).min(rows);
    for (j, row) in rows_t.chunks_exact(width / 128).take(real).enumerate() {
        out(start + j, row);
    }
    rows_t.zeroize();
}

/// Packs bits into blocks, bit `i` of the result at bit `i % 128` of block `i / 128`.
pub(crate) fn pack_bits(bits: &[bool]) -> Vec<Block> {
    let mut out = vec![0u128; bits.len().div_ceil(128)];
    for (i, &b) in bits.iter().enumerate() {
        out[i / 128] |= (b as u128) << (i % 128);
    }
    out
}

/// A random-OT sender's output: message pairs `(m0[j], m1[j])`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RotSender {
    /// Messages for choice 0.
    pub m0: Vec<Block>,
    /// Messages for choice 1.
    pub m1: Vec<Block>,
}

impl std::fmt::Debug for RotSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RotSender({} pairs, hidden)", self.m0.len())
    }
}

/// `m` random OTs as the sender (IKNP): returns random pairs; the receiver learns one of
/// each, by its choice.
pub async fn rot_send<T: Transport>(t: &T, peer: &str, m: usize) -> Result<RotSender> {
    let s_bits: Vec<bool> = (0..128).map(|_| rand::random()).collect();
    let keys = base::receive(t, peer, &s_bits).await?;
    let s = pack_bits(&s_bits)[0];
    let mut out = RotSender {
        m0: vec![0; m],
        m1: vec![0; m],
    };
    let (m0, m1) = (&mut out.m0, &mut out.m1);
    run_holder(t, peer, &keys, &s_bits, m, |j, q| {
        m0[j] = row_hash(TWEAK_ROT, j as u64, q);
        m1[j] = row_hash(TWEAK_ROT, j as u64, &[q[0] ^ s]);
    })
    .await?;
    Ok(out)
}

/// `choices.len()` random OTs as the receiver (IKNP): returns `m_{c_j}` for each `j`.
pub async fn rot_receive<T: Transport>(t: &T, peer: &str, choices: &[bool]) -> Result<Vec<Block>> {
    let keys = base::send(t, peer, 128).await?;
    let mut out = vec![0u128; choices.len()];
    let codes = |start: usize, rows: usize, buf: &mut [Block]| {
        for (k, b) in buf.iter_mut().enumerate().take(rows) {
            *b = match choices.get(start + k) {
                Some(true) => u128::MAX,
                _ => 0,
            };
        }
    };
    run_coder(t, peer, &keys, choices.len(), codes, |j, row| {
        out[j] = row_hash(TWEAK_ROT, j as u64, row);
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn rot(choices: Vec<bool>) -> (RotSender, Vec<Block>) {
        let (s, r) = crate::test_pair();
        let (a, b) = tokio::join!(
            rot_send(&s, "r", choices.len()),
            rot_receive(&r, "s", &choices)
        );
        (a.unwrap(), b.unwrap())
    }

    fn check(choices: &[bool], s: &RotSender, r: &[Block]) {
        assert_eq!(r.len(), choices.len());
        for (j, &c) in choices.iter().enumerate() {
            let (chosen, other) = if c {
                (s.m1[j], s.m0[j])
            } else {
                (s.m0[j], s.m1[j])
            };
            assert_eq!(r[j], chosen, "row {j}");
            assert_ne!(r[j], other, "row {j}");
            assert_ne!(s.m0[j], 0);
            assert_ne!(s.m1[j], 0);
        }
        let mut all: Vec<Block> = s.m0.iter().chain(&s.m1).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2 * choices.len(), "outputs are distinct");
    }

    #[tokio::test]
    async fn random_ot_identity_across_chunks() {
        let n = CHUNK_ROWS + 300;
        let choices: Vec<bool> = (0..n).map(|_| rand::random()).collect();
        let (s, r) = rot(choices.clone()).await;
        check(&choices, &s, &r);
        // Choices are not visible in the sender's outputs: about half are 1.
        let ones = choices.iter().filter(|&&c| c).count();
        assert!(ones > n / 3 && ones < 2 * n / 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn random_ot_identity(choices in proptest::collection::vec(any::<bool>(), 0..700)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (s, r) = rt.block_on(rot(choices.clone()));
            check(&choices, &s, &r);
        }
    }
}
