//! Training benchmark: two parties + dealer in one process over the in-memory mesh.
//!
//! `cargo run --release -p confide-training --example bench_train -- [rows] [feats_a] [feats_b] [epoch_cap] [batch] [seg3|spline7] [auc_bins] [optimizer]`
//! (defaults: 100000 50 50 200 1024 spline7 16 nesterov; every other setting is the default of
//! `TrainParams::new`, so training runs until the stopping rule ends it). Prints wall time
//! (setup, per epoch, total), the epochs used and the bytes each seat sends per epoch.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use confide_mpc::{Transport, memory_mesh};
use confide_training::{
    Optimizer, PartyNames, Role, SigmoidKind, TrainParams, generate_credit, train,
};

/// A timestamp and the bytes each seat had sent by then.
type Mark = (Instant, [u64; 3]);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (rows, fa, fb, epochs, batch) = (
        num(0, 100_000),
        num(1, 50),
        num(2, 50),
        num(3, 200),
        num(4, 1024),
    );
    let sigmoid = match args.get(5).map(String::as_str) {
        Some("seg3") => SigmoidKind::Seg3,
        _ => SigmoidKind::Spline7,
    };
    let auc_bins = num(6, 16);
    let optimizer: Optimizer = args
        .get(7)
        .map_or(Ok(Optimizer::Nesterov), |s| s.parse())
        .unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let (ta, tb) = generate_credit(rows, fa, fb, 1);
    println!(
        "data: {rows} rows x ({fa} + {fb}) features, generated in {:.2?}",
        t0.elapsed()
    );
    let names = PartyNames {
        active: "bank".into(),
        passive: "shop".into(),
        dealer: "dealer".into(),
    };
    let mut params = TrainParams::new(names);
    params.fit.epochs = epochs;
    params.fit.batch_size = batch;
    params.sigmoid = sigmoid;
    params.auc_bins = auc_bins;
    params.fit.optimizer = optimizer;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mesh = memory_mesh(&["bank", "shop", "dealer"], 8);
        let sent = |i: usize| -> u64 {
            mesh[i].peers().iter().map(|p| mesh[i].counters(p).unwrap().bytes_sent.load(Ordering::Relaxed)).sum()
        };
        let marks: Mutex<Vec<Mark>> = Mutex::default();
        let start = Instant::now();
        let snap = || (Instant::now(), [sent(0), sent(1), sent(2)]);
        marks.lock().unwrap().push(snap());
        let on_epoch = |p: confide_training::EpochProgress| {
            marks.lock().unwrap().push(snap());
            println!("epoch {}/{} loss {:?} rate {:?} stop {:?} at {:.2?}", p.epoch, p.epochs, p.loss, p.learning_rate, p.stop, start.elapsed());
        };
        let quiet = |_p| {};
        let (ra, rb, rd) = tokio::join!(
            train(&mesh[0], Role::Active, Some(ta.into_local()), &params, &on_epoch),
            train(&mesh[1], Role::Passive, Some(tb.into_local()), &params, &quiet),
            train(&mesh[2], Role::Dealer, None, &params, &quiet)
        );
        let total = start.elapsed();
        let end = snap();
        let model = ra.unwrap().model.unwrap();
        rb.unwrap();
        rd.unwrap();
        let m = marks.lock().unwrap();
        let first = m[1];
        println!("setup (handshake, masking X) until first epoch end: {:.2?}", first.0 - m[0].0);
        let last = m[m.len() - 1];
        let per_epoch = |i: usize| (last.1[i] - first.1[i]) as f64 / (m.len() - 2).max(1) as f64 / 1e6;
        println!(
            "per epoch (after the first): {:.2?}; MB sent per epoch: bank {:.1}, shop {:.1}, dealer {:.1}",
            (last.0 - first.0) / (m.len() - 2).max(1) as u32,
            per_epoch(0),
            per_epoch(1),
            per_epoch(2)
        );
        println!(
            "first epoch incl. masking X: MB sent bank {:.1}, shop {:.1}, dealer {:.1}",
            (first.1[0] - m[0].1[0]) as f64 / 1e6,
            (first.1[1] - m[0].1[1]) as f64 / 1e6,
            (first.1[2] - m[0].1[2]) as f64 / 1e6
        );
        println!(
            "after training (AUC bins, reveal): {:.2?}; MB bank {:.1}, shop {:.1}, dealer {:.1}",
            end.0 - last.0,
            (end.1[0] - last.1[0]) as f64 / 1e6,
            (end.1[1] - last.1[1]) as f64 / 1e6,
            (end.1[2] - last.1[2]) as f64 / 1e6
        );
        println!(
            "total {total:.2?}; epochs used {} ({:?}), steps {}; train AUC (binned) {:?}; loss {:?}",
            model.metrics.epochs, model.metrics.stop, model.metrics.steps, model.metrics.train_auc, model.metrics.loss_per_epoch
        );
    });
}
