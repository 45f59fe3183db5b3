//! Growing one tree on shares (steps 3–6 of the module docs) and routing rows through it.

use confide_mpc::{Engine, MaskedMatrix, Party, R64, SharedVec, Transport};
use ndarray::Array1;

use super::bins::Binned;
use super::ops::{argmax, cat, int, me, part, reciprocal, splat, total};
use super::plain::{EXCLUDED, INVALID};
use super::{GbdtParams, NodeShare, SplitRule};
use crate::error::{Result, TrainError};

/// What a tree is grown on: the masked candidate matrix and this party's bins.
pub(super) struct Grower<'c> {
    pub(super) mm: &'c MaskedMatrix,
    /// Candidates of party 0 and party 1.
    pub(super) k: [usize; 2],
    pub(super) n: usize,
    /// This party's bins and column names (`None` at the dealer).
    pub(super) own: Option<(&'c Binned, &'c [String])>,
    pub(super) p: &'c GbdtParams,
}

/// A grown tree at this seat.
pub(super) struct Grown {
    pub(super) nodes: Vec<NodeShare>,
    /// Shares of the leaf weights (η included).
    pub(super) leaves: SharedVec,
    /// Shares of each row's leaf weight (the update of the raw scores).
    pub(super) delta: SharedVec,
}

struct Hist {
    gl: SharedVec,
    hl: SharedVec,
    g: R64,
    h: R64,
}

impl Hist {
    fn minus(&self, o: &Hist) -> Result<Hist> {
        Ok(Hist {
            gl: self.gl.sub(&o.gl)?,
            hl: self.hl.sub(&o.hl)?,
            g: self.g - o.g,
            h: self.h - o.h,
        })
    }
}

/// The root membership: every row (party 0 holds the ones).
pub(super) fn root<T: Transport>(e: &Engine<'_, T>, n: usize) -> SharedVec {
    SharedVec::zeros(ndarray::Ix1(n)).add_scalar(me(e), int(1))
}

/// Shares of `g ⊙ m` and `h ⊙ m` for each membership (no truncation: `m` is 0/1).
async fn masked_gh<T: Transport>(
    e: &mut Engine<'_, T>,
    g: &SharedVec,
    h: &SharedVec,
    ms: &[&SharedVec],
) -> Result<Vec<(SharedVec, SharedVec)>> {
    let n = g.len();
    let l = ms.len();
    let lhs = cat(std::iter::repeat_n(g, l).chain(std::iter::repeat_n(h, l)));
    let rhs = cat(ms.iter().copied().chain(ms.iter().copied()));
    let prod = e.mul(&lhs, &rhs).await?;
    Ok((0..l)
        .map(|i| {
            (
                part(&prod, i * n, (i + 1) * n),
                part(&prod, (l + i) * n, (l + i + 1) * n),
            )
        })
        .collect())
}

impl Grower<'_> {
    fn d(&self) -> usize {
        self.k[0] + self.k[1]
    }

    /// Left sums of every candidate and the totals, for each membership.
    async fn hists<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        g: &SharedVec,
        h: &SharedVec,
        ms: &[&SharedVec],
    ) -> Result<Vec<Hist>> {
        let gh = masked_gh(e, g, h, ms).await?;
        let vs: Vec<&SharedVec> = gh.iter().flat_map(|(gm, hm)| [gm, hm]).collect();
        let mut sums = e.masked_tmul_all(self.mm, &vs).await?.into_iter();
        let mut out = Vec::with_capacity(ms.len());
        for (gm, hm) in &gh {
            let (Some(gl), Some(hl)) = (sums.next(), sums.next()) else {
                return Err(TrainError::Internal("missing histogram".into()));
            };
            out.push(Hist {
                gl,
                hl,
                g: total(gm),
                h: total(hm),
            });
        }
        Ok(out)
    }

    /// Reciprocal range of `H + λ`.
    fn range(&self) -> (f64, f64) {
        let lam = self.p.lambda;
        (lam / 2.0, self.n as f64 / 4.0 + lam + 1.0)
    }

    /// Grows one tree from the gradients `g` and hessians `h` (fixed point, shared).
    /// `out` marks this party's candidates whose column the tree may not split on
    /// (column subsampling; `None`: every candidate may be chosen).
    pub(super) async fn grow<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        g: &SharedVec,
        h: &SharedVec,
        out: Option<&[bool]>,
        on_level: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<Grown> {
        let mut ms = vec![root(e, self.n)];
        let mut prev: Vec<Hist> = Vec::new();
        let mut nodes = Vec::new();
        for level in 0..self.p.depth {
            let hs = if level == 0 {
                self.hists(e, g, h, &[&ms[0]]).await?
            } else {
                let lefts: Vec<&SharedVec> = ms.iter().step_by(2).collect();
                let lh = self.hists(e, g, h, &lefts).await?;
                let mut hs = Vec::with_capacity(ms.len());
                for (l, parent) in lh.into_iter().zip(&prev) {
                    let r = parent.minus(&l)?;
                    hs.push(l);
                    hs.push(r);
                }
                hs
            };
            let (level_nodes, children) = self.split_level(e, &ms, &hs, out).await?;
            nodes.extend(level_nodes);
            ms = children;
            prev = hs;
            on_level(level + 1);
        }
        self.leaves(e, g, h, &ms, &prev)
            .await
            .map(|(leaves, delta)| Grown {
                nodes,
                leaves,
                delta,
            })
    }

    /// Chooses the best candidate of every node of a level and routes the rows.
    async fn split_level<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        ms: &[SharedVec],
        hs: &[Hist],
        out: Option<&[bool]>,
    ) -> Result<(Vec<NodeShare>, Vec<SharedVec>)> {
        let fp = e.fixed();
        let me = me(e);
        let (d, l) = (self.d(), hs.len());
        // [G_L | G_R] per node, then every node's G; the same layout for H.
        let (mut num, mut den) = (Vec::new(), Vec::new());
        for hst in hs {
            num.push(hst.gl.clone());
            num.push(splat(hst.g, d).sub(&hst.gl)?);
            den.push(hst.hl.clone());
            den.push(splat(hst.h, d).sub(&hst.hl)?);
        }
        let gs = SharedVec::from_vec(hs.iter().map(|x| x.g).collect());
        let hsum = SharedVec::from_vec(hs.iter().map(|x| x.h).collect());
        let num = cat(num.iter().chain([&gs]));
        let den_raw = cat(den.iter().chain([&hsum]));
        let den = den_raw.add_scalar(me, fp.encode(self.p.lambda)?);
        let (lo, hi) = self.range();
        let (y, s) = reciprocal(e, &den, lo, hi).await?;
        let a = e.mul_fixed(&num, &y).await?;
        let w = e.mul_fixed(&a, &s).await?;
        let q = e.mul_fixed(&num, &w).await?;
        let q = q.as_slice();
        let mut score = Vec::with_capacity(l * d);
        for i in 0..l {
            let base = 2 * d * i;
            score.extend((0..d).map(|c| q[base + c] + q[base + d + c]));
        }
        let parent = SharedVec::from_vec(q[2 * d * l..].to_vec());
        let mut score = SharedVec::from_vec(score);
        if self.p.min_child_weight > 0.0 {
            let hlr = part(&den_raw, 0, 2 * d * l);
            let ok = e.ge_public(&hlr, &[self.p.min_child_weight]).await?;
            let ok = ok
                .first()
                .ok_or_else(|| TrainError::Internal("no comparison".into()))?
                .as_slice();
            let (mut bl, mut br) = (Vec::new(), Vec::new());
            for i in 0..l {
                bl.extend_from_slice(&ok[2 * d * i..2 * d * i + d]);
                br.extend_from_slice(&ok[2 * d * i + d..2 * d * (i + 1)]);
            }
            let valid = e
                .mul(&SharedVec::from_vec(bl), &SharedVec::from_vec(br))
                .await?;
            let big = fp.encode(-INVALID)?;
            let kept = e.mul(&valid, &score.add_scalar(me, big)).await?;
            score = kept.add_scalar(me, -big);
        }
        if let Some(out) = out {
            // Column subsampling: the owner of a candidate outside the tree's public column
            // draw subtracts the public penalty from its own share of that score (local).
            let (from, pen) = (
                if me.is_first() { 0 } else { self.k[0] },
                fp.encode(EXCLUDED)?,
            );
            let raw = score.raw_mut();
            for i in 0..l {
                for (c, _) in out.iter().enumerate().filter(|(_, o)| **o) {
                    let at = i * d + from + c;
                    let v = raw
                        .get_mut(at)
                        .ok_or_else(|| TrainError::Internal("candidate out of range".into()))?;
                    *v -= pen;
                }
            }
        }
        let (best, idx) = argmax(e, &score, l, d).await?;
        // Split flag and "candidate of party 1" bit, in one comparison with 0.
        let gain = best
            .sub(&parent)?
            .add_scalar(me, -fp.encode(2.0 * self.p.gamma)?);
        let p1 = idx.add_scalar(me, -fp.encode(self.k[0] as f64 - 0.5)?);
        let bits = e.ge_public(&cat([&gain, &p1]), &[0.0]).await?;
        let bits = bits
            .first()
            .ok_or_else(|| TrainError::Internal("no comparison".into()))?;
        let (flag, c) = (part(bits, 0, l), part(bits, l, 2 * l));
        let not_c = c.mul_public(int(-1)).add_scalar(me, int(1));
        let j0 = idx.add_scalar(me, fp.encode(1.0)?);
        let j1 = idx.add_scalar(me, -fp.encode(self.k[0] as f64 - 1.0)?);
        let js = e.mul(&cat([&not_c, &c]), &cat([&j0, &j1])).await?;
        let to0 = e.open_to(&part(&js, 0, l), &[Party::P0]).await?;
        let to1 = e.open_to(&part(&js, l, 2 * l), &[Party::P1]).await?;
        let mine = to0.or(to1);
        let mut nodes = Vec::with_capacity(l);
        let mut lefts: Vec<Option<Array1<u8>>> = Vec::with_capacity(l);
        for i in 0..l {
            let rule = match (&mine, self.own) {
                (Some(v), Some((b, names))) => {
                    let j = fp.decode(v[i]).round();
                    if j >= 1.0 {
                        let local = j as usize - 1;
                        let (col, bin) = b.locate(local).ok_or_else(|| {
                            TrainError::Internal(format!("opened candidate {local} out of range"))
                        })?;
                        Some(SplitRule {
                            column: col,
                            name: names.get(col).cloned().unwrap_or_default(),
                            bin,
                            threshold: b.columns[col].threshold(bin),
                        })
                    } else {
                        None
                    }
                }
                _ => None,
            };
            lefts.push(
                rule.as_ref()
                    .and_then(|r| self.own.map(|(b, _)| b.left(r.column, r.bin))),
            );
            nodes.push(NodeShare {
                split: flag.as_slice()[i].0,
                rule,
            });
        }
        let children = route(e, ms, &flag, &lefts, self.n).await?;
        Ok((nodes, children))
    }

    /// Leaf weights `−η·G/(H+λ)` and each row's weight.
    async fn leaves<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        g: &SharedVec,
        h: &SharedVec,
        ms: &[SharedVec],
        parents: &[Hist],
    ) -> Result<(SharedVec, SharedVec)> {
        let fp = e.fixed();
        let me = me(e);
        let lefts: Vec<&SharedVec> = ms.iter().step_by(2).collect();
        let lgh = masked_gh(e, g, h, &lefts).await?;
        let (mut gv, mut hv) = (Vec::new(), Vec::new());
        for ((gm, hm), p) in lgh.iter().zip(parents) {
            let (gl, hl) = (total(gm), total(hm));
            gv.extend([gl, p.g - gl]);
            hv.extend([hl, p.h - hl]);
        }
        let hv = SharedVec::from_vec(hv).add_scalar(me, fp.encode(self.p.lambda)?);
        let (lo, hi) = self.range();
        let (y, s) = reciprocal(e, &hv, lo, hi).await?;
        let a = e.mul_fixed(&SharedVec::from_vec(gv), &y).await?;
        let w = e.mul_fixed(&a, &s).await?;
        let eta = fp.encode(-self.p.learning_rate)?;
        let w = e.trunc(&w.mul_public(eta), fp.frac_bits()).await?;
        let delta = leaf_scores(e, ms, &w, self.n).await?;
        Ok((w, delta))
    }
}

/// `Σ_leaf m_leaf · w_leaf` for shared 0/1 memberships and shared fixed-point weights.
pub(super) async fn leaf_scores<T: Transport>(
    e: &mut Engine<'_, T>,
    ms: &[SharedVec],
    w: &SharedVec,
    n: usize,
) -> Result<SharedVec> {
    let ws = cat(w
        .as_slice()
        .iter()
        .map(|&v| splat(v, n))
        .collect::<Vec<_>>()
        .iter());
    let prod = e.mul(&cat(ms.iter()), &ws).await?;
    let mut out = vec![int(0); n];
    for chunk in prod.as_slice().chunks(n.max(1)) {
        for (o, v) in out.iter_mut().zip(chunk) {
            *o += v;
        }
    }
    Ok(SharedVec::from_vec(out))
}

/// Children of every node: `m_L = m ⊙ (s·(l − 1) + 1)`, `m_R = m − m_L`, where the
/// owner of a node's rule inputs its left indicator `l` (others input nothing).
/// Returns `[m_L(0), m_R(0), m_L(1), …]`.
pub(super) async fn route<T: Transport>(
    e: &mut Engine<'_, T>,
    ms: &[SharedVec],
    flags: &SharedVec,
    lefts: &[Option<Array1<u8>>],
    n: usize,
) -> Result<Vec<SharedVec>> {
    let me = me(e);
    let l = ms.len();
    let mut fl = Vec::with_capacity(l * n);
    let mut ind = Vec::with_capacity(l * n);
    for i in 0..l {
        fl.extend(std::iter::repeat_n(flags.as_slice()[i], n));
        let mine = lefts.get(i).and_then(Option::as_ref);
        // Owner's share: l − 1 (party 0 subtracts the 1); the other's: 0 or −1.
        let minus = if me.is_first() { int(-1) } else { int(0) };
        match mine {
            Some(v) if v.len() == n => ind.extend(v.iter().map(|&b| int(i64::from(b)) + minus)),
            Some(_) => return Err(TrainError::Data("indicator of the wrong length".into())),
            None => ind.extend(std::iter::repeat_n(minus, n)),
        }
    }
    let t = e
        .mul(&SharedVec::from_vec(fl), &SharedVec::from_vec(ind))
        .await?
        .add_scalar(me, int(1));
    let left = e.mul(&cat(ms.iter()), &t).await?;
    let mut out = Vec::with_capacity(2 * l);
    for (i, m) in ms.iter().enumerate() {
        let li = part(&left, i * n, (i + 1) * n);
        let ri = m.sub(&li)?;
        out.push(li);
        out.push(ri);
    }
    Ok(out)
}
