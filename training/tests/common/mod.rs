//! Shared test harness: three seats over the in-memory mesh.
#![allow(dead_code)]

use std::path::Path;

use confide_mpc::{ChannelTransport, Recording, RecordingTransport, memory_mesh};
use confide_training::gbdt::GbdtOutcome;
use confide_training::{
    GbdtParams, GbdtShare, LocalData, PartyNames, PredictParams, Result, Role, SharedModel, Table,
    TrainOutcome, TrainParams, generate_credit, load_table, predict_shared, train,
};
use ndarray::{Array2, Axis};

pub fn names() -> PartyNames {
    PartyNames {
        active: "bank".into(),
        passive: "shop".into(),
        dealer: "dealer".into(),
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The transports of the three seats over the in-memory mesh, recording into `log`.
fn seats(log: Option<Recording>) -> [RecordingTransport<ChannelTransport>; 3] {
    let log = log.unwrap_or_default();
    let mut mesh = memory_mesh(&["bank", "shop", "dealer"], 8)
        .into_iter()
        .map(|t| RecordingTransport::new(t, log.clone()));
    [(); 3].map(|()| mesh.next().unwrap())
}

/// Runs training at the three seats; returns (active, passive, dealer) outcomes.
pub fn run_train(
    a: Option<LocalData>,
    b: Option<LocalData>,
    params: &TrainParams,
    log: Option<Recording>,
) -> [Result<TrainOutcome>; 3] {
    rt().block_on(async {
        let [ta, tb, td] = seats(log);
        let quiet = |_p| {};
        let (ra, rb, rd) = tokio::join!(
            train(&ta, Role::Active, a, params, &quiet),
            train(&tb, Role::Passive, b, params, &quiet),
            train(&td, Role::Dealer, None, params, &quiet)
        );
        [ra, rb, rd]
    })
}

pub fn run_predict(
    a: LocalData,
    b: LocalData,
    ma: &SharedModel,
    mb: &SharedModel,
    params: &PredictParams,
    log: Option<Recording>,
) -> [Result<Option<Vec<f64>>>; 3] {
    rt().block_on(async {
        let [ta, tb, td] = seats(log);
        let (ra, rb, rd) = tokio::join!(
            predict_shared(&ta, Role::Active, Some(a), Some(ma), params),
            predict_shared(&tb, Role::Passive, Some(b), Some(mb), params),
            predict_shared(&td, Role::Dealer, None, None, params)
        );
        [ra, rb, rd]
    })
}

/// Reads a credit data set (no ID column; last column `label`), adds row-number IDs and
/// splits it vertically at `split` into two CSVs, then loads them with `load_table`.
pub fn split_dataset(csv_path: &Path, split: usize, dir: &Path) -> (Table, Table) {
    let text = std::fs::read_to_string(csv_path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let nf = header.len() - 1;
    let (mut fa, mut fb) = (String::new(), String::new());
    fa.push_str(&format!("id,{},label\n", header[..split].join(",")));
    fb.push_str(&format!("id,{}\n", header[split..nf].join(",")));
    for (i, l) in lines.enumerate() {
        let c: Vec<&str> = l.split(',').collect();
        fa.push_str(&format!("r{i},{},{}\n", c[..split].join(","), c[nf]));
        fb.push_str(&format!("r{i},{}\n", c[split..nf].join(",")));
    }
    let (pa, pb) = (dir.join("a.csv"), dir.join("b.csv"));
    std::fs::write(&pa, fa).unwrap();
    std::fs::write(&pb, fb).unwrap();
    (
        load_table(&pa, "id", Some("label")).unwrap(),
        load_table(&pb, "id", None).unwrap(),
    )
}

/// Deterministic 80/20 split of row IDs.
pub fn train_test_ids(t: &Table, seed: u64) -> (Vec<String>, Vec<String>) {
    let order = confide_training::batch_order(seed, 0, t.ids.len());
    let cut = t.ids.len() * 4 / 5;
    let ids: Vec<String> = order.iter().map(|&i| t.ids[i].clone()).collect();
    (ids[..cut].to_vec(), ids[cut..].to_vec())
}

/// Concatenates the columns of two aligned local data sets.
pub fn joined(a: &LocalData, b: &LocalData) -> Array2<f64> {
    ndarray::concatenate(Axis(1), &[a.features.view(), b.features.view()]).unwrap()
}

/// The three seats' outcomes of a boosted-tree training run.
pub type GbdtOut = [Result<Option<GbdtOutcome>>; 3];

/// Trains boosted trees at the three seats (the wire recorded into `log` if given).
pub fn run_gbdt(
    a: Option<LocalData>,
    b: Option<LocalData>,
    p: &GbdtParams,
    log: Option<Recording>,
) -> GbdtOut {
    rt().block_on(async {
        let [ta, tb, td] = seats(log);
        let quiet = |_p| {};
        let (ra, rb, rd) = tokio::join!(
            confide_training::train_gbdt(&ta, Role::Active, a, p, &quiet),
            confide_training::train_gbdt(&tb, Role::Passive, b, p, &quiet),
            confide_training::train_gbdt(&td, Role::Dealer, None, p, &quiet)
        );
        [ra, rb, rd]
    })
}

/// Boosting parameters for the tests: 16 bins.
pub fn gbdt_params(trees: usize, depth: usize) -> GbdtParams {
    let mut p = GbdtParams::new(names());
    p.trees = trees;
    p.depth = depth;
    p.bins = 16;
    p
}

/// Synthetic credit rows: 3 columns and the label at A, 3 columns at B.
pub fn gbdt_data(rows: usize, seed: u64) -> (LocalData, LocalData) {
    let (ta, tb) = generate_credit(rows, 3, 3, seed);
    (ta.into_local(), tb.into_local())
}

/// Both computing parties' model shares (the dealer holds none).
pub fn both(out: GbdtOut) -> (GbdtShare, GbdtShare) {
    let [ra, rb, rd] = out;
    assert!(rd.unwrap().is_none(), "the dealer holds no model");
    (ra.unwrap().unwrap().model, rb.unwrap().unwrap().model)
}
