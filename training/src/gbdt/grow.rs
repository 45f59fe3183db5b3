//! Growing one tree on shares (steps 3–6 of the module docs) and routing rows through it.

use confide_mpc::{Engine, MaskedMatrix, Party, R64, SharedVec, Transport};
use ndarray::Array1;

use super::bins::Binned;
use super::ops::{argmax, cat, int, me, part, reciprocal, splat, total};
use super::plain::{EXCLUDED, INVALID};
use super::profile::span;
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

/// Each node's left indicator, at the owner of its rule (`None` elsewhere).
type Lefts = [Option<Array1<u8>>];

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

/// Shares of `g ⊙ m` and `h ⊙ m` for each membership (no truncation: `m` is 0/1), in one
/// outer product ([`Engine::mul_outer`]: `g`, `h` and each `m` opened once).
async fn masked_gh<T: Transport>(
    e: &mut Engine<'_, T>,
    g: &SharedVec,
    h: &SharedVec,
    ms: &[&SharedVec],
) -> Result<Vec<(SharedVec, SharedVec)>> {
    let l = ms.len();
    let mut prod = e.mul_outer(&[g, h], ms).await?;
    if prod.len() != 2 * l {
        return Err(TrainError::Internal(
            "outer product of the wrong size".into(),
        ));
    }
    let hs = prod.split_off(l);
    Ok(prod.into_iter().zip(hs).collect())
}

impl Grower<'_> {
    fn d(&self) -> usize {
        self.k[0] + self.k[1]
    }

    /// Left sums of every candidate and the totals, for each membership (`None`: the
    /// root, every row, whose `g ⊙ m, h ⊙ m` are `g, h` themselves: no product).
    async fn hists<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        g: &SharedVec,
        h: &SharedVec,
        ms: Option<&[&SharedVec]>,
    ) -> Result<Vec<Hist>> {
        let me = e.transport().me().to_string();
        let sp = span(&me, "hist: g⊙m, h⊙m");
        let gh = match ms {
            Some(ms) => masked_gh(e, g, h, ms).await?,
            None => vec![(g.clone(), h.clone())],
        };
        drop(sp);
        let vs: Vec<&SharedVec> = gh.iter().flat_map(|(gm, hm)| [gm, hm]).collect();
        let sp = span(&me, "hist: Cᵀ·[g⊙m, h⊙m]");
        let binned = self.own.map(|(b, _)| b);
        let own = |x: &[R64], l: usize| binned.map_or_else(Vec::new, |b| b.tmul(x, l));
        let mut sums = e.masked_tmul_owned(self.mm, &vs, &own).await?.into_iter();
        drop(sp);
        let mut out = Vec::with_capacity(gh.len());
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

    /// Plans the histogram products of this tree (unless already planned) and of the next
    /// one, if the run has one: their data-independent dense products then run in the
    /// background while this tree's other phases do ([`Engine::plan_owned`]). The first
    /// tree is planned level by level (its first level then waits for one small product,
    /// not the whole tree's), every later tree as one batch (one pass over the masked
    /// matrix). Every seat plans alike: the widths depend only on the depth, the count of
    /// trees planned only on the batches drawn.
    fn plan<T: Transport>(&self, e: &mut Engine<'_, T>) -> Result<()> {
        // One vector pair (g, h) per left child: 1 at level 0, 2^(level − 1) below.
        let widths: Vec<usize> = (0..self.p.depth)
            .map(|level| 2 * (1usize << level.saturating_sub(1)))
            .collect();
        let (drawn, queued) = e.owned_plans();
        if drawn == 0 {
            for w in &widths {
                e.plan_owned(self.mm, std::slice::from_ref(w))?;
            }
        } else if queued == 0 {
            e.plan_owned(self.mm, &widths)?;
        }
        // Trees planned: the first as `depth` batches, each later one as one.
        let drawn = usize::try_from(e.owned_plans().0).unwrap_or(usize::MAX);
        let planned = (drawn + 1).saturating_sub(widths.len());
        if e.owned_plans().1 <= widths.len() && planned < self.p.trees {
            e.plan_owned(self.mm, &widths)?;
        }
        Ok(())
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
        self.plan(e)?;
        let mut ms = vec![root(e, self.n)];
        let mut prev: Vec<Hist> = Vec::new();
        let mut nodes = Vec::new();
        for level in 0..self.p.depth {
            let hs = if level == 0 {
                self.hists(e, g, h, None).await?
            } else {
                let lefts: Vec<&SharedVec> = ms.iter().step_by(2).collect();
                let lh = self.hists(e, g, h, Some(&lefts)).await?;
                let mut hs = Vec::with_capacity(ms.len());
                for (l, parent) in lh.into_iter().zip(&prev) {
                    let r = parent.minus(&l)?;
                    hs.push(l);
                    hs.push(r);
                }
                hs
            };
            let (level_nodes, flag, lefts, sums) = self.split_level(e, &hs, out).await?;
            nodes.extend(level_nodes);
            if level + 1 == self.p.depth {
                // The leaves' weights go straight to the rows: no last routing.
                let (leaves, delta) = self.leaves(e, &ms, &flag, &lefts, &sums).await?;
                on_level(level + 1);
                return Ok(Grown {
                    nodes,
                    leaves,
                    delta,
                });
            }
            let sp = span(e.transport().me(), "route");
            ms = route(e, &ms, &flag, &lefts, self.n).await?;
            drop(sp);
            prev = hs;
            on_level(level + 1);
        }
        Err(TrainError::Internal("a tree of depth 0".into()))
    }

    /// Chooses the best candidate of every node of a level: the nodes, their shared split
    /// flags and (at the owner of each rule) its left indicators. Also returns the
    /// children's sums `(G, H)` in child order (`[left(0), right(0), …]`):
    /// with the split, the chosen candidate's left sums and the rest; without, the
    /// parent's and zero — exactly the sums over the children's rows.
    async fn split_level<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        hs: &[Hist],
        out: Option<&[bool]>,
    ) -> Result<(
        Vec<NodeShare>,
        SharedVec,
        Vec<Option<Array1<u8>>>,
        (SharedVec, SharedVec),
    )> {
        let seat = e.transport().me().to_string();
        let _level_span = span(&seat, "split level (all)");
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
        let sp = span(&seat, "split: reciprocal");
        let (y, s) = reciprocal(e, &den, lo, hi).await?;
        drop(sp);
        let sp = span(&seat, "split: gains");
        let a = e.mul_fixed(&num, &y).await?;
        let w = e.mul_fixed(&a, &s).await?;
        let q = e.mul_fixed(&num, &w).await?;
        drop(sp);
        let q = q.as_slice();
        let mut score = Vec::with_capacity(l * d);
        for i in 0..l {
            let base = 2 * d * i;
            score.extend((0..d).map(|c| q[base + c] + q[base + d + c]));
        }
        let parent = SharedVec::from_vec(q[2 * d * l..].to_vec());
        let mut score = SharedVec::from_vec(score);
        if self.p.min_child_weight > 0.0 {
            let _sp = span(&seat, "split: min_child_weight");
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
        let sp = span(&seat, "split: argmax");
        let gl_all = cat(hs.iter().map(|x| &x.gl));
        let hl_all = cat(hs.iter().map(|x| &x.hl));
        let (best, idx, chosen) = argmax(e, &score, l, d, &[&gl_all, &hl_all]).await?;
        drop((gl_all, hl_all));
        drop(sp);
        let sp = span(&seat, "split: flag, open to owner");
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
        // Children's sums: left = G + s·(G_L* − G), right = G − left.
        let (Some(gl_best), Some(hl_best)) = (chosen.first(), chosen.get(1)) else {
            return Err(TrainError::Internal("argmax lost its payload".into()));
        };
        let step = cat([&gl_best.sub(&gs)?, &hl_best.sub(&hsum)?]);
        let moved = e.mul(&cat([&flag, &flag]), &step).await?;
        let (mut gv, mut hv) = (Vec::with_capacity(2 * l), Vec::with_capacity(2 * l));
        for i in 0..l {
            let gleft = gs.as_slice()[i] + moved.as_slice()[i];
            let hleft = hsum.as_slice()[i] + moved.as_slice()[l + i];
            gv.extend([gleft, gs.as_slice()[i] - gleft]);
            hv.extend([hleft, hsum.as_slice()[i] - hleft]);
        }
        let sums = (SharedVec::from_vec(gv), SharedVec::from_vec(hv));
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
        drop(sp);
        Ok((nodes, flag, lefts, sums))
    }

    /// Leaf weights `−η·G/(H+λ)` from the leaves' sums `(G, H)` (child order) and each
    /// row's weight, straight from the last level's memberships `ms`, split flags `s` and
    /// left indicators `l`: a row of parent `p` gets `u_p = w_L + q_p·(l − 1)` with
    /// `q_p = s_p·(w_L − w_R)` (a product of two shared scalars), so `Σ_p m_p ⊙ u_p` needs
    /// two products per row and parent instead of routing to every leaf first.
    async fn leaves<T: Transport>(
        &self,
        e: &mut Engine<'_, T>,
        ms: &[SharedVec],
        flags: &SharedVec,
        lefts: &Lefts,
        (gv, hv): &(SharedVec, SharedVec),
    ) -> Result<(SharedVec, SharedVec)> {
        let _sp = span(e.transport().me(), "leaves");
        let fp = e.fixed();
        let me = me(e);
        let (l, n) = (ms.len(), self.n);
        if gv.len() != 2 * l || hv.len() != 2 * l || flags.len() != l {
            return Err(TrainError::Internal(
                "leaf sums do not match the leaves".into(),
            ));
        }
        let hv = hv.add_scalar(me, fp.encode(self.p.lambda)?);
        let (lo, hi) = self.range();
        let (y, s) = reciprocal(e, &hv, lo, hi).await?;
        let a = e.mul_fixed(gv, &y).await?;
        let w = e.mul_fixed(&a, &s).await?;
        let eta = fp.encode(-self.p.learning_rate)?;
        let w = e.trunc(&w.mul_public(eta), fp.frac_bits()).await?;
        let wv = w.as_slice();
        let dw: Vec<R64> = (0..l).map(|p| wv[2 * p] - wv[2 * p + 1]).collect();
        let q = e.mul(flags, &SharedVec::from_vec(dw)).await?;
        let ind = SharedVec::from_vec(indicators(me, lefts, l, n)?);
        let moved = e.mul_broadcast(&q, &ind).await?;
        drop(ind);
        let wl = SharedVec::from_vec((0..l).map(|p| wv[2 * p]).collect());
        let u = moved.add(&broadcast(&wl, n))?;
        let prod = e.mul(&cat(ms.iter()), &u).await?;
        Ok((w, fold_rows(&prod, n)))
    }
}

/// `Σ_leaf m_leaf · w_leaf` for shared 0/1 memberships and shared fixed-point weights.
pub(super) async fn leaf_scores<T: Transport>(
    e: &mut Engine<'_, T>,
    ms: &[SharedVec],
    w: &SharedVec,
    n: usize,
) -> Result<SharedVec> {
    if w.len() != ms.len() {
        return Err(TrainError::Internal("a weight per leaf expected".into()));
    }
    let prod = e.mul_broadcast(w, &cat(ms.iter())).await?;
    Ok(fold_rows(&prod, n))
}

/// Each element of `v` repeated `n` times, back to back.
fn broadcast(v: &SharedVec, n: usize) -> SharedVec {
    SharedVec::from_vec(
        v.as_slice()
            .iter()
            .flat_map(|&x| std::iter::repeat_n(x, n))
            .collect(),
    )
}

/// The sum of the consecutive `n`-element parts of `prod`.
fn fold_rows(prod: &SharedVec, n: usize) -> SharedVec {
    let mut out = vec![int(0); n];
    for chunk in prod.as_slice().chunks(n.max(1)) {
        for (o, v) in out.iter_mut().zip(chunk) {
            *o += v;
        }
    }
    SharedVec::from_vec(out)
}

/// The left indicators of `l` nodes, each row's `l − 1` shared: the owner of a node's
/// rule holds its indicator (party 0 also subtracts the 1); the other party holds 0 or −1.
fn indicators(me: Party, lefts: &Lefts, l: usize, n: usize) -> Result<Vec<R64>> {
    let minus = if me.is_first() { int(-1) } else { int(0) };
    let mut ind = Vec::with_capacity(l * n);
    for i in 0..l {
        match lefts.get(i).and_then(Option::as_ref) {
            Some(v) if v.len() == n => ind.extend(v.iter().map(|&b| int(i64::from(b)) + minus)),
            Some(_) => return Err(TrainError::Data("indicator of the wrong length".into())),
            None => ind.extend(std::iter::repeat_n(minus, n)),
        }
    }
    Ok(ind)
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
    if flags.len() != l {
        return Err(TrainError::Internal("a flag per node expected".into()));
    }
    let ind = indicators(me, lefts, l, n)?;
    let t = e
        .mul_broadcast(flags, &SharedVec::from_vec(ind))
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
