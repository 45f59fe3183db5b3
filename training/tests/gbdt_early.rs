//! Boosted trees with a validation split and early stopping: the secure run makes the
//! twin's decisions, validation rows take no part in growing, the dealer learns only when
//! boosting stops, and bad settings fail at every seat.

mod common;

use common::{gbdt_data as data, gbdt_params as params, names, run_gbdt as run};
use confide_mpc::{FixedPoint, Recording};
use confide_training::gbdt::bins::Binned;
use confide_training::gbdt::{Stopper, boost_gbdt_plain};
use confide_training::{GbdtOptions, GbdtParams, LocalData, TrainOptions};

const ROWS: usize = 1000;
const SEED: u64 = 5;

fn parts(a: &LocalData, b: &LocalData, p: &GbdtParams) -> [Binned; 2] {
    [
        Binned::fit(&a.features, p.bins),
        Binned::fit(&b.features, p.bins),
    ]
}

fn leaf(fp: FixedPoint, x: u64, z: u64) -> f64 {
    fp.decode(std::num::Wrapping(x.wrapping_add(z)))
}

/// XGBoost's rule: stop once the metric has not strictly improved for `rounds` trees; the
/// best tree is the first with the highest value.
#[test]
fn the_stopping_rule_waits_rounds_trees_for_a_strict_improvement() {
    let mut s = Stopper::new(2);
    let aucs = [0.7, 0.8, 0.8, 0.79, 0.9];
    let stops: Vec<bool> = aucs
        .iter()
        .enumerate()
        .map(|(t, &a)| s.after_tree(t, a))
        .collect();
    assert_eq!(stops, [false, false, false, true, false]);
    assert_eq!(Stopper::new(2).best_tree(), None);
    let mut never = Stopper::new(0);
    assert!(
        aucs.iter()
            .enumerate()
            .all(|(t, &a)| !never.after_tree(t, a))
    );
    assert_eq!(never.best_tree(), Some(4));
}

/// How far each of the twin's stopping decisions is from a tie: per tree, the distance of
/// its validation AUC from the best before it.
fn margins(aucs: &[f64]) -> f64 {
    let mut best = f64::NEG_INFINITY;
    let mut least = f64::INFINITY;
    for &a in aucs {
        if best.is_finite() {
            least = least.min((a - best).abs());
        }
        best = best.max(a);
    }
    least
}

/// The secure run stops after the same tree as the twin (whose every decision is clear of
/// a tie by more than the fixed-point noise), keeps the same trees, and its per-tree
/// validation AUC follows the twin's; its decisions are the rule's on its own AUCs; the
/// dealer receives one stop flag per tree and nothing else after the handshake.
#[test]
fn early_stopping_makes_the_twins_decisions() {
    let (a, b) = data(ROWS, 11);
    let mut p = params(40, 3);
    p.learning_rate = 0.5;
    p.validation = 0.3;
    p.early_stopping_rounds = 3;
    p.seed = SEED;
    let bins = parts(&a, &b, &p);
    let y = a.label.clone().unwrap();
    let (_, val) = p.split(ROWS).unwrap();
    let plain = boost_gbdt_plain([&bins[0], &bins[1]], &y, &p, &val);
    // The setting is clear of ties: each decision is at least 10⁻³ from one.
    assert!(
        margins(&plain.validation_auc) > 1e-3,
        "{:?}",
        plain.validation_auc
    );
    assert!(
        plain.grown < 40,
        "the twin never stopped: {:?}",
        plain.validation_auc
    );
    assert_eq!(plain.validation_auc.len(), plain.grown);
    assert!(plain.trees.len() + 3 == plain.grown, "kept up to the best");
    let log = Recording::default();
    let [ra, rb, rd] = run(Some(a), Some(b), &p, Some(log.clone()));
    assert!(rd.unwrap().is_none());
    let (oa, ob) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
    assert_eq!(
        oa.validation_auc, ob.validation_auc,
        "both parties see the same AUC"
    );
    // The secure run follows the rule on its own opened AUCs.
    let mut rule = Stopper::new(3);
    let stops: Vec<bool> = (oa.validation_auc.iter().enumerate())
        .map(|(t, &x)| rule.after_tree(t, x))
        .collect();
    assert_eq!(stops.iter().position(|s| *s), Some(oa.grown - 1));
    assert_eq!(rule.best_tree(), Some(oa.model.trees.len() - 1));
    for o in [&oa, &ob] {
        assert_eq!(
            (o.grown, o.model.trees.len(), o.validation_rows),
            (plain.grown, plain.trees.len(), val.len())
        );
        for (s, z) in o.validation_auc.iter().zip(&plain.validation_auc) {
            assert!(
                (s - z).abs() < 0.01,
                "{:?} vs {:?}",
                o.validation_auc,
                plain.validation_auc
            );
        }
    }
    let fp = FixedPoint::new(p.frac_bits).unwrap();
    for (t, pt) in plain.trees.iter().enumerate() {
        for (l, &w) in pt.leaves.iter().enumerate() {
            let s = leaf(fp, oa.model.trees[t].leaves[l], ob.model.trees[t].leaves[l]);
            assert!((s - w).abs() < 2e-3, "tree {t} leaf {l}: {s} vs {w}");
        }
    }
    let rec = log.lock().unwrap();
    let to_dealer: Vec<&[u8]> = rec
        .iter()
        .filter(|m| m.to == "dealer")
        .map(|m| m.bytes.as_slice())
        .collect();
    assert_eq!(
        to_dealer.len(),
        2 + plain.grown,
        "handshake and one flag per tree"
    );
    assert!(to_dealer[2..].iter().all(|m| m.len() == 1));
    assert_eq!(to_dealer.last(), Some(&&[1u8][..]), "the last flag stops");
}

/// Validation rows add nothing to the trees: flipping their labels leaves every tree as
/// it was (secure and twin) and only changes their AUC, which is taken after each tree.
#[test]
fn validation_rows_take_no_part_in_growing() {
    let (a, b) = data(400, 11);
    let mut p = params(4, 3);
    p.validation = 0.25;
    p.seed = 9;
    let (_, val) = p.split(400).unwrap();
    let mut flipped = a.clone();
    for &i in &val {
        let y = &mut flipped.label.as_mut().unwrap()[i];
        *y = 1.0 - *y;
    }
    let bins = parts(&a, &b, &p);
    let twin =
        |a: &LocalData| boost_gbdt_plain([&bins[0], &bins[1]], a.label.as_ref().unwrap(), &p, &val);
    let (t0, t1) = (twin(&a), twin(&flipped));
    assert_eq!(t0.trees, t1.trees);
    assert_eq!(t0.validation_auc.len(), 4);
    let fp = FixedPoint::new(p.frac_bits).unwrap();
    let mut aucs = Vec::new();
    let mut leaves = Vec::new();
    for d in [&a, &flipped] {
        let log = Recording::default();
        let [ra, rb, _] = run(Some(d.clone()), Some(b.clone()), &p, Some(log.clone()));
        // Without early stopping the dealer gets no stop flag: only the handshake.
        let rec = log.lock().unwrap();
        assert_eq!(rec.iter().filter(|m| m.to == "dealer").count(), 2);
        let (oa, ob) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert_eq!(
            oa.model.trees.len(),
            4,
            "no early stopping: every tree kept"
        );
        aucs.push(oa.validation_auc.clone());
        leaves.push(
            oa.model
                .trees
                .iter()
                .zip(&ob.model.trees)
                .flat_map(|(x, z)| {
                    x.leaves
                        .iter()
                        .zip(&z.leaves)
                        .map(|(u, v)| leaf(fp, *u, *v))
                })
                .collect::<Vec<f64>>(),
        );
    }
    for (u, v) in leaves[0].iter().zip(&leaves[1]) {
        assert!((u - v).abs() < 1e-3, "{:?} vs {:?}", leaves[0], leaves[1]);
    }
    for (x, z) in aucs[0].iter().zip(&aucs[1]) {
        assert!(
            (x + z - 1.0).abs() < 0.02,
            "flipped labels: AUC {x} becomes {z}"
        );
        assert!(*x > 0.55, "{:?}", aucs[0]);
    }
}

#[test]
fn bad_validation_settings_fail_at_every_seat() {
    let (a, b) = data(60, 3);
    let cases = [
        (0.0, 2, "early_stopping_rounds needs a validation split"),
        (0.7, 0, "validation must be in [0, 0.5]"),
        (f64::NAN, 0, "validation must be in [0, 0.5]"),
        (0.1, 2, "a validation split of 0.1 leaves 6 of 60 rows"),
    ];
    for (v, r, needle) in cases {
        let mut p = params(3, 2);
        (p.validation, p.early_stopping_rounds) = (v, r);
        for (i, x) in run(Some(a.clone()), Some(b.clone()), &p, None)
            .into_iter()
            .enumerate()
        {
            let e = x.expect_err("every seat fails").to_string();
            assert!(e.contains(needle), "seat {i}: `{e}` lacks `{needle}`");
        }
    }
}

/// Job options: `early_stopping_rounds` (absent in older options: 0) and the shared
/// `validation` option reach the boosting parameters.
#[test]
fn early_stopping_options_reach_the_parameters() {
    let old = r#"{"trees":5,"depth":2,"bins":16,"lambda":1.0,"gamma":0.0,"min_child_weight":1.0}"#;
    let o: GbdtOptions = serde_json::from_str(old).unwrap();
    assert_eq!(o.early_stopping_rounds, 0);
    let o = TrainOptions::from_options([
        ("label", "y"),
        ("dealer", "d"),
        ("seed", "4"),
        ("model", "gbdt"),
        ("validation", "0.2"),
        ("early_stopping_rounds", "5"),
    ])
    .unwrap();
    let p = o.gbdt_params(names()).unwrap();
    assert_eq!((p.validation, p.early_stopping_rounds, p.seed), (0.2, 5, 4));
    assert_eq!(TrainOptions::from_options(o.to_options()).unwrap(), o);
    let e = TrainOptions::from_options([
        ("label", "y"),
        ("dealer", "d"),
        ("seed", "4"),
        ("model", "gbdt"),
        ("early_stopping_rounds", "5"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs a validation split"), "{e}");
}
