//! Products with a masked matrix whose owners also hold their columns in the clear.

use std::num::Wrapping;

use rand_core::Rng;
use zeroize::Zeroizing;

use super::ahead::Batch;
use super::cache::MaskedMatrix;
use super::{
    CHUNK_WORDS, Engine, State, exchange_words, from_words, recv_words, send_words, shaped, zeros,
};
use crate::error::{MpcError, Result};
use crate::offload::heavy;
use crate::ring::{R64, ZERO, words_to_bytes};
use crate::share::SharedVec;
use crate::transport::Transport;

/// A party's product `X_pᵀ·B` of its own columns in the clear with a row-major
/// `rows × l` matrix `B`, returned row-major (`cols[p] × l`); see
/// [`Engine::masked_tmul_owned`].
pub type OwnProduct<'a> = &'a (dyn Fn(&[R64], usize) -> Vec<R64> + Sync);

/// Writes row `i` of a party's own columns `X_p` into the slice (`cols[p]` words).
pub type OwnRows<'a> = &'a (dyn Fn(usize, &mut [R64]) + Sync);

impl<T: Transport> Engine<'_, T> {
    /// Masks `X = [X₀ | X₁]` once for [`Self::masked_tmul_owned`]: the same masks and
    /// messages as [`Self::mask_matrix`] (party p sends `X_p − U_p`, `U_p` from its seed;
    /// the dealer expands both), but party p streams its masked rows as it draws them
    /// (`own_row` gives row i of `X_p`; no `rows × cols` copy of `X_p` or `U_p`) and keeps
    /// only the other party's `E_o = X_o − U_o`: its own columns it holds in the clear.
    /// The dealer passes `None`.
    pub async fn mask_matrix_owned(
        &mut self,
        own_row: Option<OwnRows<'_>>,
        rows: usize,
        cols: [usize; 2],
    ) -> Result<MaskedMatrix> {
        let t = self.t;
        let names = self.names.clone();
        let (me, prg) = match &mut self.state {
            State::Dealer { .. } => return self.mask_matrix(None, rows, cols).await,
            State::Party { me, prg } => (*me, prg),
        };
        let own_row =
            own_row.ok_or_else(|| MpcError::Param("a party must supply its columns".into()))?;
        let (mine, other) = (cols[me.index()], cols[me.other().index()]);
        let peer = names.party(me.other()).to_string();
        let send = async {
            let mut row = vec![ZERO; mine];
            let mut buf: Vec<u64> = Vec::with_capacity(CHUNK_WORDS.min(rows * mine));
            for i in 0..rows {
                own_row(i, &mut row);
                for x in &row {
                    buf.push((x - Wrapping(prg.next_u64())).0);
                    if buf.len() == CHUNK_WORDS {
                        t.send(&peer, words_to_bytes(&buf)).await?;
                        buf.clear();
                    }
                }
            }
            if !buf.is_empty() {
                t.send(&peer, words_to_bytes(&buf)).await?;
            }
            Ok::<_, MpcError>(())
        };
        let (s, r) = tokio::join!(send, recv_words(t, &peer, rows * other));
        s?;
        let e = shaped(rows, other, from_words(r?))?;
        Ok(MaskedMatrix {
            rows,
            cols,
            e: std::sync::Arc::new(e),
            u: Zeroizing::new(Vec::new()),
            other_only: true,
        })
    }

    /// Shares of `Xᵀ·e_j` over every row of a masked matrix for several shared vectors
    /// `e_j` (no truncation), when each party also holds its own columns `X_p` in the
    /// clear and multiplies by them locally with `own` (cheap for sparse `X_p`, such as
    /// the boosted trees' 0/1 bin matrix). The dealer passes any `own` (it is not called).
    ///
    /// With the `e_j` side by side as `B = B₀ + B₁` (`rows × L`), for each owner `p` and
    /// the other party `o`: `o` sends `B_o + R_p` to `p`, `R_p` fresh from `o`'s seed
    /// (uniform to `p`); `p` computes `X_pᵀ(B + R_p)` with `own`; `X_pᵀR_p = E_pᵀR_p +
    /// U_pᵀR_p` is subtracted, `o` computing `E_pᵀR_p` from the public `E = X − U` and the
    /// dealer `U_pᵀR_p` (party 0's share from its seed, party 1's as a correction).
    /// Traffic: each party sends `rows × L` words, the dealer `width × L` to party 1.
    /// Dense work: `rows × cols[p] × L` at each party (only the other's columns of `E`)
    /// and `rows × width × L` at the dealer, none of it on the data.
    pub async fn masked_tmul_owned(
        &mut self,
        m: &MaskedMatrix,
        es: &[&SharedVec],
        own: OwnProduct<'_>,
    ) -> Result<Vec<SharedVec>> {
        let (d, n, l, c0) = (m.width(), m.rows, es.len(), m.cols[0]);
        if let Some(e) = es.iter().find(|e| e.len() != n) {
            return Err(MpcError::Shape(format!(
                "e has {} entries for {n} rows",
                e.len()
            )));
        }
        // The data-independent part (masks, dense products), planned or computed now.
        let (r_mine, other, z0) = match self.take_owned(m, l)? {
            Batch::Dealer { corr } => {
                send_words(self.t, &self.names.p1, &corr).await?;
                return Ok(vec![zeros(d); l]);
            }
            Batch::Party { r, other, z0 } => (r, other, z0),
        };
        let me = self
            .party()
            .ok_or_else(|| MpcError::Param("dealer state".into()))?;
        // B (this party's shares) as a row-major n × L matrix.
        let mut b = vec![ZERO; n * l];
        for (j, e) in es.iter().enumerate() {
            for (i, v) in e.as_slice().iter().enumerate() {
                b[i * l + j] = *v;
            }
        }
        // r_mine masks this party's shares for the other (owner) party.
        let masked: Vec<u64> = b
            .iter()
            .zip(r_mine.iter())
            .map(|(x, r)| (x + r).0)
            .collect();
        let peer = self.names.party(me.other()).to_string();
        let theirs = exchange_words(self.t, &peer, &masked).await?;
        let (own_from, own_c, other_from, other_c) = if me.is_first() {
            (0, c0, c0, d - c0)
        } else {
            (c0, d - c0, 0, c0)
        };
        // X_pᵀ(B + R_p): my shares plus the other's masked shares.
        let mine = heavy(n * l * 4, || {
            let total: Vec<R64> = b
                .iter()
                .zip(&theirs)
                .map(|(x, t)| x + Wrapping(*t))
                .collect();
            own(&total, l)
        });
        if other.len() != other_c * l {
            return Err(MpcError::Shape("planned product of the wrong shape".into()));
        }
        if mine.len() != own_c * l {
            return Err(MpcError::Shape(format!(
                "own product has {} entries, expected {own_c} × {l}",
                mine.len()
            )));
        }
        let z: Vec<R64> = if me.is_first() {
            z0.to_vec()
        } else {
            from_words(recv_words(self.t, &self.names.dealer, d * l).await?)
        };
        let mut out = vec![ZERO; d * l];
        out[own_from * l..(own_from + own_c) * l].copy_from_slice(&mine);
        for (o, v) in out[other_from * l..(other_from + other_c) * l]
            .iter_mut()
            .zip(&other)
        {
            *o -= v;
        }
        out.iter_mut().zip(&z).for_each(|(o, q)| *o -= q);
        Ok((0..l)
            .map(|j| SharedVec::from_vec((0..d).map(|c| out[c * l + j]).collect()))
            .collect())
    }
}
