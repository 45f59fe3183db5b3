//! Training across three real daemons on 127.0.0.1 (alice: label + half the columns, bob:
//! the other half, carol: the dealer), on the breast-cancer data set split by columns:
//! the revealed model scores the rows as well as plaintext logistic regression does;
//! policy and input errors are one clear line; a secret-shared model serves predictions
//! that only the receiver sees.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use confide::base::config::PartyConfig;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/credit/breast_cancer_wisconsin.csv"
);
/// The epoch cap and batch of the runs that do not test the defaults.
const SHORT: [&str; 4] = ["--epochs", "3", "--batch-size", "32"];

/// Splits the data set by columns: alice gets `id`, `label` and the first 15 features
/// (every row), bob the other 15 (rows with i % 10 == 3 missing, 5 IDs alice lacks, in
/// reverse order). Also writes the joined common rows in sorted-ID order for the
/// plaintext reference. Returns (alice.csv, bob.csv, reference.csv, common rows).
fn split(dir: &Path) -> (PathBuf, PathBuf, PathBuf, usize) {
    let text = std::fs::read_to_string(DATA).expect("breast-cancer data set");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let nf = header.len() - 1;
    assert_eq!(header[nf], "label");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let id = |i: usize| format!("r{i:04}");
    let (ha, hb) = (&header[..nf / 2], &header[nf / 2..nf]);
    let mut a = format!("id,label,{}\n", ha.join(","));
    let mut b = format!("id,{}\n", hb.join(","));
    let mut reference = format!("id,label,{},{}\n", ha.join(","), hb.join(","));
    let mut common = 0;
    for (i, r) in rows.iter().enumerate() {
        a.push_str(&format!("{},{},{}\n", id(i), r[nf], r[..nf / 2].join(",")));
        if i % 10 != 3 {
            reference.push_str(&format!("{},{},{}\n", id(i), r[nf], r[..nf].join(",")));
            common += 1;
        }
    }
    for i in (0..rows.len() + 5).rev() {
        if i % 10 == 3 {
            continue;
        }
        let cells = match rows.get(i) {
            Some(r) => r[nf / 2..nf].join(","),
            None => vec!["1.0"; nf - nf / 2].join(","),
        };
        b.push_str(&format!("{},{cells}\n", id(i)));
    }
    let (pa, pb, pr) = (
        dir.join("alice.csv"),
        dir.join("bob.csv"),
        dir.join("reference.csv"),
    );
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    std::fs::write(&pr, reference).unwrap();
    (pa, pb, pr, common)
}

/// The job id from a summary line `train job <id>: ...`.
fn job_id(line: &str) -> String {
    line.split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string()
}

fn data_dir(dir: &Path, party: &str) -> PathBuf {
    PartyConfig::load(&config(dir, party))
        .unwrap()
        .party
        .data_dir
}

fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn train_and_predict_between_real_daemons() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let (pa, pb, pref, common) = split(root.path());
    add_dataset(&dir, "alice", "credit", &pa, "id", "{ train = [\"bob\"] }");
    add_dataset(&dir, "bob", "credit", &pb, "id", "{ train = [\"alice\"] }");
    add_dataset(&dir, "bob", "private", &pb, "id", "{ psi = [\"alice\"] }");
    let _d = start(&dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    let train = |peer: &str, label: &str, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--dataset",
            "credit",
            "--peer",
            peer,
            "--label",
            label,
            "--output",
            path_str(out),
        ];
        args.extend_from_slice(extra);
        at(&dir, "alice", &args)
    };

    // Train and reveal to both: default optimizer and stopping rule, 10% held out.
    let out = root.path().join("model.json");
    // A fixed public seed: the same validation split and batch order on every run.
    let o = train(
        "bob:credit",
        "label",
        &out,
        &["--validation", "0.1", "--seed", "2024"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    assert!(
        line.contains(&format!("{common} common rows"))
            && line.contains(" epochs (")
            && line.contains("final loss")
            && line.contains("validation AUC")
            && line.contains("train AUC")
            && line.contains(&format!("model written to {}", out.display())),
        "{line}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("epoch: ") && err.contains("loss ") && err.contains("validation AUC "),
        "progress: {err}"
    );
    let job = job_id(&line);
    let model: confide_training::Model =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(json["intercept"].is_f64() && json["metrics"].is_object());
    assert_eq!(model.weights.len(), 30);
    assert!(model.weights.contains_key("mean radius") && model.weights.contains_key("worst area"));
    let m = &model.metrics;
    assert_eq!(m.rows, common);
    assert_eq!(m.validation_rows, (common as f64 * 0.1).round() as usize);
    assert_eq!(m.loss_per_epoch.len(), m.epochs);
    assert_eq!(m.validation_auc_per_epoch.len(), m.epochs);
    assert!(m.epochs < 200 && m.best_epoch.is_some(), "{m:?}");
    assert_eq!(m.fit.validation, 0.1);
    // bob got the same model; carol (the dealer) got nothing.
    let bob_copy = data_dir(&dir, "bob")
        .join("results")
        .join(format!("model-{job}.json"));
    let bob_model: confide_training::Model =
        serde_json::from_slice(&std::fs::read(&bob_copy).unwrap()).unwrap();
    assert_eq!(bob_model.weights.len(), 30);
    assert!((bob_model.intercept - model.intercept).abs() < 1e-9);
    assert!(files_under(&data_dir(&dir, "carol").join("results")).is_empty());

    assert_eq!(m.fit.seed, 2024);
    // AUC on the common rows: secure model (raw units) vs its plaintext twin (same rows,
    // seed, schedule, splines and binned validation AUC, hence the same early stop).
    let t = confide_training::load_table(&pref, "id", Some("label")).unwrap();
    let y = t.label.clone().unwrap();
    let twin = confide_training::Twin::Secure(m.sigmoid, 32);
    let (secure, plain) =
        confide::demo::train::reference_aucs(&t, &model, &model.metrics.fit, twin).unwrap();
    assert!(
        (secure - plain).abs() <= 0.01,
        "secure {secure} plaintext {plain}; secure run: {m:?}"
    );
    assert!(secure > 0.97, "{secure}");

    // Policy: bob does not allow alice to train on `private`.
    let o = train("bob:private", "label", &root.path().join("x.json"), &SHORT);
    assert_clean_error(
        &o,
        "does not allow `alice` to run `train` on dataset `private`",
    );
    // Out-of-range and unknown optimizer settings fail before anything is sent.
    let o = train(
        "bob:credit",
        "label",
        &root.path().join("x.json"),
        &["--validation", "0.9"],
    );
    assert_clean_error(&o, "validation must be in [0, 0.5], got 0.9");
    let o = train(
        "bob:credit",
        "label",
        &root.path().join("x.json"),
        &["--C", "0"],
    );
    assert_clean_error(&o, "C must be a positive number, got 0");
    let o = train(
        "bob:credit",
        "label",
        &root.path().join("x.json"),
        &["--optimizer", "adagrad"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("adagrad"),
        "{}",
        stderr(&o)
    );
    let o = train(
        "bob:credit",
        "label",
        &root.path().join("x.json"),
        &["--optimizer", "adam", "--learning-rate", "2"],
    );
    assert_clean_error(&o, "Adam's learning rate must be at most 1, got 2");
    // A missing label column fails before anything is sent, naming it.
    let o = train(
        "bob:credit",
        "defaulted",
        &root.path().join("x.json"),
        &SHORT,
    );
    assert_clean_error(&o, "label column `defaulted` is not in dataset `credit`");
    assert!(!root.path().join("x.json").exists());

    // Keep the model secret-shared, then score with it: only alice sees the scores.
    let unrevealed = root.path().join("unrevealed.json");
    let mut keep = SHORT.to_vec();
    keep.push("--keep-shared");
    let o = train("bob:credit", "label", &unrevealed, &keep);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    assert!(line.contains("kept secret-shared"), "{line}");
    assert!(!unrevealed.exists());
    let model_id = job_id(&line);
    for p in ["alice", "bob"] {
        let share = data_dir(&dir, p)
            .join("models")
            .join(format!("{model_id}.share"));
        assert!(share.exists(), "{p} keeps its share");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&share).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{p}");
        }
        assert!(
            !data_dir(&dir, p)
                .join("results")
                .join(format!("model-{model_id}.json"))
                .exists()
        );
    }
    assert!(files_under(&data_dir(&dir, "carol").join("models")).is_empty());
    let bob_before: BTreeSet<PathBuf> = files_under(&data_dir(&dir, "bob")).into_iter().collect();

    let scores = root.path().join("scores.csv");
    let predict = |model: &str| {
        let args = [
            "predict",
            "--model",
            model,
            "--dataset",
            "credit",
            "--peer",
            "bob:credit",
            "--output",
            path_str(&scores),
        ];
        at(&dir, "alice", &args)
    };
    let o = predict(&model_id);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("scored {common} common rows")),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,score"));
    let labels: BTreeMap<String, f64> = t.ids.iter().cloned().zip(y.iter().copied()).collect();
    let (mut s, mut l) = (Vec::new(), Vec::new());
    for line in lines {
        let (id, score) = line.split_once(',').unwrap();
        let score: f64 = score.parse().unwrap();
        assert!((0.0..=1.0).contains(&score));
        s.push(score);
        l.push(labels[id]);
    }
    assert_eq!(s.len(), common);
    let predict_auc = confide_training::auc(&s, &l).unwrap();
    assert!(predict_auc > 0.97, "{predict_auc}");
    // bob and carol wrote nothing new: no scores anywhere but at alice.
    let bob_after: BTreeSet<PathBuf> = files_under(&data_dir(&dir, "bob")).into_iter().collect();
    let new: Vec<_> = bob_after.difference(&bob_before).collect();
    assert!(
        new.iter().all(|p| !std::fs::read_to_string(p)
            .unwrap_or_default()
            .starts_with("id,score")),
        "{new:?}"
    );
    for p in ["bob", "carol"] {
        for f in files_under(&data_dir(&dir, p)) {
            let head = std::fs::read(&f).unwrap_or_default();
            assert!(!head.starts_with(b"id,score"), "{p} has scores in {f:?}");
        }
    }

    // A model id that is not this party's fails clearly, before any job.
    let o = predict("00ff");
    assert_clean_error(&o, "holds no shared model `00ff`");
}
