//! Boosted trees across three real daemons on 127.0.0.1 (alice: label + half the columns,
//! bob: the other half, carol: the dealer) on the breast-cancer data set split by columns:
//! `train --model gbdt` keeps the model split (shares at alice and bob only, each with
//! only its own split rules in clear), and `predict --model` gives alice alone `id,score`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use confide::base::config::PartyConfig;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/credit/breast_cancer_wisconsin.csv"
);

/// alice: id, label, first 15 features; bob: id, the other 15. Returns the labels by id.
fn split(dir: &Path) -> (PathBuf, PathBuf, BTreeMap<String, f64>) {
    let text = std::fs::read_to_string(DATA).expect("breast-cancer data set");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let nf = header.len() - 1;
    let mut a = format!("id,label,{}\n", header[..nf / 2].join(","));
    let mut b = format!("id,{}\n", header[nf / 2..nf].join(","));
    let mut labels = BTreeMap::new();
    for (i, l) in lines.enumerate() {
        let r: Vec<&str> = l.split(',').collect();
        a.push_str(&format!("r{i:04},{},{}\n", r[nf], r[..nf / 2].join(",")));
        b.push_str(&format!("r{i:04},{}\n", r[nf / 2..nf].join(",")));
        labels.insert(format!("r{i:04}"), r[nf].parse().unwrap());
    }
    let (pa, pb) = (dir.join("alice.csv"), dir.join("bob.csv"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    (pa, pb, labels)
}

fn data_dir(dir: &Path, party: &str) -> PathBuf {
    PartyConfig::load(&config(dir, party))
        .unwrap()
        .party
        .data_dir
}

#[test]
fn gbdt_train_and_predict_between_real_daemons() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let (pa, pb, labels) = split(root.path());
    add_dataset(&dir, "alice", "credit", &pa, "id", "{ train = [\"bob\"] }");
    add_dataset(&dir, "bob", "credit", &pb, "id", "{ train = [\"alice\"] }");
    let _d = start(&dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    let out = root.path().join("trees.json");
    let o = at(
        &dir,
        "alice",
        &[
            "train",
            "--model",
            "gbdt",
            "--trees",
            "3",
            "--depth",
            "2",
            "--learning-rate",
            "0.3",
            "--bins",
            "16",
            "--subsample",
            "0.9",
            "--colsample-bytree",
            "0.8",
            "--seed",
            "7",
            "--validation",
            "0.2",
            "--early-stopping-rounds",
            "2",
            "--dataset",
            "credit",
            "--peer",
            "bob:credit",
            "--label",
            "label",
            "--output",
            path_str(&out),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    // Early stopping on the validation rows: the trees kept up to the best of those grown.
    let kept: usize = line
        .split_once(" trees of depth 2 (")
        .and_then(|(head, _)| head.rsplit(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        line.contains("569 common rows")
            && (1..=3).contains(&kept)
            && line.contains("grown, best validation AUC 0.9"),
        "{line}"
    );
    assert!(stderr(&o).contains("level"), "progress: {}", stderr(&o));
    let model = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    // alice's export: the shape and her own rules only, no shares.
    let export: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(export["trees"].as_array().unwrap().len(), kept);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !text.contains("worst area") && !text.contains("\"split\""),
        "{text}"
    );
    // Column subsampling: every node's rule, at either owner, lies in its tree's draw from
    // the public seed (alice's columns first, then bob's).
    let bob_export: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            data_dir(&dir, "bob")
                .join("results")
                .join(format!("model-{model}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let features = |e: &serde_json::Value| -> Vec<String> {
        serde_json::from_value(e["features"].clone()).unwrap()
    };
    let (fa, fb) = (features(&export), features(&bob_export));
    let mut p = confide_training::GbdtParams::new(confide_training::PartyNames {
        active: "alice".into(),
        passive: "bob".into(),
        dealer: "carol".into(),
    });
    (p.colsample_bytree, p.seed) = (0.8, 7);
    let mut rules = 0;
    for (from, names, e) in [(0, &fa, &export), (fa.len(), &fb, &bob_export)] {
        for (t, tree) in e["trees"].as_array().unwrap().iter().enumerate() {
            let draw = p.tree_columns(t, fa.len() + fb.len()).unwrap();
            for node in tree["nodes"].as_array().unwrap() {
                if let Some(col) = node["column"].as_str() {
                    let j = from + names.iter().position(|n| n == col).unwrap();
                    assert!(draw[j], "tree {t} splits on undrawn column {col}");
                    rules += 1;
                }
            }
        }
    }
    assert_eq!(
        rules,
        3 * kept,
        "each of the 3 nodes of a tree has one owner"
    );
    for p in ["alice", "bob"] {
        let share = data_dir(&dir, p)
            .join("models")
            .join(format!("{model}.share"));
        assert!(share.exists(), "{p} keeps its share");
    }
    assert!(
        !data_dir(&dir, "carol")
            .join("models")
            .join(format!("{model}.share"))
            .exists()
    );

    let scores = root.path().join("scores.csv");
    let o = at(
        &dir,
        "alice",
        &[
            "predict",
            "--model",
            &model,
            "--dataset",
            "credit",
            "--peer",
            "bob:credit",
            "--output",
            path_str(&scores),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,score"));
    let (mut s, mut l) = (Vec::new(), Vec::new());
    for line in lines {
        let (id, score) = line.split_once(',').unwrap();
        s.push(score.parse::<f64>().unwrap());
        l.push(labels[id]);
    }
    assert_eq!(s.len(), 569);
    let auc = confide_training::auc(&s, &l).unwrap();
    assert!(auc > 0.95, "{auc}");
}
