//! End-to-end training between real daemons: alice (label + features), bob (features) and
//! carol (the dealer) as separate `confide serve` processes on 127.0.0.1, timed from
//! `confide train` submission to its summary line, with the bytes each party sent per
//! epoch (from each daemon's job summary in its log) and in all (from its Prometheus
//! `/metrics`), and each daemon's peak RSS.
//!
//! `cargo bench --bench train_e2e` runs 100,000 rows × (50 + 50) features, an epoch cap of
//! 10 (`--epochs`; the default optimizer and stopping rule otherwise), batch 1,024.
//! `TRAIN_E2E="ROWS,FEATURES_A,FEATURES_B,EPOCHS,BATCH"` picks another size, e.g.
//! `TRAIN_E2E=5000,10,10,3,256`.

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;
#[path = "e2e_common.rs"]
mod e2e_common;
use e2e_common::*;

use std::process::Stdio;
use std::time::{Duration, Instant};

const PARTIES: [&str; 3] = ["alice", "bob", "carol"];
const MB: f64 = 1e6;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("train_e2e: benchmark");
        return;
    }
    let spec = std::env::var("TRAIN_E2E").unwrap_or_else(|_| "100000,50,50,10,1024".into());
    let v: Vec<usize> = spec
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("TRAIN_E2E: ROWS,FA,FB,EPOCHS,BATCH")
        })
        .collect();
    let [rows, fa, fb, epochs, batch] = v[..] else {
        panic!("TRAIN_E2E: ROWS,FEATURES_A,FEATURES_B,EPOCHS,BATCH");
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let root = std::env::temp_dir().join(format!("confide-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();

    let t = Instant::now();
    let (ta, tb) = confide_training::generate_credit(rows, fa, fb, 42);
    let (pa, pb) = (root.join("alice.csv"), root.join("bob.csv"));
    write_csv(&pa, &ta, true);
    write_csv(&pb, &tb, false);
    drop((ta, tb));
    println!(
        "generated {rows} rows × ({fa} + {fb}) features in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let port = free_base_port(6);
    let metrics = (port + 3).to_string();
    let dir = init_with(
        &root.join("alliance"),
        "alice,bob,carol",
        port,
        &["--dealer", "carol", "--metrics-base-port", &metrics],
    );
    for (party, file, peer) in [("alice", &pa, "bob"), ("bob", &pb, "alice")] {
        let allow = format!("{{ train = [\"{peer}\"] }}");
        add_dataset(&dir, party, "credit", file, "id", &allow);
    }
    let log = |p: &str| root.join(format!("{p}.log"));
    let daemons: Vec<Daemon> = PARTIES
        .iter()
        .map(|p| {
            serve_with(
                &dir,
                p,
                "info",
                std::fs::File::create(log(p)).unwrap().into(),
            )
        })
        .collect();
    wait_all_ok(&dir, &PARTIES, Duration::from_secs(30));
    let metrics_port = |i: usize| port + 3 + i as u16;
    let before: Vec<u64> = (0..3)
        .map(|i| metrics_bytes_sent(metrics_port(i)))
        .collect();

    let out = root.join("model.json");
    let t = Instant::now();
    let (epochs_arg, batch_arg) = (epochs.to_string(), batch.to_string());
    let cfg = config(&dir, "alice");
    let o = cli(&[
        "train",
        "--config",
        path_str(&cfg),
        "--dataset",
        "credit",
        "--peer",
        "bob:credit",
        "--label",
        "default",
        "--output",
        path_str(&out),
        "--epochs",
        &epochs_arg,
        "--batch-size",
        &batch_arg,
    ])
    .stderr(Stdio::inherit())
    .output()
    .expect("run confide train");
    let wall = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "train failed");
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    println!("{line}");
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<u64> = (0..3)
        .map(|i| metrics_bytes_sent(metrics_port(i)))
        .collect();

    println!(
        "\n{rows} rows × ({fa} + {fb}) features, {epochs} epochs, batch {batch}; three daemons on 127.0.0.1, {cores} cores"
    );
    println!("total wall time (submit → summary): {wall:.1} s");
    println!(
        "\n| party | PSI MB sent | epoch 1 MB (incl. setup, X masked once) | each later epoch MB (mean) | after training MB (AUC, reveal) | job total MB | /metrics delta MB | load CSV s | psi s | train s | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, p) in PARTIES.iter().enumerate() {
        let s = summary_from_log(&log(p)).unwrap_or(serde_json::Value::Null);
        let n = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let per: Vec<u64> = s
            .get("bytes_sent_per_epoch")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default();
        let first = per.first().copied().unwrap_or(0) as f64 / MB;
        let later = if per.len() > 1 {
            per[1..].iter().sum::<u64>() as f64 / (per.len() - 1) as f64 / MB
        } else {
            f64::NAN
        };
        println!(
            "| {p} | {:.1} | {first:.1} | {later:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            n("bytes_sent_psi") as f64 / MB,
            n("bytes_sent_after_training") as f64 / MB,
            n("bytes_sent") as f64 / MB,
            after[i].saturating_sub(before[i]) as f64 / MB,
            n("load_ms") as f64 / 1000.0,
            n("psi_ms") as f64 / 1000.0,
            n("train_ms") as f64 / 1000.0,
            peak_rss_mib(daemons[i].child.id()),
        );
    }
    drop(daemons);
    let _ = std::fs::remove_dir_all(&root);
}
