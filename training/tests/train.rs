//! End-to-end training: accuracy against plaintext, privacy of the wire, bad inputs,
//! shared prediction.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use confide_mpc::{FixedPoint, Recording, recording_contains};
use confide_training::*;
use ndarray::Axis;

fn scores_of(model: &Model, a: &LocalData, b: &LocalData) -> Vec<f64> {
    (0..a.features.nrows())
        .map(|i| {
            let mut row = BTreeMap::new();
            for (n, v) in a.feature_names.iter().zip(a.features.row(i)) {
                row.insert(n.clone(), *v);
            }
            for (n, v) in b.feature_names.iter().zip(b.features.row(i)) {
                row.insert(n.clone(), *v);
            }
            model.predict(&row).unwrap()
        })
        .collect()
}

fn standardize(x: &ndarray::Array2<f64>, fit: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    let mut out = x.clone();
    for (j, mut c) in out.axis_iter_mut(Axis(1)).enumerate() {
        let col = fit.column(j);
        let (m, s) = (col.mean().unwrap(), col.std(0.0));
        c.mapv_inplace(|v| (v - m) / s);
    }
    out
}

/// scikit-learn's `LogisticRegression(C=1.0)` test AUC on the Australian set with the
/// split below, as `training/sklearn_baseline.py` prints it (recorded in ACCURACY.md).
const SKLEARN_AUSTRALIAN_AUC: f64 = 0.9073;

/// Rows `i % 5 == 4` test, the rest train (the rule of the accuracy example and script).
fn split_ids(t: &Table) -> (Vec<String>, Vec<String>) {
    let (mut tr, mut te) = (Vec::new(), Vec::new());
    for (i, id) in t.ids.iter().enumerate() {
        if i % 5 == 4 {
            te.push(id.clone());
        } else {
            tr.push(id.clone());
        }
    }
    (tr, te)
}

fn australian(dir: &Path) -> (LocalData, LocalData, LocalData, LocalData) {
    let (ta, tb) = split_dataset(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/credit/australian_credit.csv"
        )),
        7,
        dir,
    );
    let (tr, te) = split_ids(&ta);
    (
        ta.align(&tr).unwrap(),
        tb.align(&tr).unwrap(),
        ta.align(&te).unwrap(),
        tb.align(&te).unwrap(),
    )
}

/// Issue 14's target: with every default, the secure model's test AUC is within 0.005 of
/// scikit-learn's, the stopping rule (not the cap) ends training, and the trajectory is
/// the plaintext twin's (same splines, same optimizer) up to fixed-point error.
#[test]
fn defaults_reach_sklearn_auc_and_follow_the_plaintext_twin() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, at, bt) = australian(dir.path());
    let mut params = TrainParams::new(names());
    params.fit.seed = 7;
    let [ra, rb, rd] = run_train(Some(a.clone()), Some(b.clone()), &params, None);
    let (oa, ob, od) = (ra.unwrap(), rb.unwrap(), rd.unwrap());
    assert!(od.model.is_none() && od.shared.is_none());
    let model = oa.model.unwrap();
    assert_eq!(ob.model.as_ref().unwrap().weights.len(), 14);
    assert!((ob.model.unwrap().intercept - model.intercept).abs() < 1e-9);
    let secure_auc = auc(&scores_of(&model, &at, &bt), at.label.as_ref().unwrap()).unwrap();
    assert!(
        (secure_auc - SKLEARN_AUSTRALIAN_AUC).abs() <= 0.005,
        "secure {secure_auc} scikit-learn {SKLEARN_AUSTRALIAN_AUC}"
    );
    let m = &model.metrics;
    assert_eq!(m.stop, Stop::Converged);
    assert!(m.epochs < params.fit.epochs && m.epochs == m.loss_per_epoch.len());
    assert_eq!(
        m.steps, m.epochs,
        "a batch larger than the data: one step per epoch"
    );
    assert_eq!(m.learning_rate, 1.0);

    // The twin with the secure run's splines: same number of epochs, same losses.
    let x = joined(&a, &b);
    let xs = standardize(&x, &x);
    let twin = train_plain(
        &xs,
        a.label.as_ref().unwrap(),
        &params.fit,
        Twin::Secure(params.sigmoid, params.auc_bins),
    );
    assert_eq!(
        twin.loss_per_epoch.len(),
        m.epochs,
        "{:?}",
        twin.loss_per_epoch
    );
    for (s, p) in m.loss_per_epoch.iter().zip(&twin.loss_per_epoch) {
        assert!((s - p).abs() < 2e-3, "secure {s} plain {p}");
    }
    let xt = standardize(&joined(&at, &bt), &x);
    let twin_auc = auc(
        &(xt.dot(&twin.weights) + twin.intercept).to_vec(),
        at.label.as_ref().unwrap(),
    )
    .unwrap();
    assert!(
        (secure_auc - twin_auc).abs() < 2e-3,
        "{secure_auc} vs {twin_auc}"
    );
    let train_auc = m.train_auc.unwrap();
    assert!(train_auc > 0.9 && train_auc <= 1.0, "{train_auc}");
    let json = serde_json::to_value(&model).unwrap();
    assert!(
        json["intercept"].is_f64()
            && json["weights"]["A1"].is_f64()
            && json["metrics"]["stop"] == "converged"
    );
}

/// Every optimizer (Adam included), both penalties, class weights and a validation split
/// run on shares as their plaintext twin does: same epochs, losses and validation AUCs,
/// close weights.
#[test]
fn optimizers_penalties_weights_and_validation_match_the_twin() {
    let (ta, tb) = generate_credit(400, 4, 3, 11);
    let (a, b) = (ta.into_local(), tb.into_local());
    let x = standardize(&joined(&a, &b), &joined(&a, &b));
    let y = a.label.clone().unwrap();
    let variants = [
        (Optimizer::Sgd, Penalty::None, ClassWeight::None, 0.0, 0.5),
        (
            Optimizer::Momentum,
            Penalty::L2,
            ClassWeight::Balanced,
            0.0,
            1.0,
        ),
        (
            Optimizer::Nesterov,
            Penalty::L1,
            ClassWeight::None,
            0.0,
            0.05,
        ),
        (
            Optimizer::Nesterov,
            Penalty::L2,
            ClassWeight::None,
            0.2,
            1.0,
        ),
        (Optimizer::Adam, Penalty::L2, ClassWeight::None, 0.0, 1.0),
        (
            Optimizer::Adam,
            Penalty::L1,
            ClassWeight::Balanced,
            0.2,
            0.05,
        ),
    ];
    for (opt, pen, cw, val, c) in variants {
        let mut params = TrainParams::new(names());
        params.fit.optimizer = opt;
        params.fit.penalty = pen;
        params.fit.class_weight = cw;
        params.fit.validation = val;
        params.fit.c = c;
        params.fit.batch_size = 100;
        params.fit.epochs = 12;
        params.fit.seed = 3;
        let [ra, rb, rd] = run_train(Some(a.clone()), Some(b.clone()), &params, None);
        let (oa, _, _) = (ra.unwrap(), rb.unwrap(), rd.unwrap());
        let model = oa.model.unwrap();
        let m = &model.metrics;
        let twin = train_plain(
            &x,
            &y,
            &params.fit,
            Twin::Secure(params.sigmoid, params.auc_bins),
        );
        let what = format!("{opt:?} {pen:?} {cw:?} {val}");
        assert_eq!(m.loss_per_epoch.len(), twin.loss_per_epoch.len(), "{what}");
        assert_eq!(m.stop, twin.stop, "{what}");
        for (s, p) in m.loss_per_epoch.iter().zip(&twin.loss_per_epoch) {
            assert!((s - p).abs() < 2e-3, "{what}: loss {s} vs {p}");
        }
        assert_eq!(
            m.validation_auc_per_epoch.len(),
            twin.validation_auc_per_epoch.len()
        );
        for (s, p) in m
            .validation_auc_per_epoch
            .iter()
            .zip(&twin.validation_auc_per_epoch)
        {
            assert!((s - p).abs() < 0.02, "{what}: validation AUC {s} vs {p}");
        }
        if val > 0.0 {
            assert_eq!(m.validation_rows, 80);
            assert!(m.best_epoch.is_some() && !m.validation_auc_per_epoch.is_empty());
        }
        // Adam's steps (about η per weight) overshoot the proximal threshold ηλ, so its
        // L1 weights are small but rarely exactly zero; the momentum rules give zeros.
        if pen == Penalty::L1 && opt != Optimizer::Adam {
            assert!(
                twin.weights.iter().any(|w| *w == 0.0),
                "{what}: {:?}",
                twin.weights
            );
        }
        // Standardized weights from the raw ones: w_std = w_raw · std.
        let sd = |d: &LocalData| Standardizer::fit(&d.feature_names, &d.features).unwrap();
        let (sa, sb) = (sd(&a), sd(&b));
        let stds: Vec<f64> = sa.stds.iter().chain(&sb.stds).copied().collect();
        let names_all: Vec<&String> = a.feature_names.iter().chain(&b.feature_names).collect();
        for (j, name) in names_all.iter().enumerate() {
            let secure = model.weights[*name] * stds[j];
            let plain = twin.weights[j];
            assert!(
                (secure - plain).abs() < 0.02,
                "{what}: {name} {secure} vs {plain}"
            );
            if pen == Penalty::L1 && plain == 0.0 {
                assert!(secure.abs() < 0.01, "{what}: L1 keeps {name} at zero");
            }
        }
    }
}

#[test]
fn wire_carries_no_feature_label_or_weight_in_clear() {
    wire_check(Optimizer::Nesterov);
}

/// Adam's moments and inverse square root open nothing new: the same wire checks hold.
#[test]
fn wire_carries_no_feature_label_or_weight_in_clear_with_adam() {
    wire_check(Optimizer::Adam);
}

fn wire_check(optimizer: Optimizer) {
    let (ta, tb) = generate_credit(120, 3, 3, 5);
    let (a, b) = (ta.into_local(), tb.into_local());
    let mut params = TrainParams::new(names());
    params.fit.optimizer = optimizer;
    params.fit.epochs = 2;
    params.fit.batch_size = 40;
    params.auc_bins = 4;
    params.reveal_to = vec!["bank".into()];
    let log = Recording::default();
    let [ra, rb, rd] = run_train(Some(a.clone()), Some(b.clone()), &params, Some(log.clone()));
    let (oa, ob) = (ra.unwrap(), rb.unwrap());
    rd.unwrap();
    assert!(
        ob.model.is_none(),
        "the passive party was not named to receive the model"
    );
    let model = oa.model.unwrap();
    let fp = FixedPoint::default();
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for d in [&a, &b] {
        let sd = Standardizer::fit(&d.feature_names, &d.features).unwrap();
        let z = sd.transform(&d.features);
        for (&raw, &st) in d.features.iter().zip(z.iter()) {
            needles.push(raw.to_le_bytes().to_vec());
            needles.push(fp.encode(st).unwrap().0.to_le_bytes().to_vec());
        }
    }
    let y = a.label.clone().unwrap();
    for w in y.windows(8) {
        needles.push(w.iter().flat_map(|v| v.to_le_bytes()).collect());
        needles.push(
            w.iter()
                .flat_map(|v| fp.encode(*v).unwrap().0.to_le_bytes())
                .collect(),
        );
    }
    for (_, v) in model
        .weights
        .iter()
        .chain([(&String::new(), &model.intercept)])
    {
        needles.push(v.to_le_bytes().to_vec());
    }
    let (sa, sb) = (oa.shared.unwrap(), ob.shared.unwrap());
    for (x, y) in sa.weight_share.iter().zip(&sb.weight_share) {
        let w = x.wrapping_add(*y);
        needles.push(w.to_le_bytes().to_vec());
        needles.push(fp.decode(std::num::Wrapping(w)).to_le_bytes().to_vec());
    }
    needles.sort();
    needles.dedup();
    needles.retain(|n| n.iter().any(|&b| b != 0));
    // Index every 8-byte window on the wire once; confirm candidate hits exactly.
    let windows: std::collections::HashSet<[u8; 8]> = log
        .lock()
        .unwrap()
        .iter()
        .flat_map(|m| {
            m.bytes
                .windows(8)
                .map(|w| <[u8; 8]>::try_from(w).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(windows.len() > 10_000, "the wire was recorded");
    for n in &needles {
        let head: [u8; 8] = n[..8].try_into().unwrap();
        let hit = windows.contains(&head) && recording_contains(&log, n);
        assert!(!hit, "a secret value crossed the wire in clear: {n:?}");
    }
    // The dealer receives only the two handshakes.
    let rec = log.lock().unwrap();
    let to_dealer: Vec<_> = rec.iter().filter(|m| m.to == "dealer").collect();
    // The dealer receives the two handshakes, then after each epoch the bank's one-byte
    // stopping flag (0: go on, 1: stop) — nothing else.
    let (flags, hellos): (Vec<&&_>, Vec<&&_>) = to_dealer.iter().partition(|m| m.bytes.len() == 1);
    assert_eq!(hellos.len(), 2);
    assert_eq!(flags.len(), model.metrics.epochs);
    assert!(flags.iter().all(|m| m.from == "bank"));
    let last = flags.len() - 1;
    for (i, f) in flags.iter().enumerate() {
        assert_eq!(f.bytes, vec![u8::from(i == last)]);
    }
    assert!(
        hellos
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.bytes).contains("bank_0"))
    );
    // The dealer sends party 0 only its 32-byte seed (plus the handshake verdict).
    let to_bank: Vec<_> = rec
        .iter()
        .filter(|m| m.from == "dealer" && m.to == "bank")
        .collect();
    assert_eq!(to_bank.len(), 2);
    assert!(to_bank.iter().any(|m| m.bytes.len() == 32));
}

#[test]
fn shared_model_predicts_for_the_receiver_only() {
    let (ta, tb) = generate_credit(300, 4, 3, 9);
    let (a, b) = (ta.into_local(), tb.into_local());
    let mut params = TrainParams::new(names());
    params.fit.epochs = 3;
    params.fit.batch_size = 50;
    let [ra, rb, _] = run_train(Some(a.clone()), Some(b.clone()), &params, None);
    let (oa, ob) = (ra.unwrap(), rb.unwrap());
    let model = oa.model.unwrap();
    let (sa, sb) = (oa.shared.unwrap(), ob.shared.unwrap());
    assert!(!format!("{sa:?}").contains(&sa.weight_share[0].to_string()));
    let mut a_new = a.clone();
    a_new.label = None;
    let pp = PredictParams {
        parties: names(),
        receiver: "shop".into(),
        frac_bits: 18,
        batch_size: 128,
    };
    let log = Recording::default();
    let [pa, pb, pd] = run_predict(a_new, b.clone(), &sa, &sb, &pp, Some(log.clone()));
    assert!(pa.unwrap().is_none() && pd.unwrap().is_none());
    let scores = pb.unwrap().unwrap();
    let expect = scores_of(&model, &a, &b);
    assert_eq!(scores.len(), expect.len());
    for (s, e) in scores.iter().zip(&expect) {
        assert!((s - e).abs() < 2e-3, "{s} vs {e}");
    }
    for s in &expect {
        assert!(!recording_contains(&log, &s.to_le_bytes()));
    }
}

#[test]
fn constant_column_is_dropped_with_a_warning() {
    let (ta, tb) = generate_credit(100, 3, 2, 3);
    let (mut a, b) = (ta.into_local(), tb.into_local());
    a.features.column_mut(1).fill(5.0);
    let mut params = TrainParams::new(names());
    params.fit.epochs = 2;
    params.fit.batch_size = 25;
    let [ra, rb, rd] = run_train(Some(a), Some(b), &params, None);
    let oa = ra.unwrap();
    rb.unwrap();
    rd.unwrap();
    assert_eq!(
        oa.warnings,
        vec!["constant feature `bank_1` dropped".to_string()]
    );
    let model = oa.model.unwrap();
    assert!(!model.weights.contains_key("bank_1"));
    assert_eq!(model.metrics.dropped_features, vec!["bank_1".to_string()]);
    assert!(model.weights.values().all(|w| w.is_finite()) && model.intercept.is_finite());
}

fn all_fail(r: &[Result<TrainOutcome>; 3], needle: &str) {
    for (i, x) in r.iter().enumerate() {
        let e = x
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("seat {i} did not fail"))
            .to_string();
        assert!(e.contains(needle), "seat {i}: {e}");
    }
}

#[test]
fn bad_inputs_fail_cleanly_at_every_seat() {
    let (ta, tb) = generate_credit(40, 3, 3, 3);
    let (a, b) = (ta.into_local(), tb.into_local());
    let mut params = TrainParams::new(names());
    params.fit.epochs = 1;
    // Label not 0/1.
    let mut bad = a.clone();
    bad.label.as_mut().unwrap()[3] = 2.0;
    all_fail(
        &run_train(Some(bad), Some(b.clone()), &params, None),
        "must be 0 or 1",
    );
    // Too few common rows.
    let few = |d: &LocalData| LocalData {
        features: d
            .features
            .slice_axis(Axis(0), ndarray::Slice::from(..5))
            .to_owned(),
        label: d.label.as_ref().map(|l| l[..5].to_vec()),
        ..d.clone()
    };
    all_fail(
        &run_train(Some(few(&a)), Some(few(&b)), &params, None),
        "too few common rows",
    );
    // More features than rows.
    let (wa, wb) = generate_credit(12, 8, 8, 1);
    all_fail(
        &run_train(Some(wa.into_local()), Some(wb.into_local()), &params, None),
        "more features",
    );
    // Misaligned inputs.
    all_fail(
        &run_train(Some(a.clone()), Some(few(&b)), &params, None),
        "",
    );
    // NaN feature.
    let mut nan = b.clone();
    nan.features[[0, 0]] = f64::NAN;
    all_fail(&run_train(Some(a.clone()), Some(nan), &params, None), "NaN");
    // Receiver that is not a computing party.
    params.reveal_to = vec!["dealer".into()];
    all_fail(
        &run_train(Some(a), Some(b), &params, None),
        "cannot receive",
    );
}

#[test]
fn csv_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    let check = |body: &str, label: Option<&str>, want: &str| {
        std::fs::write(&p, body).unwrap();
        let e = load_table(&p, "id", label).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    };
    check(
        "id,x,label\na,1,0\nb,abc,1\n",
        Some("label"),
        "line 3, column `x`: not a number: `abc`",
    );
    check(
        "id,x,label\na,1,0\nb,,1\n",
        Some("label"),
        "line 3, column `x`: missing value",
    );
    check(
        "id,x,label\na,1,0\nb,2,2\n",
        Some("label"),
        "line 3, column `label`: label must be 0 or 1",
    );
    check(
        "id,x\na,1\na,2\n",
        None,
        "line 3, column `id`: duplicate ID",
    );
    check("id,x\na,1\nb,2,3\n", None, "line 3");
    check("x,y\n1,2\n", None, "ID column not in header");
    std::fs::write(&p, "id,x,label\n a ,1.5,1\nb,-2e3,0\n").unwrap();
    let t = load_table(&p, "id", Some("label")).unwrap();
    assert_eq!(t.ids, vec!["a", "b"]);
    assert_eq!(t.features.column(0).to_vec(), vec![1.5, -2000.0]);
    let aligned = t.align(&["b".to_string(), "a".to_string()]).unwrap();
    assert_eq!(aligned.label, Some(vec![0.0, 1.0]));
    assert!(t.align(&["zz".to_string()]).is_err());
}
