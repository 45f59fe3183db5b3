//! Boosted trees resumed from per-tree checkpoints: a run continued from the checkpoint
//! of its first trees keeps those trees and grows the rest as the uninterrupted run does.

mod common;

use std::path::{Path, PathBuf};

use common::{gbdt_data as data, gbdt_params as params, rt};
use confide_mpc::{FixedPoint, memory_mesh};
use confide_training::gbdt::GbdtOutcome;
use confide_training::{
    GbdtParams, GbdtProgress, LocalData, Role, TrainCheckpoint, train_gbdt_checkpointed,
};

const SEATS: [&str; 3] = ["bank", "shop", "dealer"];

/// Copies `from` (a seat's checkpoint folder) to `to` once the seat starts tree `at`
/// (1-based): a snapshot of the checkpoint after `at - 1` trees.
fn snapshot(from: PathBuf, to: PathBuf, at: usize) -> impl Fn(GbdtProgress) + Send + Sync {
    move |p: GbdtProgress| {
        if p.tree == at && p.level == 1 && !to.exists() {
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&from).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
    }
}

/// Trains at the three seats with checkpoints in `dirs` (resuming from them if `resume`);
/// snapshots each seat's checkpoint into `snap/<seat>` when it starts tree `snap_at`.
fn run(
    a: &LocalData,
    b: &LocalData,
    p: &GbdtParams,
    dirs: &[PathBuf; 3],
    resume: bool,
    (snap, snap_at): (&Path, usize),
) -> [Option<GbdtOutcome>; 3] {
    rt().block_on(async {
        let mesh = memory_mesh(&SEATS, 8);
        let ck = dirs.clone().map(|dir| TrainCheckpoint { dir, resume });
        let prog: Vec<_> = (0..3)
            .map(|i| snapshot(dirs[i].clone(), snap.join(SEATS[i]), snap_at))
            .collect();
        let seat = |i: usize, role, data: Option<&LocalData>| {
            train_gbdt_checkpointed(&mesh[i], role, data.cloned(), p, &prog[i], Some(&ck[i]))
        };
        let (ra, rb, rd) = tokio::join!(
            seat(0, Role::Active, Some(a)),
            seat(1, Role::Passive, Some(b)),
            seat(2, Role::Dealer, None)
        );
        [ra.unwrap(), rb.unwrap(), rd.unwrap()]
    })
}

/// Leaf weights of every tree (both shares added).
fn leaves(p: &GbdtParams, a: &GbdtOutcome, b: &GbdtOutcome) -> Vec<f64> {
    let fp = FixedPoint::new(p.frac_bits).unwrap();
    let (ta, tb) = (&a.model.trees, &b.model.trees);
    ta.iter()
        .zip(tb)
        .flat_map(|(x, y)| x.leaves.iter().zip(&y.leaves))
        .map(|(&x, &y)| fp.decode(std::num::Wrapping(x.wrapping_add(y))))
        .collect()
}

/// Trains 6 trees (validation 0.2, early stopping after `rounds`, shrinkage `eta`),
/// resumes a copy of the checkpoints taken after 3 trees and compares; returns the
/// uninterrupted run's party outcomes and checkpoint folders.
fn resume_after_three(
    eta: f64,
    rounds: usize,
    root: &Path,
) -> (GbdtParams, [GbdtOutcome; 2], [PathBuf; 3]) {
    let (a, b) = data(600, 21);
    let mut p = params(6, 3);
    (p.subsample, p.validation, p.seed) = (0.8, 0.2, 9);
    (p.learning_rate, p.early_stopping_rounds) = (eta, rounds);
    let dirs = SEATS.map(|s| root.join("ck").join(s));
    let snap = root.join("snap");
    // The uninterrupted run, its checkpoints copied when each seat starts tree 4.
    let [wa, wb, wd] = run(&a, &b, &p, &dirs, false, (&snap, 4));
    assert!(wd.is_none());
    let (wa, wb) = (wa.unwrap(), wb.unwrap());
    assert_eq!(wa.resumed_trees, 0);
    // The dealer's checkpoint holds its counts only; a party's holds its shares of F.
    let len = |s: &str| {
        std::fs::metadata(snap.join(s).join("state-1"))
            .unwrap()
            .len()
    };
    assert!(len("dealer") < 200, "{}", len("dealer"));
    assert!(len("shop") > 600 * 8, "{}", len("shop"));
    // Resumed from the snapshot: after 3 trees at every seat.
    let snaps = SEATS.map(|s| snap.join(s));
    let [ra, rb, rd] = run(&a, &b, &p, &snaps, true, (&root.join("none"), 0));
    assert!(rd.is_none());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.resumed_trees, rb.resumed_trees), (3, 3));
    assert_eq!(ra.grown, wa.grown, "as many trees grown");
    assert_eq!(ra.model.trees.len(), wa.model.trees.len(), "as many kept");
    // The checkpoint's trees are kept bit for bit; the rest split alike.
    let first = wa.model.trees.len().min(3);
    assert_eq!(ra.model.trees[..first], wa.model.trees[..first]);
    assert_eq!(rb.model.trees[..first], wb.model.trees[..first]);
    for (x, y) in [(&ra, &wa), (&rb, &wb)] {
        let rules = |o: &GbdtOutcome| -> Vec<_> {
            let nodes = o.model.trees.iter().flat_map(|t| t.nodes.iter());
            nodes.map(|n| n.rule.clone()).collect()
        };
        assert_eq!(rules(x), rules(y), "the same split rules");
    }
    let (lw, lr) = (leaves(&p, &wa, &wb), leaves(&p, &ra, &rb));
    for (w, r) in lw.iter().zip(&lr) {
        assert!((w - r).abs() < 1e-3, "leaf {w} vs {r}");
    }
    assert_eq!(ra.validation_auc[..3], wa.validation_auc[..3]);
    assert_eq!(ra.validation_auc.len(), wa.validation_auc.len());
    for (w, r) in wa.validation_auc.iter().zip(&ra.validation_auc) {
        assert!((w - r).abs() < 1e-2, "validation AUC {w} vs {r}");
    }
    (p, [wa, wb], dirs)
}

#[test]
fn a_resumed_run_keeps_the_checkpointed_trees_and_grows_the_rest_alike() {
    let root = tempfile::tempdir().unwrap();
    let (_, [whole, _], _) = resume_after_three(0.3, 6, root.path());
    assert_eq!(
        whole.model.trees.len(),
        6,
        "no early stop: all trees compared"
    );
}

/// Early stopping goes on from the checkpoint (same trees grown and kept), and a run
/// resumed from the last checkpoint of a finished run grows nothing more. (Whether the
/// best tree falls before the resume point depends on the fixed-point noise of the
/// first trees; `State::start`'s unit test covers the restored rule itself.)
#[test]
fn early_stopping_resumes_with_its_best_tree_and_its_stop() {
    let root = tempfile::tempdir().unwrap();
    // η = 1, patience 2: the validation AUC peaks early and boosting stops.
    let (p, [whole, _], dirs) = resume_after_three(1.0, 2, root.path());
    eprintln!("AUC {:?}, {} grown", whole.validation_auc, whole.grown);
    let (a, b) = data(600, 21);
    let [ra, _, _] = run(&a, &b, &p, &dirs, true, (&root.path().join("none"), 0));
    let ra = ra.unwrap();
    let kept = whole.model.trees.len();
    assert_eq!(
        (ra.resumed_trees, ra.grown, ra.model.trees.len()),
        (whole.grown, whole.grown, kept)
    );
}
