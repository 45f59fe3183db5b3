//! The plaintext twin: the same boosting on the same bins in `f64`, with the same sigmoid
//! spline, gain rule, tie-breaking and "no split sends every row left" convention as the
//! secure protocol. Tests compare the two; it is also the accuracy baseline.

use super::ops::plain_sigmoid;

use super::GbdtParams;
use super::bins::Binned;
use super::early::{Stopper, plain_validation_auc};

/// One internal node of a plaintext tree (level order, children of `i` at `2i+1`, `2i+2`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainNode {
    /// Party owning the best candidate (0 active, 1 passive).
    pub party: usize,
    /// Column of that party.
    pub column: usize,
    /// Candidate bin within the column.
    pub bin: usize,
    /// Whether the node splits (gain ≥ γ with valid children); otherwise every row goes left.
    pub split: bool,
    /// Gain `½(G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ))` of the best candidate.
    pub gain: f64,
    /// Rows reaching the node.
    pub rows: usize,
    /// Best score minus the second best (how far the choice is from a tie).
    pub margin: f64,
}

/// A plaintext tree: `2^depth − 1` internal nodes and `2^depth` leaf weights (η included).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainTree {
    /// Internal nodes in level order.
    pub nodes: Vec<PlainNode>,
    /// Leaf weights, left to right.
    pub leaves: Vec<f64>,
}

/// Score of an invalid candidate (a child under `min_child_weight`).
pub(super) const INVALID: f64 = -1_099_511_627_776.0; // −2^40

/// Penalty on the score of a candidate whose column the tree did not draw (column
/// subsampling): every such score falls below every drawn candidate's, even an invalid one.
pub(super) const EXCLUDED: f64 = 2_199_023_255_552.0; // 2^41

/// What the plaintext twin returns.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainBoost {
    /// The trees kept (with early stopping: up to the best).
    pub trees: Vec<PlainTree>,
    /// The final raw scores of all rows under every tree grown.
    pub f: Vec<f64>,
    /// The binned validation AUC after each tree grown (empty without validation rows).
    pub validation_auc: Vec<f64>,
    /// Trees grown before the stopping rule ended boosting (or all of them).
    pub grown: usize,
}

/// Trains the plaintext twin; returns the trees and the final raw scores of the rows
/// ([`boost_gbdt_plain`] on the job's validation split; a split the secure run refuses
/// counts as none here).
pub fn train_gbdt_plain(
    parts: [&Binned; 2],
    y: &[f64],
    p: &GbdtParams,
) -> (Vec<PlainTree>, Vec<f64>) {
    let val = p.split(y.len()).map(|s| s.1).unwrap_or_default();
    let b = boost_gbdt_plain(parts, y, p, &val);
    (b.trees, b.f)
}

/// The plaintext twin with validation rows `val` (ascending): they take no part in
/// growing (g = h = 0), their binned AUC is taken after each tree, and with
/// `early_stopping_rounds` the same rule as the secure run stops boosting and keeps the
/// trees up to the best.
pub fn boost_gbdt_plain(
    parts: [&Binned; 2],
    y: &[f64],
    p: &GbdtParams,
    val: &[usize],
) -> PlainBoost {
    let n = y.len();
    let mut in_val = vec![false; n];
    for &i in val {
        if let Some(v) = in_val.get_mut(i) {
            *v = true;
        }
    }
    let mut stopper = Stopper::new(p.early_stopping_rounds);
    let mut validation_auc = Vec::new();
    let mut f = vec![0.0; n];
    let mut trees = Vec::with_capacity(p.trees);
    let c0 = parts[0].columns.len();
    let columns = c0 + parts[1].columns.len();
    let cands: Vec<(usize, usize, usize)> = (0..2)
        .flat_map(|party| {
            (0..parts[party].candidates())
                .filter_map(move |c| parts[party].locate(c).map(|(j, k)| (party, j, k)))
        })
        .collect();
    for tree in 0..p.trees {
        let prob: Vec<f64> = f.iter().map(|&z| plain_sigmoid(z)).collect();
        let mut g: Vec<f64> = prob.iter().zip(y).map(|(p, y)| p - y).collect();
        let mut h: Vec<f64> = prob.iter().map(|p| p * (1.0 - p)).collect();
        // Rows left out of this tree, and validation rows, add nothing to its statistics.
        let rows = p.tree_rows(tree, n);
        for i in 0..n {
            if in_val[i] || rows.as_ref().is_some_and(|r| !r[i]) {
                g[i] = 0.0;
                h[i] = 0.0;
            }
        }
        // Candidates of columns outside this tree's draw (same draw as the secure run).
        let out: Option<Vec<bool>> = p.tree_columns(tree, columns).map(|keep| {
            cands
                .iter()
                .map(|&(party, j, _)| !keep[if party == 0 { j } else { c0 + j }])
                .collect()
        });
        let mut level: Vec<Vec<usize>> = vec![(0..n).collect()];
        let mut nodes = Vec::new();
        for _ in 0..p.depth {
            let mut next = Vec::with_capacity(2 * level.len());
            for rows in &level {
                let (node, left, right) =
                    best_split(parts, &cands, out.as_deref(), rows, &g, &h, p);
                nodes.push(node);
                next.push(left);
                next.push(right);
            }
            level = next;
        }
        let mut leaves = Vec::with_capacity(level.len());
        for rows in &level {
            let gs: f64 = rows.iter().map(|&i| g[i]).sum();
            let hs: f64 = rows.iter().map(|&i| h[i]).sum();
            let w = -p.learning_rate * gs / (hs + p.lambda);
            for &i in rows {
                f[i] += w;
            }
            leaves.push(w);
        }
        trees.push(PlainTree { nodes, leaves });
        if !val.is_empty() {
            let auc = plain_validation_auc(&f, y, val);
            validation_auc.push(auc);
            if stopper.after_tree(tree, auc) {
                break;
            }
        }
    }
    let grown = trees.len();
    if let (true, Some(best)) = (p.early_stopping_rounds > 0, stopper.best_tree()) {
        trees.truncate(best + 1);
    }
    PlainBoost {
        trees,
        f,
        validation_auc,
        grown,
    }
}

fn best_split(
    parts: [&Binned; 2],
    cands: &[(usize, usize, usize)],
    out: Option<&[bool]>,
    rows: &[usize],
    g: &[f64],
    h: &[f64],
    p: &GbdtParams,
) -> (PlainNode, Vec<usize>, Vec<usize>) {
    let gs: f64 = rows.iter().map(|&i| g[i]).sum();
    let hs: f64 = rows.iter().map(|&i| h[i]).sum();
    let parent = gs * gs / (hs + p.lambda);
    let (mut best, mut best_c, mut second) = (f64::NEG_INFINITY, 0, f64::NEG_INFINITY);
    for (c, &(party, j, k)) in cands.iter().enumerate() {
        let (mut gl, mut hl) = (0.0, 0.0);
        for &i in rows {
            if usize::from(parts[party].bins[(i, j)]) <= k {
                gl += g[i];
                hl += h[i];
            }
        }
        let (gr, hr) = (gs - gl, hs - hl);
        let valid =
            p.min_child_weight <= 0.0 || (hl >= p.min_child_weight && hr >= p.min_child_weight);
        let mut score = if valid {
            gl * gl / (hl + p.lambda) + gr * gr / (hr + p.lambda)
        } else {
            INVALID
        };
        if out.is_some_and(|o| o[c]) {
            score -= EXCLUDED;
        }
        if score > best {
            second = best;
            best = score;
            best_c = c;
        } else if score > second {
            second = score;
        }
    }
    let (party, column, bin) = cands.get(best_c).copied().unwrap_or((0, 0, 0));
    let split = !cands.is_empty() && best - parent >= 2.0 * p.gamma;
    let (left, right) = if split {
        rows.iter()
            .partition(|&&i| usize::from(parts[party].bins[(i, column)]) <= bin)
    } else {
        (rows.to_vec(), Vec::new())
    };
    let node = PlainNode {
        party,
        column,
        bin,
        split,
        gain: (best - parent) / 2.0,
        rows: rows.len(),
        margin: best - second,
    };
    (node, left, right)
}

/// Raw scores of new rows under plaintext trees: `parts` are both parties' features (NaN
/// missing) and their bins from training.
pub fn predict_gbdt_plain(
    trees: &[PlainTree],
    parts: [(&ndarray::Array2<f64>, &Binned); 2],
) -> Vec<f64> {
    let n = parts[0].0.nrows();
    let mut out = vec![0.0; n];
    for t in trees {
        for (i, o) in out.iter_mut().enumerate() {
            let mut node = 0;
            while node < t.nodes.len() {
                let nd = &t.nodes[node];
                let (x, b) = parts[nd.party];
                let left = !nd.split
                    || super::bins::goes_left(
                        x[(i, nd.column)],
                        b.columns[nd.column].threshold(nd.bin),
                    );
                node = 2 * node + if left { 1 } else { 2 };
            }
            *o += t.leaves[node - t.nodes.len()];
        }
    }
    out
}
