//! Every product `x_a ⊙ y_i` of a few shared vectors with a few others, each input opened
//! once (an "outer" Beaver product).

use super::{Engine, State, fill, from_words, vecs};
use crate::error::{MpcError, Result};
use crate::offload::heavy;
use crate::ring::R64;
use crate::share::SharedVec;
use crate::transport::Transport;

/// Triples for [`Engine::mul_outer`]: masks `a` (`k × n`), `b` (`l × n`) and
/// `c_{a,i} = a_a ⊙ b_i` (`k·l × n`, `a` major), row-major.
struct OuterTriples {
    a: Vec<R64>,
    b: Vec<R64>,
    c: Vec<R64>,
}

impl<T: Transport> Engine<'_, T> {
    async fn outer_triples(&mut self, k: usize, l: usize, n: usize) -> Result<OuterTriples> {
        let dealt = heavy((k + 1) * (l + 1) * n, || match &mut self.state {
            State::Dealer { prg, .. } => {
                let (a0, b0, c0) = (
                    fill(&mut prg[0], k * n),
                    fill(&mut prg[0], l * n),
                    fill(&mut prg[0], k * l * n),
                );
                let (a1, b1) = (fill(&mut prg[1], k * n), fill(&mut prg[1], l * n));
                let mut c1 = Vec::with_capacity(k * l * n);
                for x in 0..k {
                    for y in 0..l {
                        let at = (x * l + y) * n;
                        c1.extend((0..n).map(|j| {
                            let av = a0[x * n + j] + a1[x * n + j];
                            let bv = b0[y * n + j] + b1[y * n + j];
                            (av * bv - c0[at + j]).0
                        }));
                    }
                }
                Some(c1)
            }
            State::Party { .. } => None,
        });
        let corr = self.correction(dealt, k * l * n).await?;
        Ok(heavy((k + l + k * l) * n, || match &mut self.state {
            State::Dealer { .. } => OuterTriples {
                a: Vec::new(),
                b: Vec::new(),
                c: Vec::new(),
            },
            State::Party { me, prg } => {
                let a = fill(prg, k * n);
                let b = fill(prg, l * n);
                let c = if me.is_first() {
                    fill(prg, k * l * n)
                } else {
                    from_words(corr)
                };
                OuterTriples { a, b, c }
            }
        }))
    }

    /// Shares of `x_a ⊙ y_i` for every `x_a` in `xs` and `y_i` in `ys` (no truncation),
    /// returned `a` major (`x₀⊙y₀, x₀⊙y₁, …, x₁⊙y₀, …`). One round: each party opens
    /// `x_a − A_a` and `y_i − B_i` once per input, `(k + l)·n` words instead of the
    /// `2·k·l·n` of separate Beaver products; the dealer deals `C_{a,i} = A_a ⊙ B_i`
    /// (`k·l·n` correction words to party 1, as for separate products). Each opened value
    /// is masked by its own fresh uniform mask.
    pub async fn mul_outer(
        &mut self,
        xs: &[&SharedVec],
        ys: &[&SharedVec],
    ) -> Result<Vec<SharedVec>> {
        let n = xs.first().or(ys.first()).map_or(0, |v| v.len());
        if xs.iter().chain(ys).any(|v| v.len() != n) {
            return Err(MpcError::Shape(
                "mul_outer: vectors of different lengths".into(),
            ));
        }
        let (k, l) = (xs.len(), ys.len());
        let t = self.outer_triples(k, l, n).await?;
        if self.is_dealer() {
            return Ok(vec![super::zeros(n); k * l]);
        }
        let mut masked = Vec::with_capacity((k + l) * n);
        for (x, mask) in xs.iter().zip(t.a.chunks_exact(n.max(1))) {
            masked.extend(x.as_slice().iter().zip(mask).map(|(v, m)| v - m));
        }
        for (y, mask) in ys.iter().zip(t.b.chunks_exact(n.max(1))) {
            masked.extend(y.as_slice().iter().zip(mask).map(|(v, m)| v - m));
        }
        let opened = self.open(&vecs(masked)).await?;
        let opened = opened.as_slice().unwrap_or_default();
        let (d, e) = opened.split_at(k * n);
        let p0 = self.is_p0();
        Ok(heavy(4 * k * l * n, || {
            let mut out = Vec::with_capacity(k * l);
            for x in 0..k {
                for y in 0..l {
                    let at = (x * l + y) * n;
                    let z: Vec<R64> = (0..n)
                        .map(|j| {
                            let (dv, ev) = (d[x * n + j], e[y * n + j]);
                            let mut v = t.c[at + j] + dv * t.b[y * n + j] + ev * t.a[x * n + j];
                            if p0 {
                                v += dv * ev;
                            }
                            v
                        })
                        .collect();
                    out.push(vecs(z));
                }
            }
            out
        }))
    }
}

impl<T: Transport> Engine<'_, T> {
    /// Shares of `s_p · v_i` for every element `i` of part `p` of `v`: `v` is `l` parts of
    /// `n` elements back to back and `s` holds `l` scalars (no truncation). One round in
    /// which each scalar is opened once (`s_p − A_p`) and each element of `v` once:
    /// `l + l·n` words per party instead of the `2·l·n` of a product with `s` repeated.
    /// The dealer deals `C_i = A_p·B_i` (`l·n` correction words to party 1).
    pub async fn mul_broadcast(&mut self, s: &SharedVec, v: &SharedVec) -> Result<SharedVec> {
        let l = s.len();
        let n = v.len().checked_div(l).unwrap_or(0);
        if n * l != v.len() || (l == 0 && !v.is_empty()) {
            return Err(MpcError::Shape(format!(
                "mul_broadcast: {} elements for {l} scalars",
                v.len()
            )));
        }
        let m = l * n;
        let dealt = heavy(3 * m, || match &mut self.state {
            State::Dealer { prg, .. } => {
                let (a0, b0, c0) = (
                    fill(&mut prg[0], l),
                    fill(&mut prg[0], m),
                    fill(&mut prg[0], m),
                );
                let (a1, b1) = (fill(&mut prg[1], l), fill(&mut prg[1], m));
                Some(
                    (0..m)
                        .map(|i| ((a0[i / n] + a1[i / n]) * (b0[i] + b1[i]) - c0[i]).0)
                        .collect(),
                )
            }
            State::Party { .. } => None,
        });
        let corr = self.correction(dealt, m).await?;
        let (me, prg) = match &mut self.state {
            State::Dealer { .. } => return Ok(super::zeros(m)),
            State::Party { me, prg } => (*me, prg),
        };
        let (a, b) = (fill(prg, l), fill(prg, m));
        let c = if me.is_first() {
            fill(prg, m)
        } else {
            from_words(corr)
        };
        let mut masked: Vec<R64> = s.as_slice().iter().zip(&a).map(|(x, y)| x - y).collect();
        masked.extend(v.as_slice().iter().zip(&b).map(|(x, y)| x - y));
        let opened = self.open(&vecs(masked)).await?;
        let opened = opened.as_slice().unwrap_or_default();
        let (d, e) = opened.split_at(l);
        let p0 = me.is_first();
        Ok(vecs(heavy(4 * m, || {
            (0..m)
                .map(|i| {
                    let p = i / n;
                    let mut z = c[i] + d[p] * b[i] + e[i] * a[p];
                    if p0 {
                        z += d[p] * e[i];
                    }
                    z
                })
                .collect()
        })))
    }
}
