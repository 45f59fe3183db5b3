//! The Beaver cache: a column-partitioned matrix masked once and reused.

use std::fmt;
use std::num::Wrapping;
use std::sync::Arc;

use ndarray::{Array1, Array2, Axis, Slice};
use zeroize::Zeroizing;

use super::{
    Engine, State, fill, fill_mat, from_words, recv_words, send_words, shaped, vecs, zeros,
};
use crate::error::{MpcError, Result};
use crate::offload::heavy;
use crate::ring::{R64, ZERO};
use crate::share::{Party, SharedVec};
use crate::transport::Transport;

/// A column-partitioned matrix `X = [X₀ | X₁]` (party p owns `X_p`) masked once:
/// `E = X − U` is public to both parties, `U_p` is known only to party p (and the dealer).
pub struct MaskedMatrix {
    pub(super) rows: usize,
    pub(super) cols: [usize; 2],
    /// `X − U` (empty at the dealer); with `other_only`, only the other party's columns.
    pub(super) e: Arc<Array2<R64>>,
    /// This party's own mask columns `U_p` (empty at the dealer and with `other_only`).
    pub(super) u: Zeroizing<Vec<R64>>,
    /// Made by [`Engine::mask_matrix_owned`]: serves [`Engine::masked_tmul_owned`] only.
    pub(super) other_only: bool,
}

impl fmt::Debug for MaskedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MaskedMatrix({} × {:?}, <redacted>)",
            self.rows, self.cols
        )
    }
}

impl MaskedMatrix {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns owned by each party.
    pub fn cols(&self) -> [usize; 2] {
        self.cols
    }
    /// Total columns.
    pub fn width(&self) -> usize {
        self.cols[0] + self.cols[1]
    }
}

impl<T: Transport> Engine<'_, T> {
    /// Masks `X = [X₀ | X₁]` once: party p passes its own columns `own` (rows × cols[p],
    /// fixed point); the dealer passes `None`. Party p's mask `U_p` is expanded from its seed
    /// (the dealer expands both and keeps them for [`Self::masked_mul_vec`] and
    /// [`Self::masked_tmul_vec`]); `X_p − U_p` is sent to the other party. Traffic: each
    /// party sends its own `rows × cols[p]` words once.
    pub async fn mask_matrix(
        &mut self,
        own: Option<&Array2<R64>>,
        rows: usize,
        cols: [usize; 2],
    ) -> Result<MaskedMatrix> {
        match &mut self.state {
            State::Dealer { prg, mask } => {
                *mask = Some(Arc::new(heavy(rows * (cols[0] + cols[1]), || {
                    [
                        fill_mat(&mut prg[0], rows, cols[0]),
                        fill_mat(&mut prg[1], rows, cols[1]),
                    ]
                })));
                Ok(MaskedMatrix {
                    rows,
                    cols,
                    e: Arc::new(Array2::from_elem((0, 0), ZERO)),
                    u: Zeroizing::new(Vec::new()),
                    other_only: false,
                })
            }
            State::Party { me, prg } => {
                let me = *me;
                let mine = cols[me.index()];
                let own =
                    own.ok_or_else(|| MpcError::Param("a party must supply its columns".into()))?;
                if own.shape() != [rows, mine] {
                    return Err(MpcError::Shape(format!(
                        "own columns {:?}, expected {rows} × {mine}",
                        own.shape()
                    )));
                }
                let (u, masked) = heavy(2 * rows * mine, || {
                    let u = fill_mat(prg, rows, mine);
                    let masked: Vec<u64> =
                        own.iter().zip(u.iter()).map(|(x, m)| (x - m).0).collect();
                    (u, masked)
                });
                let peer = self.names.party(me.other()).to_string();
                let theirs_len = rows * cols[me.other().index()];
                let (s, r) = tokio::join!(
                    send_words(self.t, &peer, &masked),
                    recv_words(self.t, &peer, theirs_len)
                );
                s?;
                let mine_e = shaped(rows, mine, from_words(masked))?;
                let theirs_e = shaped(rows, cols[me.other().index()], from_words(r?))?;
                let (c0, c1) = if me.is_first() {
                    (mine_e, theirs_e)
                } else {
                    (theirs_e, mine_e)
                };
                let e = heavy(2 * rows * (cols[0] + cols[1]), || {
                    let mut e = Array2::from_elem((rows, cols[0] + cols[1]), ZERO);
                    e.slice_axis_mut(Axis(1), Slice::from(..cols[0]))
                        .assign(&c0);
                    e.slice_axis_mut(Axis(1), Slice::from(cols[0]..))
                        .assign(&c1);
                    e
                });
                let u = Zeroizing::new(u.into_raw_vec_and_offset().0);
                Ok(MaskedMatrix {
                    rows,
                    cols,
                    e: Arc::new(e),
                    u,
                    other_only: false,
                })
            }
        }
    }

    fn check_rows(m: &MaskedMatrix, rows: &[usize]) -> Result<()> {
        Self::check_full(m)?;
        if rows.iter().any(|&r| r >= m.rows) {
            return Err(MpcError::Param("batch row index out of range".into()));
        }
        Ok(())
    }

    /// The products of this file need the whole `E` and the own mask.
    fn check_full(m: &MaskedMatrix) -> Result<()> {
        if m.other_only {
            return Err(MpcError::Param(
                "this masked matrix serves masked_tmul_owned only".into(),
            ));
        }
        Ok(())
    }

    fn own_u_rows(&self, m: &MaskedMatrix, rows: &[usize]) -> Array2<R64> {
        let me = self.party().unwrap_or(Party::P0);
        let c = m.cols[me.index()];
        let mut out = Array2::from_elem((rows.len(), c), ZERO);
        for (i, &r) in rows.iter().enumerate() {
            out.row_mut(i)
                .iter_mut()
                .zip(&m.u[r * c..(r + 1) * c])
                .for_each(|(o, v)| *o = *v);
        }
        out
    }

    /// Fresh masks for one product with the cached matrix: `V` (`v_len` words) and
    /// `Z = dealer_z(U, V)` (`z_len` words), where the dealer alone evaluates `dealer_z`
    /// on the whole masks `U` and `V`. Party 0 expands its shares of both from its seed,
    /// party 1 its share of `V` and receives its share of `Z` as a correction. Returns
    /// (this party, its share of `V`, its share of `Z`), or `None` at the dealer.
    async fn cache_masks(
        &mut self,
        v_len: usize,
        z_len: usize,
        dealer_z: impl FnOnce(&[Array2<R64>; 2], &Array1<R64>) -> Vec<R64>,
    ) -> Result<Option<(Party, SharedVec, Array1<R64>)>> {
        let dealt = heavy(v_len * z_len, || match &mut self.state {
            State::Dealer { prg, mask } => {
                let u = mask
                    .as_ref()
                    .ok_or_else(|| MpcError::Param("no masked matrix".into()))?;
                let (v0, z0) = (fill(&mut prg[0], v_len), fill(&mut prg[0], z_len));
                let v1 = fill(&mut prg[1], v_len);
                let v: Array1<R64> = v0.iter().zip(&v1).map(|(a, c)| a + c).collect();
                let z = dealer_z(u, &v);
                Ok(Some(z.iter().zip(&z0).map(|(a, c)| (a - c).0).collect()))
            }
            State::Party { .. } => Ok::<_, MpcError>(None),
        })?;
        let corr = self.correction(dealt, z_len).await?;
        Ok(match &mut self.state {
            State::Dealer { .. } => None,
            State::Party { me, prg } => {
                let v = fill(prg, v_len);
                let z = if me.is_first() {
                    fill(prg, z_len)
                } else {
                    from_words(corr)
                };
                Some((*me, vecs(v), Array1::from_vec(z)))
            }
        })
    }

    /// Shares of `X_b · w` for the rows `rows` of a masked matrix (no truncation).
    /// Fresh per call: `V` (width) and `Z = U_b·V` from the dealer; opens `w − V`.
    pub async fn masked_mul_vec(
        &mut self,
        m: &MaskedMatrix,
        rows: &[usize],
        w: &SharedVec,
    ) -> Result<SharedVec> {
        Self::check_rows(m, rows)?;
        let (d, b) = (m.width(), rows.len());
        if w.len() != d {
            return Err(MpcError::Shape(format!(
                "w has {} entries, X has {d} columns",
                w.len()
            )));
        }
        // Correlated randomness: V (d) and Z = U_b V (b).
        let masks = self
            .cache_masks(d, b, |[u0, u1], v| {
                let (va, vb) = v.view().split_at(Axis(0), m.cols[0]);
                rows.iter()
                    .map(|&r| u0.row(r).dot(&va) + u1.row(r).dot(&vb))
                    .collect()
            })
            .await?;
        let Some((me, v, z)) = masks else {
            return Ok(zeros(b));
        };
        let f = self.open(&w.sub(&v)?).await?;
        Ok(SharedVec::from_raw(heavy(2 * b * d, || {
            let e_b = m.e.select(Axis(0), rows);
            let mut coeff = v.raw().clone();
            if me.is_first() {
                coeff += &f;
            }
            let mut out = e_b.dot(&coeff) + z;
            let own_f = if me.is_first() {
                f.slice_axis(Axis(0), Slice::from(..m.cols[0]))
            } else {
                f.slice_axis(Axis(0), Slice::from(m.cols[0]..))
            };
            out += &self.own_u_rows(m, rows).dot(&own_f);
            out
        })))
    }

    /// Shares of `X_bᵀ · e` for the rows `rows` of a masked matrix (no truncation).
    /// Fresh per call: `V′` (batch) and `Z′ = U_bᵀ·V′` from the dealer; opens `e − V′`.
    pub async fn masked_tmul_vec(
        &mut self,
        m: &MaskedMatrix,
        rows: &[usize],
        e: &SharedVec,
    ) -> Result<SharedVec> {
        Self::check_rows(m, rows)?;
        let (d, b) = (m.width(), rows.len());
        if e.len() != b {
            return Err(MpcError::Shape(format!(
                "e has {} entries for {b} rows",
                e.len()
            )));
        }
        // Correlated randomness: V′ (b) and Z′ = U_bᵀ V′ (d).
        let masks = self
            .cache_masks(b, d, |[u0, u1], v| {
                let mut z = Array1::from_elem(d, ZERO);
                for (i, &r) in rows.iter().enumerate() {
                    z.slice_axis_mut(Axis(0), Slice::from(..m.cols[0]))
                        .scaled_add(v[i], &u0.row(r));
                    z.slice_axis_mut(Axis(0), Slice::from(m.cols[0]..))
                        .scaled_add(v[i], &u1.row(r));
                }
                z.to_vec()
            })
            .await?;
        let Some((me, v, z)) = masks else {
            return Ok(zeros(d));
        };
        let g = self.open(&e.sub(&v)?).await?;
        Ok(SharedVec::from_raw(heavy(2 * b * d, || {
            let e_b = m.e.select(Axis(0), rows);
            let mut coeff = v.raw().clone();
            if me.is_first() {
                coeff += &g;
            }
            let mut out = e_b.t().dot(&coeff) + z;
            let own = self.own_u_rows(m, rows).t().dot(&g);
            let range = if me.is_first() {
                Slice::from(..m.cols[0])
            } else {
                Slice::from(m.cols[0]..)
            };
            out.slice_axis_mut(Axis(0), range)
                .scaled_add(Wrapping(1), &own);
            out
        })))
    }

    /// Shares of `Xᵀ·e_j` over every row of a masked matrix for several shared vectors
    /// `e_j` at once (no truncation): the same protocol as [`Self::masked_tmul_vec`] on
    /// all rows with the `e_j` side by side as one `rows × L` matrix, so one opening, one
    /// dealer correction and one pass over `E` (a blocked, multi-threaded product) serve
    /// all `L` products. Fresh per call: `V′` (`rows × L`) and `Z′ = Uᵀ·V′` (`width × L`).
    pub async fn masked_tmul_all(
        &mut self,
        m: &MaskedMatrix,
        es: &[&SharedVec],
    ) -> Result<Vec<SharedVec>> {
        Self::check_full(m)?;
        let (d, n, l) = (m.width(), m.rows, es.len());
        if let Some(e) = es.iter().find(|e| e.len() != n) {
            return Err(MpcError::Shape(format!(
                "e has {} entries for {n} rows",
                e.len()
            )));
        }
        // The e_j as the columns of a row-major n × L matrix.
        let mut b = vec![ZERO; n * l];
        for (j, e) in es.iter().enumerate() {
            for (i, v) in e.as_slice().iter().enumerate() {
                b[i * l + j] = *v;
            }
        }
        let b = SharedVec::from_vec(b);
        let c0 = m.cols[0];
        let masks = self
            .cache_masks(n * l, d * l, |[u0, u1], v| {
                let v = v.as_slice().unwrap_or_default();
                let mut z = super::gemm::tmul(u0.as_slice().unwrap_or_default(), c0, v, l);
                z.extend(super::gemm::tmul(
                    u1.as_slice().unwrap_or_default(),
                    d - c0,
                    v,
                    l,
                ));
                z
            })
            .await?;
        let Some((me, v, z)) = masks else {
            return Ok(vec![zeros(d); l]);
        };
        let g = self.open(&b.sub(&v)?).await?;
        let out = heavy(3 * n * d * l, || {
            let mut coeff = v.raw().clone();
            if me.is_first() {
                coeff += &g;
            }
            let coeff = coeff.as_slice().unwrap_or_default();
            let g = g.as_slice().unwrap_or_default();
            let e = m.e.as_slice().unwrap_or_default();
            let mut out = super::gemm::tmul(e, d, coeff, l);
            let own = super::gemm::tmul(&m.u[..], m.cols[me.index()], g, l);
            let offset = if me.is_first() { 0 } else { c0 * l };
            out.iter_mut().zip(z.iter()).for_each(|(o, q)| *o += q);
            out[offset..offset + own.len()]
                .iter_mut()
                .zip(&own)
                .for_each(|(o, q)| *o += q);
            out
        });
        Ok((0..l)
            .map(|j| SharedVec::from_vec((0..d).map(|c| out[c * l + j]).collect()))
            .collect())
    }
}
