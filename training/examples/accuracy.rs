//! Test AUC of secure training with default settings on the public credit data sets
//! (produces the secure columns of ACCURACY.md; `training/sklearn_baseline.py` produces the
//! scikit-learn column on the same splits).
//!
//! `cargo run --release -p confide-training --example accuracy [-- [--optimizer O] NAME…]`
//! (`--optimizer adam|nesterov|momentum|sgd`: that update rule, every other default).
//! Each set: row-number IDs; row i is a test row when i % 5 == 4 (the same rule as the
//! script); the features split in half (A gets the first half and the label); each party
//! standardizes its columns on the training rows. The secure model is trained with
//! `TrainParams::new` (every default; job seed 7), revealed in raw units and scored in
//! plaintext on the raw test features. The plaintext twin runs the same optimizer and
//! stopping rule in f64 with the exact sigmoid.

use std::collections::BTreeMap;

use confide_mpc::memory_mesh;
use confide_training::{
    LocalData, PartyNames, Role, Standardizer, Table, TrainParams, Twin, auc, train, train_plain,
};
use ndarray::Axis;

/// The data sets: (name, file).
const SETS: [(&str, &str); 4] = [
    ("Breast cancer", "breast_cancer_wisconsin.csv"),
    ("Australian", "australian_credit.csv"),
    ("German", "german_credit_onehot.csv"),
    ("Taiwan", "credit_default_taiwan.csv"),
];

/// (party A, party B) tables of a data set in `data/credit/`, row IDs `r{i}`.
fn load(file: &str) -> (Table, Table) {
    let path = format!("{}/../data/credit/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("data set");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let nf = header.len() - 1;
    let split = nf / 2;
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let ids: Vec<String> = (0..rows.len()).map(|i| format!("r{i}")).collect();
    let mat = |lo: usize, hi: usize| {
        ndarray::Array2::from_shape_fn((rows.len(), hi - lo), |(i, j)| rows[i][lo + j])
    };
    let a = Table {
        ids: ids.clone(),
        feature_names: header[..split].to_vec(),
        features: mat(0, split),
        label: Some(rows.iter().map(|r| r[nf]).collect()),
    };
    let b = Table {
        ids,
        feature_names: header[split..nf].to_vec(),
        features: mat(split, nf),
        label: None,
    };
    (a, b)
}

fn scores(model: &confide_training::Model, a: &LocalData, b: &LocalData) -> Vec<f64> {
    (0..a.features.nrows())
        .map(|i| {
            let mut row = BTreeMap::new();
            for d in [a, b] {
                for (n, v) in d.feature_names.iter().zip(d.features.row(i)) {
                    row.insert(n.clone(), *v);
                }
            }
            model.predict(&row).unwrap()
        })
        .collect()
}

fn main() {
    let mut only: Vec<String> = std::env::args().skip(1).collect();
    let mut optimizer = confide_training::Fit::default().optimizer;
    if let Some(i) = only.iter().position(|a| a == "--optimizer") {
        let name = only.get(i + 1).cloned().unwrap_or_default();
        optimizer = name.parse().unwrap_or_else(|e| panic!("{e}"));
        only.drain(i..i + 2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| data set | train/test rows | features | secure test AUC | plaintext twin test AUC | epochs (stop) | steps | secure time |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, file) in SETS {
        if !only.is_empty()
            && !only
                .iter()
                .any(|o| name.to_lowercase().contains(&o.to_lowercase()))
        {
            continue;
        }
        let (ta, tb) = load(file);
        let (tr, te): (Vec<String>, Vec<String>) = {
            let (mut tr, mut te) = (Vec::new(), Vec::new());
            for (i, id) in ta.ids.iter().enumerate() {
                if i % 5 == 4 {
                    te.push(id.clone())
                } else {
                    tr.push(id.clone())
                }
            }
            (tr, te)
        };
        let (a, b, at, bt) = (
            ta.align(&tr).unwrap(),
            tb.align(&tr).unwrap(),
            ta.align(&te).unwrap(),
            tb.align(&te).unwrap(),
        );
        let y_test = at.label.clone().unwrap();
        let mut params = TrainParams::new(PartyNames {
            active: "a".into(),
            passive: "b".into(),
            dealer: "d".into(),
        });
        params.fit.seed = 7;
        params.fit.optimizer = optimizer;
        let start = std::time::Instant::now();
        let model = rt.block_on(async {
            let mesh = memory_mesh(&["a", "b", "d"], 8);
            let q = |_p| {};
            let (ra, rb, rd) = tokio::join!(
                train(&mesh[0], Role::Active, Some(a.clone()), &params, &q),
                train(&mesh[1], Role::Passive, Some(b.clone()), &params, &q),
                train(&mesh[2], Role::Dealer, None, &params, &q)
            );
            rb.unwrap();
            rd.unwrap();
            ra.unwrap().model.unwrap()
        });
        let secs = start.elapsed().as_secs_f64();
        let secure = auc(&scores(&model, &at, &bt), &y_test).unwrap();
        // The plaintext twin: same standardization, optimizer and stopping rule.
        let x = ndarray::concatenate(Axis(1), &[a.features.view(), b.features.view()]).unwrap();
        let xt = ndarray::concatenate(Axis(1), &[at.features.view(), bt.features.view()]).unwrap();
        let names: Vec<String> = (0..x.ncols()).map(|j| j.to_string()).collect();
        let std = Standardizer::fit(&names, &x).unwrap();
        let p = train_plain(
            &std.transform(&x),
            a.label.as_ref().unwrap(),
            &params.fit,
            Twin::Exact,
        );
        let plain = auc(
            &(std.transform(&xt).dot(&p.weights) + p.intercept).to_vec(),
            &y_test,
        )
        .unwrap();
        let m = &model.metrics;
        println!(
            "| {name} | {}/{} | {} | {secure:.4} | {plain:.4} | {} ({:?}; twin {} {:?}) | {} | {secs:.1} s |",
            tr.len(),
            te.len(),
            x.ncols(),
            m.epochs,
            m.stop,
            p.loss_per_epoch.len(),
            p.stop,
            m.steps,
        );
    }
}
