//! Secure vs plaintext test AUC on the public credit data sets (produces ACCURACY.md's table).
//!
//! `cargo run --release -p confide-training --example accuracy -- [epochs] [batch] [lr]`
//! Each set: row-number IDs, features split in half (A gets the first half and the label),
//! 80/20 train/test split by a seeded shuffle, standardization fitted on the train part.

use std::collections::BTreeMap;

use confide_mpc::memory_mesh;
use confide_training::{
    LocalData, PartyNames, Role, SigmoidKind, Table, TrainParams, auc, batch_order, train,
    train_plain,
};
use ndarray::{Array2, Axis};

fn load(path: &str) -> (Table, Table) {
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
        Array2::from_shape_fn((rows.len(), hi - lo), |(i, j)| rows[i][lo + j])
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs = args.first().and_then(|s| s.parse().ok()).unwrap_or(10);
    let batch = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let lr = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| data set | train/test rows | plaintext test AUC | secure SEG3 test AUC | secure 7-piece test AUC | secure time (7-piece) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, file) in [
        ("Breast cancer", "breast_cancer_wisconsin.csv"),
        ("Australian", "australian_credit.csv"),
        ("German", "german_credit_onehot.csv"),
        ("Taiwan", "credit_default_taiwan.csv"),
    ] {
        let (ta, tb) = load(&format!(
            "{}/../data/credit/{file}",
            env!("CARGO_MANIFEST_DIR")
        ));
        let order = batch_order(42, 0, ta.ids.len());
        let cut = ta.ids.len() * 4 / 5;
        let ids: Vec<String> = order.iter().map(|&i| ta.ids[i].clone()).collect();
        let (tr, te) = (&ids[..cut], &ids[cut..]);
        let (a, b, at, bt) = (
            ta.align(tr).unwrap(),
            tb.align(tr).unwrap(),
            ta.align(te).unwrap(),
            tb.align(te).unwrap(),
        );
        let y_test = at.label.clone().unwrap();
        // Plaintext: same standardization, schedule and update, exact sigmoid.
        let x = ndarray::concatenate(Axis(1), &[a.features.view(), b.features.view()]).unwrap();
        let xt = ndarray::concatenate(Axis(1), &[at.features.view(), bt.features.view()]).unwrap();
        let (mut xs, mut xts) = (x.clone(), xt.clone());
        for j in 0..x.ncols() {
            let (m, s) = (x.column(j).mean().unwrap(), x.column(j).std(0.0));
            let s = if s > 0.0 { s } else { 1.0 };
            xs.column_mut(j).mapv_inplace(|v| (v - m) / s);
            xts.column_mut(j).mapv_inplace(|v| (v - m) / s);
        }
        let (b0, w) = train_plain(&xs, a.label.as_ref().unwrap(), epochs, batch, lr, 0.0, 7);
        let plain = auc(&(xts.dot(&w) + b0).to_vec(), &y_test).unwrap();
        let mut cells = Vec::new();
        let mut secs = 0.0;
        for sig in [SigmoidKind::Seg3, SigmoidKind::Spline7] {
            let mut params = TrainParams::new(PartyNames {
                active: "a".into(),
                passive: "b".into(),
                dealer: "d".into(),
            });
            params.epochs = epochs;
            params.batch_size = batch;
            params.learning_rate = lr;
            params.seed = 7;
            params.sigmoid = sig;
            params.auc_bins = 0;
            params.track_loss = false;
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
            secs = start.elapsed().as_secs_f64();
            cells.push(auc(&scores(&model, &at, &bt), &y_test).unwrap());
        }
        println!(
            "| {name} | {}/{} | {plain:.4} | {:.4} ({:+.4}) | {:.4} ({:+.4}) | {secs:.1} s |",
            tr.len(),
            te.len(),
            cells[0],
            cells[0] - plain,
            cells[1],
            cells[1] - plain
        );
    }
}
