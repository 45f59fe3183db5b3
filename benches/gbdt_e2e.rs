//! End-to-end boosted-tree training between real daemons: alice (label + features), bob
//! (features) and carol (the dealer) as separate `confide serve` processes on 127.0.0.1,
//! timed from `confide train --model gbdt` submission to its summary line, with the bytes
//! and messages each party sent per tree (from each daemon's job summary in its log), in
//! all (from its Prometheus `/metrics`), and each daemon's peak RSS.
//!
//! `cargo bench --bench gbdt_e2e` runs 100,000 rows × (25 + 25) features, 20 trees of depth
//! 5, 32 bins. `GBDT_E2E="ROWS,FEATURES_A,FEATURES_B,TREES,DEPTH,BINS"` picks another size,
//! e.g. `GBDT_E2E=10000,25,25,2,5,32`. With `CONFIDE_GBDT_PROFILE=1` the daemons time each
//! training phase and the bench prints their tables.

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
        println!("gbdt_e2e: benchmark");
        return;
    }
    let spec = std::env::var("GBDT_E2E").unwrap_or_else(|_| "100000,25,25,20,5,32".into());
    let v: Vec<usize> = spec
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("GBDT_E2E: ROWS,FA,FB,TREES,DEPTH,BINS")
        })
        .collect();
    let [rows, fa, fb, trees, depth, bins] = v[..] else {
        panic!("GBDT_E2E: ROWS,FEATURES_A,FEATURES_B,TREES,DEPTH,BINS");
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let root = std::env::temp_dir().join(format!("confide-gbdt-bench-{}", std::process::id()));
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

    let out = root.join("trees.json");
    let t = Instant::now();
    let (trees_arg, depth_arg, bins_arg) = (trees.to_string(), depth.to_string(), bins.to_string());
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
        "--model",
        "gbdt",
        "--trees",
        &trees_arg,
        "--depth",
        &depth_arg,
        "--bins",
        &bins_arg,
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
        "\n{rows} rows × ({fa} + {fb}) features, {trees} trees of depth {depth}, {bins} bins; three daemons on 127.0.0.1, {cores} cores"
    );
    println!("total wall time (submit → summary): {wall:.1} s");
    println!(
        "\n| party | PSI MB sent | tree 1 MB (incl. setup, C masked once) | each later tree MB (mean) | messages per tree (mean) | job total MB | /metrics delta MB | psi s | train s | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, p) in PARTIES.iter().enumerate() {
        let s = summary_from_log(&log(p)).unwrap_or(serde_json::Value::Null);
        let n = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let list = |k: &str| -> Vec<u64> {
            s.get(k)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default()
        };
        let per = list("bytes_sent_per_tree");
        let msgs = list("messages_sent_per_tree");
        let first = per.first().copied().unwrap_or(0) as f64 / MB;
        let later = if per.len() > 1 {
            per[1..].iter().sum::<u64>() as f64 / (per.len() - 1) as f64 / MB
        } else {
            f64::NAN
        };
        let mean_msgs = msgs.iter().sum::<u64>() as f64 / msgs.len().max(1) as f64;
        println!(
            "| {p} | {:.1} | {first:.1} | {later:.1} | {mean_msgs:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            n("bytes_sent_psi") as f64 / MB,
            n("bytes_sent") as f64 / MB,
            after[i].saturating_sub(before[i]) as f64 / MB,
            n("psi_ms") as f64 / 1000.0,
            n("train_ms") as f64 / 1000.0,
            peak_rss_mib(daemons[i].child.id()),
        );
    }
    drop(daemons);
    // With CONFIDE_GBDT_PROFILE set, each daemon printed its per-phase profile on stderr.
    if std::env::var_os("CONFIDE_GBDT_PROFILE").is_some() {
        println!("\nper-phase profile (seconds include waiting for the other seats):");
        for p in PARTIES {
            let text = std::fs::read_to_string(log(p)).unwrap_or_default();
            for l in text
                .lines()
                .filter(|l| l.starts_with(p) && l.contains('\t'))
            {
                println!("{l}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
