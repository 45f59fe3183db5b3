//! 128-bit blocks: the AES-128 counter-mode PRG, the correlation-robust row hash and the
//! bit-matrix transpose used by the OT extension.

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// A 128-bit block, little-endian when serialized.
pub type Block = u128;

/// Reads `n` blocks from `bytes` (little-endian), or `None` if the length is wrong.
pub fn blocks_from_bytes(bytes: &[u8], n: usize) -> Option<Vec<Block>> {
    if bytes.len() != n.checked_mul(16)? {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                u128::from_le_bytes(a)
            })
            .collect(),
    )
}

/// Serializes blocks (little-endian), appending to `out`.
pub fn blocks_to_bytes(blocks: &[Block], out: &mut Vec<u8>) {
    out.reserve(blocks.len() * 16);
    for b in blocks {
        out.extend_from_slice(&b.to_le_bytes());
    }
}

/// AES-128 keyed once, applied block by block (AES-NI when the CPU has it).
pub struct FixedAes(Aes128);

impl std::fmt::Debug for FixedAes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedAes(<key hidden>)")
    }
}

impl FixedAes {
    /// AES-128 under `key`.
    pub fn new(key: Block) -> Self {
        Self(Aes128::new(&key.to_le_bytes().into()))
    }

    /// Encrypts `blocks` in place (pipelined: several blocks per AES-NI round).
    pub fn encrypt(&self, blocks: &mut [Block]) {
        let mut buf: Vec<aes::Block> = blocks.iter().map(|b| b.to_le_bytes().into()).collect();
        self.0.encrypt_blocks(&mut buf);
        for (b, e) in blocks.iter_mut().zip(&buf) {
            let mut a = [0u8; 16];
            a.copy_from_slice(e);
            *b = u128::from_le_bytes(a);
        }
    }

    /// `AES_k(x)` for one block.
    pub fn encrypt_one(&self, x: Block) -> Block {
        let mut b = [x];
        self.encrypt(&mut b);
        b[0]
    }
}

/// A PRG: AES-128 in counter mode under a 128-bit seed.
#[derive(Debug)]
pub struct Prg {
    aes: FixedAes,
    counter: u128,
}

impl Prg {
    /// The PRG of `seed`, at position 0.
    pub fn new(seed: Block) -> Self {
        Self {
            aes: FixedAes::new(seed),
            counter: 0,
        }
    }

    /// Fills `out` with the next `out.len()` blocks of the stream.
    pub fn fill(&mut self, out: &mut [Block]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.counter + i as u128;
        }
        self.counter += out.len() as u128;
        self.aes.encrypt(out);
    }
}

/// Domain tag of the row hash.
const ROW_HASH_DST: &[u8] = b"confide-ot/row-hash/v1";

/// The correlation-robust hash of the extension: the first 128 bits of
/// `SHA-256(DST ‖ tweak ‖ j ‖ row)`, `j` the instance index and `tweak` separating uses.
pub fn row_hash(tweak: u8, j: u64, row: &[Block]) -> Block {
    let mut h = Sha256::new();
    h.update(ROW_HASH_DST);
    h.update([tweak]);
    h.update(j.to_le_bytes());
    for b in row {
        h.update(b.to_le_bytes());
    }
    let d = h.finalize();
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[..16]);
    u128::from_le_bytes(a)
}

/// Transposes one 128×128 bit tile in place: afterwards bit `i` of `a[j]` is what bit `j`
/// of `a[i]` was (bit `k` of a block is `(b >> k) & 1`).
pub fn transpose_tile(a: &mut [Block; 128]) {
    let mut w = 64usize;
    while w > 0 {
        // Bits k with (k & w) == 0: the low half of every 2w-bit group.
        let mut mask: u128 = 0;
        let mut k = 0;
        while k < 128 {
            mask |= ((1u128 << w) - 1) << k;
            k += 2 * w;
        }
        for i in 0..128 {
            if i & w == 0 {
                let x = a[i];
                let y = a[i + w];
                let t = ((x >> w) ^ y) & mask;
                a[i + w] = y ^ t;
                a[i] = x ^ (t << w);
            }
        }
        w /= 2;
    }
}

/// Transposes a bit matrix of `rows` rows and `cols` columns, stored row-major with
/// `cols / 128` blocks per row, into `cols` rows of `rows / 128` blocks. Both dimensions
/// must be multiples of 128.
pub fn transpose(input: &[Block], rows: usize, cols: usize) -> Vec<Block> {
    debug_assert!(rows.is_multiple_of(128) && cols.is_multiple_of(128));
    debug_assert_eq!(input.len(), rows * cols / 128);
    let (rw, cw) = (rows / 128, cols / 128);
    let mut out = vec![0u128; input.len()];
    if input.is_empty() {
        return out;
    }
    // Output rows cb*128 .. cb*128+128 come from column block cb: one task per block.
    out.par_chunks_mut(128 * rw)
        .enumerate()
        .for_each(|(cb, dst)| {
            let mut tile = [0u128; 128];
            for rb in 0..rw {
                for (i, t) in tile.iter_mut().enumerate() {
                    *t = input[(rb * 128 + i) * cw + cb];
                }
                transpose_tile(&mut tile);
                for (k, t) in tile.iter().enumerate() {
                    dst[k * rw + rb] = *t;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bit(m: &[Block], words_per_row: usize, r: usize, c: usize) -> bool {
        (m[r * words_per_row + c / 128] >> (c % 128)) & 1 == 1
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn transpose_matches_definition(rw in 1usize..4, cw in 1usize..4, seed: u128) {
            let (rows, cols) = (rw * 128, cw * 128);
            let mut m = vec![0u128; rows * cw];
            Prg::new(seed).fill(&mut m);
            let t = transpose(&m, rows, cols);
            for r in 0..rows {
                for c in (0..cols).step_by(7) {
                    prop_assert_eq!(bit(&m, cw, r, c), bit(&t, rw, c, r));
                }
            }
            prop_assert_eq!(transpose(&t, cols, rows), m);
        }
    }

    #[test]
    fn prg_streams_continue_and_differ_by_seed() {
        let mut a = Prg::new(1);
        let mut whole = [0u128; 8];
        a.fill(&mut whole);
        let mut b = Prg::new(1);
        let (mut x, mut y) = ([0u128; 3], [0u128; 5]);
        b.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(&whole[..3], &x);
        assert_eq!(&whole[3..], &y);
        let mut c = Prg::new(2);
        let mut other = [0u128; 8];
        c.fill(&mut other);
        assert_ne!(whole, other);
        assert!(whole.iter().all(|&b| b != 0));
    }
}
