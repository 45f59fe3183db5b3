//! Test AUC of secure boosted trees on the public credit data sets (produces the secure and
//! twin columns of ACCURACY.md's "Boosted trees"; `training/xgboost_baseline.py` produces
//! the XGBoost column with the same splits and hyperparameters).
//!
//! `cargo run --release -p confide-training --example gbdt_accuracy [-- TREES DEPTH [NAME…]]`
//! (default 20 trees of depth 3). Each set: row i is a test row when i % 5 == 4 (or
//! `i % 5 == GBDT_FOLD` with `GBDT_FOLD=0..4`, for the five-fold table); the
//! features split in half (A gets the first half and the label); raw features (trees need
//! no scaling); η 0.3, 32 bins, λ 1, γ 0, min_child_weight 1. The secure model is trained
//! on shares and scored on the test rows with the secure prediction protocol (the scores
//! are opened to A only). The plaintext twin trains on the same bins in `f64`.

use confide_mpc::memory_mesh;
use confide_training::gbdt::bins::Binned;
use confide_training::gbdt::{predict_gbdt_plain, train_gbdt_plain};
use confide_training::{
    GbdtParams, GbdtPredictParams, LocalData, PartyNames, Role, auc, predict_gbdt, train_gbdt,
};
use ndarray::Array2;

/// The data sets: (name, file).
const SETS: [(&str, &str); 4] = [
    ("Breast cancer", "breast_cancer_wisconsin.csv"),
    ("Australian", "australian_credit.csv"),
    ("German", "german_credit_onehot.csv"),
    ("Taiwan", "credit_default_taiwan.csv"),
];

/// The train and test parts of party A (first half of the columns, label) and B.
struct Split {
    train: [LocalData; 2],
    test: [LocalData; 2],
}

fn split(file: &str, fold: usize) -> Split {
    let path = format!("{}/../data/credit/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("data set");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let nf = header.len() - 1;
    let half = nf / 2;
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let part = |test: bool, lo: usize, hi: usize, label: bool| {
        let sel: Vec<&Vec<f64>> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 5 == fold) == test)
            .map(|(_, r)| r)
            .collect();
        LocalData {
            feature_names: header[lo..hi].to_vec(),
            features: Array2::from_shape_fn((sel.len(), hi - lo), |(i, j)| sel[i][lo + j]),
            label: label.then(|| sel.iter().map(|r| r[nf]).collect()),
        }
    };
    Split {
        train: [part(false, 0, half, true), part(false, half, nf, false)],
        test: [part(true, 0, half, true), part(true, half, nf, false)],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trees: usize = args.first().map_or(20, |a| a.parse().expect("trees"));
    let depth: usize = args.get(1).map_or(3, |a| a.parse().expect("depth"));
    let only = args.get(2..).unwrap_or_default();
    let fold: usize = std::env::var("GBDT_FOLD").map_or(4, |f| f.parse().expect("GBDT_FOLD"));
    assert!(fold < 5, "GBDT_FOLD is 0 to 4");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let names = PartyNames {
        active: "a".into(),
        passive: "b".into(),
        dealer: "d".into(),
    };
    let mut p = GbdtParams::new(names.clone());
    p.trees = trees;
    p.depth = depth;
    println!(
        "{trees} trees of depth {depth}, η 0.3, 32 bins, λ 1, γ 0, min_child_weight 1; test rows i % 5 == {fold}"
    );
    println!(
        "| data set | train/test rows | features | secure test AUC | plaintext twin test AUC | secure train + predict time |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, file) in SETS {
        if !only.is_empty()
            && !only
                .iter()
                .any(|o| name.to_lowercase().contains(&o.to_lowercase()))
        {
            continue;
        }
        let s = split(file, fold);
        let y_test = s.test[0].label.clone().unwrap();
        let start = std::time::Instant::now();
        let scores = rt.block_on(async {
            let mesh = memory_mesh(&["a", "b", "d"], 8);
            let q = |_p| {};
            let (ra, rb, rd) = tokio::join!(
                train_gbdt(&mesh[0], Role::Active, Some(s.train[0].clone()), &p, &q),
                train_gbdt(&mesh[1], Role::Passive, Some(s.train[1].clone()), &p, &q),
                train_gbdt(&mesh[2], Role::Dealer, None, &p, &q)
            );
            rd.unwrap();
            let (ma, mb) = (ra.unwrap().unwrap().model, rb.unwrap().unwrap().model);
            let pp = GbdtPredictParams {
                parties: names.clone(),
                receiver: "a".into(),
                frac_bits: p.frac_bits,
                trees,
                depth,
            };
            let (ra, rb, rd) = tokio::join!(
                predict_gbdt(
                    &mesh[0],
                    Role::Active,
                    Some(s.test[0].clone()),
                    Some(&ma),
                    &pp
                ),
                predict_gbdt(
                    &mesh[1],
                    Role::Passive,
                    Some(s.test[1].clone()),
                    Some(&mb),
                    &pp
                ),
                predict_gbdt(&mesh[2], Role::Dealer, None, None, &pp)
            );
            rb.unwrap();
            rd.unwrap();
            ra.unwrap().unwrap()
        });
        let secs = start.elapsed().as_secs_f64();
        let secure = auc(&scores, &y_test).unwrap();
        let bins = [
            Binned::fit(&s.train[0].features, p.bins),
            Binned::fit(&s.train[1].features, p.bins),
        ];
        let (twin, _) =
            train_gbdt_plain([&bins[0], &bins[1]], s.train[0].label.as_ref().unwrap(), &p);
        let plain = predict_gbdt_plain(
            &twin,
            [
                (&s.test[0].features, &bins[0]),
                (&s.test[1].features, &bins[1]),
            ],
        );
        let plain = auc(&plain, &y_test).unwrap();
        println!(
            "| {name} | {}/{} | {} | {secure:.4} | {plain:.4} | {secs:.1} s |",
            s.train[0].features.nrows(),
            y_test.len(),
            s.train[0].features.ncols() + s.train[1].features.ncols(),
        );
    }
}
