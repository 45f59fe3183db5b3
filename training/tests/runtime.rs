//! The entry points run on a daemon's multi-threaded runtime: their futures are `Send`
//! (checked at compile time) and every seat can be a spawned task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use confide_mpc::transport::OnePeer;
use confide_mpc::{ChannelTransport, Link, memory_mesh};
use confide_training::{
    EpochProgress, PartyNames, PredictParams, Role, TrainParams, align, generate_credit,
    predict_shared, train,
};

fn assert_send<T: Send>(_: &T) {}

fn names() -> PartyNames {
    PartyNames {
        active: "bank".into(),
        passive: "shop".into(),
        dealer: "dealer".into(),
    }
}

/// A transport of "bank" with (unconnected) links to "shop" and "dealer".
fn bank_transport() -> ChannelTransport {
    let links = ["shop", "dealer"]
        .into_iter()
        .map(|p| {
            let (outgoing, _) = tokio::sync::mpsc::channel(1);
            let (_, incoming) = tokio::sync::mpsc::channel(1);
            (p.to_string(), Link { outgoing, incoming })
        })
        .collect::<BTreeMap<_, _>>();
    ChannelTransport::from_links("bank", links)
}

/// Compile-time: the futures of `train`, `predict_shared` and `align` over the daemon's
/// transport (and a one-peer view of it) are `Send`. They are created, never polled.
#[test]
fn entry_point_futures_are_send() {
    let t = bank_transport();
    let params = TrainParams::new(names());
    let progress = |_p: EpochProgress| {};
    let (table, _) = generate_credit(20, 1, 1, 1);
    let f = train(
        &t,
        Role::Active,
        Some(table.clone().into_local()),
        &params,
        &progress,
    );
    assert_send(&f);
    drop(f);
    let pp = PredictParams {
        parties: names(),
        receiver: "bank".into(),
        frac_bits: 18,
        batch_size: 64,
    };
    let f = predict_shared(&t, Role::Dealer, None, None, &pp);
    assert_send(&f);
    drop(f);
    let one = OnePeer::new(&t, "shop").unwrap();
    let dir = std::env::temp_dir();
    let quiet = |_p: confide_psi::Progress| {};
    let f = align(&one, table, ["bank", "shop"], &dir, &quiet);
    assert_send(&f);
}

/// The three seats as tasks spawned on a runtime with one worker thread (as a daemon
/// would run a job), with a fourth task ticking meanwhile: training completes, with a
/// sensible model, and the ticker was not starved.
#[test]
fn seats_run_as_spawned_tasks_on_one_worker() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (ta, tb) = generate_credit(3000, 20, 20, 5);
    let mut params = TrainParams::new(names());
    params.fit.epochs = 2;
    params.fit.batch_size = 256;
    let ticks = Arc::new(AtomicUsize::new(0));
    let model = rt.block_on(async {
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut mesh = memory_mesh(&["bank", "shop", "dealer"], 8).into_iter();
        let mut seat = |role: Role, data: Option<confide_training::LocalData>| {
            let t = mesh.next().unwrap();
            let params = params.clone();
            tokio::spawn(async move {
                let quiet = |_p: EpochProgress| {};
                train(&t, role, data, &params, &quiet).await
            })
        };
        let a = seat(Role::Active, Some(ta.into_local()));
        let b = seat(Role::Passive, Some(tb.into_local()));
        let d = seat(Role::Dealer, None);
        let (a, b, d) = (a.await.unwrap(), b.await.unwrap(), d.await.unwrap());
        ticker.abort();
        b.unwrap();
        d.unwrap();
        a.unwrap().model.unwrap()
    });
    assert_eq!(model.weights.len(), 40);
    let auc = model.metrics.train_auc.unwrap();
    assert!(auc > 0.7, "train AUC {auc}");
    assert!(ticks.load(Ordering::Relaxed) > 0);
}
