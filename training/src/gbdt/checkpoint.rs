//! Per-tree checkpoints of boosted trees, in the same folder and files as logistic
//! regression's per-epoch ones ([`crate::protocol::checkpoint`]: two generations
//! `state-0` / `state-1` by the parity of the trees done, each replaced atomically, mode
//! 0600 in a 0700 folder; on resume the seats agree on the newest tree all of them hold).
//!
//! After every tree each computing party writes its own shares of the running scores `F`
//! (one per row), its own part of the trees so far (exactly what its [`super::GbdtShare`]
//! keeps: shares of the split flags and leaf weights, and the split rules of the nodes
//! whose best candidate is one of its own columns), and the public state of early
//! stopping (the validation AUC after every tree, the best tree, whether boosting
//! stopped), which both computing parties learn anyway. The dealer writes the tree count
//! and whether boosting stopped. Nothing of another party: no other party's rules,
//! thresholds, columns or labels. Row and column draws (`subsample`, `colsample_bytree`)
//! are a function of the public seed and the tree's index, so there is no sampler state
//! to keep. Shares are zeroized on drop and never printed.

use confide_mpc::SharedVec;
use confide_mpc::offload::heavy;
use zeroize::{Zeroize, Zeroizing};

use super::{GbdtParams, NodeShare, SplitRule, Stopper, TreeShare};
use crate::error::{Result, TrainError};
use crate::protocol::TrainCheckpoint;
use crate::protocol::checkpoint::{self as ck, Generation, Reader};

const MAGIC: &[u8; 5] = b"CGBT1";

/// One seat's state after some trees.
pub(crate) struct Saved {
    fingerprint: [u8; 32],
    trees_done: u64,
    stopped: bool,
    /// The best tree so far (0-based) and its validation AUC.
    best: Option<(u64, f64)>,
    validation_auc: Vec<f64>,
    /// This party's shares of `F` (empty at the dealer).
    f: Vec<u64>,
    /// This party's part of the trees (empty at the dealer).
    trees: Vec<TreeShare>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        self.f.zeroize();
        for t in &mut self.trees {
            t.leaves.zeroize();
            t.nodes.iter_mut().for_each(|n| n.split.zeroize());
        }
    }
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("trees_done", &self.trees_done)
            .finish_non_exhaustive()
    }
}

fn put(m: &mut Vec<u8>, v: u64) {
    m.extend_from_slice(&v.to_le_bytes());
}

fn put_list(m: &mut Vec<u8>, l: &[u64]) {
    put(m, l.len() as u64);
    l.iter().for_each(|&x| put(m, x));
}

fn byte(r: &mut Reader<'_>) -> Option<u8> {
    r.take(1).map(|b| b[0])
}

fn rule(r: &mut Reader<'_>) -> Option<Option<SplitRule>> {
    if byte(r)? == 0 {
        return Some(None);
    }
    let (column, bin, len) = (r.u64()?, r.u64()?, r.u64()?);
    let name = String::from_utf8(r.take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
    let threshold = match byte(r)? {
        0 => None,
        _ => Some(f64::from_bits(r.u64()?)),
    };
    Some(Some(SplitRule {
        column: usize::try_from(column).ok()?,
        name,
        bin: usize::try_from(bin).ok()?,
        threshold,
    }))
}

impl Generation for Saved {
    fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    fn done(&self) -> u64 {
        self.trees_done
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut m = Zeroizing::new(MAGIC.to_vec());
        m.extend_from_slice(&self.fingerprint);
        m.push(u8::from(self.stopped));
        m.push(u8::from(self.best.is_some()));
        let (bt, ba) = self.best.unwrap_or_default();
        for v in [bt, ba.to_bits(), self.trees_done] {
            put(&mut m, v);
        }
        let aucs: Vec<u64> = self.validation_auc.iter().map(|a| a.to_bits()).collect();
        put_list(&mut m, &aucs);
        put_list(&mut m, &self.f);
        put(&mut m, self.trees.len() as u64);
        for t in &self.trees {
            put(&mut m, t.nodes.len() as u64);
            for n in &t.nodes {
                put(&mut m, n.split);
                m.push(u8::from(n.rule.is_some()));
                if let Some(r) = &n.rule {
                    for v in [r.column as u64, r.bin as u64, r.name.len() as u64] {
                        put(&mut m, v);
                    }
                    m.extend_from_slice(r.name.as_bytes());
                    m.push(u8::from(r.threshold.is_some()));
                    if let Some(x) = r.threshold {
                        put(&mut m, x.to_bits());
                    }
                }
            }
            put_list(&mut m, &t.leaves);
        }
        m
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        if r.take(5)? != MAGIC {
            return None;
        }
        let fingerprint: [u8; 32] = r.take(32)?.try_into().ok()?;
        let (stopped, has_best) = (byte(&mut r)? != 0, byte(&mut r)? != 0);
        let (bt, ba, trees_done) = (r.u64()?, f64::from_bits(r.u64()?), r.u64()?);
        let validation_auc = r.list()?.into_iter().map(f64::from_bits).collect();
        let mut s = Self {
            fingerprint,
            trees_done,
            stopped,
            best: has_best.then_some((bt, ba)),
            validation_auc,
            f: r.list()?,
            trees: Vec::new(),
        };
        // Every tree and node takes at least 8 bytes: the loops end with the input.
        for _ in 0..r.u64()? {
            let mut nodes = Vec::new();
            for _ in 0..r.u64()? {
                let split = r.u64()?;
                nodes.push(NodeShare {
                    split,
                    rule: rule(&mut r)?,
                });
            }
            let leaves = r.list()?;
            s.trees.push(TreeShare { nodes, leaves });
        }
        r.0.is_empty().then_some(s)
    }
}

/// The boosting loop's state: fresh, or restored from a checkpoint.
pub(super) struct State {
    /// This seat's shares of the raw scores.
    pub f: SharedVec,
    /// This party's part of the trees grown so far.
    pub trees: Vec<TreeShare>,
    /// Early stopping's rule.
    pub stopper: Stopper,
    /// The validation AUC after every tree so far.
    pub validation_auc: Vec<f64>,
    /// Trees taken from the checkpoint (0 for a fresh run).
    pub done: usize,
    /// Boosting had already stopped early at the checkpoint.
    pub stopped: bool,
}

impl State {
    /// The state before the first tree to grow: `saved` (checked against the job's shape)
    /// or a fresh start on `n` rows. `party`: a computing party (the dealer keeps no
    /// shares).
    pub fn start(saved: Option<Saved>, n: usize, params: &GbdtParams, party: bool) -> Result<Self> {
        let mut st = State {
            f: SharedVec::zeros(ndarray::Ix1(n)),
            trees: Vec::with_capacity(params.trees),
            stopper: Stopper::new(params.early_stopping_rounds),
            validation_auc: Vec::new(),
            done: 0,
            stopped: false,
        };
        let Some(mut s) = saved else { return Ok(st) };
        let bad = |m: &str| TrainError::Checkpoint(m.into());
        let done = usize::try_from(s.trees_done)
            .ok()
            .filter(|&d| d <= params.trees)
            .ok_or_else(|| bad("the training checkpoint has more trees than the job"))?;
        let leaves = 1usize << params.depth;
        let shaped = |t: &TreeShare| t.nodes.len() + 1 == leaves && t.leaves.len() == leaves;
        if party && (s.f.len() != n || s.trees.len() != done || !s.trees.iter().all(shaped)) {
            return Err(bad(
                "the training checkpoint's trees or scores have the wrong shape",
            ));
        }
        if party {
            st.f = ck::vec_of(&s.f);
            st.trees = std::mem::take(&mut s.trees);
        }
        let best = s.best.map(|(t, a)| (t as usize, a));
        st.stopper = Stopper::resumed(params.early_stopping_rounds, best);
        st.validation_auc = std::mem::take(&mut s.validation_auc);
        st.done = done;
        st.stopped = s.stopped;
        Ok(st)
    }
}

impl State {
    /// The trees still to grow out of `trees`: none after an early stop.
    pub fn to_grow(&self, trees: usize) -> std::ops::Range<usize> {
        self.done..if self.stopped { self.done } else { trees }
    }
}

/// The state after `done` trees, as a seat checkpoints it.
pub(super) struct After<'a> {
    /// Trees grown.
    pub done: usize,
    /// Boosting stops here (early stopping).
    pub stopped: bool,
    /// This seat's shares of the raw scores.
    pub f: &'a SharedVec,
    /// This party's part of the trees.
    pub trees: &'a [TreeShare],
    /// Early stopping's rule.
    pub stopper: &'a Stopper,
    /// The validation AUC after every tree.
    pub validation_auc: &'a [f64],
}

/// Writes this seat's checkpoint of `a` (`party`: a computing party; the dealer writes
/// the counts only).
pub(super) fn save(
    c: &TrainCheckpoint,
    fingerprint: [u8; 32],
    party: bool,
    a: After<'_>,
) -> Result<()> {
    let s = Saved {
        fingerprint,
        trees_done: a.done as u64,
        stopped: a.stopped,
        best: a.stopper.best().map(|(t, x)| (t as u64, x)),
        validation_auc: a.validation_auc.to_vec(),
        f: if party { ck::raw(a.f) } else { Vec::new() },
        trees: if party { a.trees.to_vec() } else { Vec::new() },
    };
    heavy(a.f.len(), || ck::save(&c.dir, &s))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::handshake::tests::cases;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// A damaged checkpoint file (bytes replaced, cut short, or random after the
        /// magic) is refused or read, never a panic, and nothing read is larger than the
        /// file.
        #[test]
        fn gbdt_checkpoint_decoder_never_panics(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut b = sample().encode().to_vec();
            for (i, v) in flips {
                let at = i.index(b.len());
                b[at] = v;
            }
            b.truncate(cut.index(b.len() + 1));
            for bytes in [b, [MAGIC.as_slice(), &tail].concat()] {
                if let Some(s) = Saved::decode(&bytes) {
                    let nodes: usize = s.trees.iter().map(|t| t.nodes.len() + t.leaves.len()).sum();
                    prop_assert!(8 * (s.f.len() + s.validation_auc.len() + nodes) <= bytes.len());
                }
            }
        }
    }

    fn sample() -> Saved {
        let node = |rule| NodeShare { split: 7, rule };
        let own = SplitRule {
            column: 1,
            name: "income".into(),
            bin: 3,
            threshold: Some(2.5),
        };
        Saved {
            fingerprint: [9; 32],
            trees_done: 2,
            stopped: true,
            best: Some((1, 0.75)),
            validation_auc: vec![0.7, 0.75],
            f: vec![1, 2, 3],
            trees: vec![
                TreeShare {
                    nodes: vec![node(Some(own.clone())), node(None), node(None)],
                    leaves: vec![4, 5, 6, 7],
                };
                2
            ],
        }
    }

    /// A resumed state goes on from the checkpoint's trees, scores and early-stopping
    /// state, and grows nothing after an early stop.
    #[test]
    fn a_resumed_state_is_the_checkpoints() {
        let mut p = GbdtParams::new(crate::PartyNames {
            active: "a".into(),
            passive: "b".into(),
            dealer: "d".into(),
        });
        (p.trees, p.depth, p.early_stopping_rounds) = (5, 2, 2);
        let st = State::start(Some(sample()), 3, &p, true).unwrap();
        assert_eq!((st.done, st.stopped, st.to_grow(5)), (2, true, 2..2));
        assert_eq!(st.stopper.best(), Some((1, 0.75)));
        assert_eq!(st.validation_auc, [0.7, 0.75]);
        assert_eq!(ck::raw(&st.f), [1, 2, 3]);
        assert_eq!(st.trees, sample().trees);
        let mut going = sample();
        going.stopped = false;
        let st = State::start(Some(going), 3, &p, true).unwrap();
        assert_eq!(st.to_grow(5), 2..5);
        // The tree after the best starts the count of rounds without improvement.
        let mut stopper = st.stopper;
        assert!(!stopper.after_tree(2, 0.7) && stopper.after_tree(3, 0.7));
        // A checkpoint of another shape is refused; a fresh start grows every tree.
        assert!(State::start(Some(sample()), 4, &p, true).is_err());
        assert_eq!(State::start(None, 3, &p, true).unwrap().to_grow(5), 0..5);
    }

    #[test]
    fn a_checkpoint_reads_back_and_damage_is_refused_without_panic() {
        let s = sample();
        let b = s.encode();
        let d = Saved::decode(&b).unwrap();
        assert!(d.encode()[..] == b[..], "encodes back to the same bytes");
        assert_eq!(
            (d.trees_done, d.stopped, d.best),
            (2, true, Some((1, 0.75)))
        );
        assert_eq!(d.trees, s.trees);
        assert!(!format!("{d:?}").contains("income"), "Debug redacts");
        // Every truncation and every flipped byte: an error or another valid state.
        for cut in 0..b.len() {
            assert!(Saved::decode(&b[..cut]).is_none(), "cut at {cut}");
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] ^= 0xff;
            let _ = Saved::decode(&m);
        }
    }
}
