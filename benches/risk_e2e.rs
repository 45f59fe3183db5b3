//! End-to-end joint risk queries over three real daemons (`confide serve` processes on
//! 127.0.0.1, mutual TLS; alice and bob are the compute nodes, alice the audit sequencer,
//! carol the holder and the lender, so every node call crosses the network).
//!
//! Measures: the ingest of N rows at one holder (`confide risk ingest`, process start to
//! summary), then with those N customers in the index: 200 single queries (p50/p99, each a
//! `risk-query` job submitted to carol's own daemon over a kept connection: audit entry through the
//! sequencer, evaluation at both nodes, lookup at both nodes), a few whole
//! `confide risk query --id` processes, and a batch of 1,000 IDs.
//!
//! `cargo bench --bench risk_e2e`; `RISK_E2E_ROWS=200000` picks fewer customers (default
//! 1,000,000). `RISK_E2E_LOG=confide=debug RISK_E2E_LOGDIR=/tmp/x` keeps the daemons' logs.
//!
//! Non-default settings: `policy.risk_queries_per_minute = 1000000` at every daemon (the
//! default is 1,000), so that the ingest's evaluations and the 1,200+ queried IDs are
//! measured rather than rate limited. The bench prints this with its results.

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use confide::base::config::PartyConfig;
use confide::cli::submit::request;
use confide::kinds::JobOptions;
use confide_proto::control_client::ControlClient;

fn id(i: u64) -> String {
    format!(
        "{:012}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_000_000
    )
}

fn write_loans(path: &Path, n: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(f, "id,blacklisted,loans,amount,overdue").unwrap();
    for i in 0..n {
        writeln!(
            f,
            "{},{},{},{},{}",
            id(i),
            u8::from(i.is_multiple_of(17)),
            i % 4,
            (i % 1000) * 10_000,
            i % 3
        )
        .unwrap();
    }
}

/// User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere).
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rows: u64 = std::env::var("RISK_E2E_ROWS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let root = tempfile::tempdir().unwrap();
    let dir = init(
        root.path(),
        "alliance",
        "alice,bob,carol",
        free_base_port(3),
    );
    let data = root.path().join("carol-loans.csv");
    let t = Instant::now();
    write_loans(&data, rows);
    eprintln!("wrote {rows} rows in {:.1} s", t.elapsed().as_secs_f64());
    let parties = ["alice", "bob", "carol"];
    for p in parties {
        edit_config(
            &dir,
            p,
            "risk_queries_per_minute = 1000",
            "risk_queries_per_minute = 1000000",
        );
    }
    add_dataset(
        &dir,
        "carol",
        "loans",
        &data,
        "id",
        "{ risk = [\"alice\", \"bob\"] }",
    );
    let log = std::env::var("RISK_E2E_LOG").unwrap_or_else(|_| "warn".into());
    let _daemons: Vec<Daemon> = parties
        .iter()
        .map(|p| {
            let log_to = match std::env::var_os("RISK_E2E_LOGDIR") {
                Some(d) => Stdio::from(
                    std::fs::File::create(Path::new(&d).join(format!("{p}.log"))).unwrap(),
                ),
                None => Stdio::null(),
            };
            serve_with(&dir, p, &log, log_to)
        })
        .collect();
    wait_all_ok(&dir, &parties, Duration::from_secs(30));

    // Ingest at one holder.
    let cpu = |d: &[Daemon]| -> Vec<f64> { d.iter().map(|p| cpu_secs(p.child.id())).collect() };
    let cpu0 = cpu(&_daemons);
    let t = Instant::now();
    let out = ok(
        &at(&dir, "carol", &["risk", "ingest", "--dataset", "loans"]),
        "ingest",
    );
    let ingest = t.elapsed();
    let ingest_cpu: Vec<f64> = cpu(&_daemons)
        .iter()
        .zip(&cpu0)
        .map(|(a, b)| a - b)
        .collect();
    eprintln!("{}", out.trim());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (singles, batch) = rt.block_on(async {
        let c = PartyConfig::load(&config(&dir, "carol")).unwrap();
        let client = ControlClient::new(channel_as(&c, "carol").await);
        let query = |ids: Vec<String>| {
            let mut client = client.clone();
            async move {
                let t = Instant::now();
                let opts =
                    JobOptions::RiskQuery(confide::kinds::risk_query::Opts { ids: ids.clone() });
                let mut events = client
                    .submit(request(&opts, "", vec![], None))
                    .await
                    .unwrap()
                    .into_inner();
                let mut result = None;
                while let Some(ev) = events.message().await.unwrap() {
                    if !ev.result_json.is_empty() {
                        result = Some(ev.result_json);
                    }
                    assert!(ev.error.is_empty(), "{}", ev.error);
                }
                let v: serde_json::Value = serde_json::from_str(&result.unwrap()).unwrap();
                let answers: Vec<[u64; 5]> = serde_json::from_value(v["answers"].clone()).unwrap();
                assert_eq!(answers.len(), ids.len());
                (t.elapsed(), answers)
            }
        };
        // Warm-up (connections, node state).
        let _ = query(vec![id(1)]).await;
        let mut singles = Vec::new();
        for k in 0..200u64 {
            let i = (k * 4_999) % rows;
            let (d, a) = query(vec![id(i)]).await;
            let want = [
                u64::from(i.is_multiple_of(17)),
                i % 4,
                (i % 1000) * 10_000,
                i % 3,
            ];
            assert_eq!(a[0][..4], want, "answer for row {i}");
            singles.push(d);
        }
        let ids: Vec<String> = (0..1000u64).map(|k| id((k * 997) % rows)).collect();
        let (batch, _) = query(ids).await;
        (singles, batch)
    });
    let mut sorted = singles.clone();
    sorted.sort();
    // Whole CLI processes (connect, TLS, query, print).
    let mut cli = Vec::new();
    for k in 0..10u64 {
        let t = Instant::now();
        let applicant = id(k * 31 % rows);
        ok(
            &at(&dir, "carol", &["risk", "query", "--id", &applicant]),
            "cli query",
        );
        cli.push(t.elapsed());
    }
    cli.sort();

    println!();
    println!(
        "risk_e2e: {rows} customers at one holder, 3 daemons on loopback (mTLS), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "non-default setting: policy.risk_queries_per_minute = 1000000 at every daemon (default 1000)"
    );
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| ingest of {rows} rows (carol → alice, bob) | {:.1} s | < 60 s (10^6) |",
        ingest.as_secs_f64()
    );
    println!(
        "| ingest CPU: S0 alice / S1 bob / holder carol | {:.1} / {:.1} / {:.1} s | |",
        ingest_cpu[0], ingest_cpu[1], ingest_cpu[2]
    );
    println!(
        "| one query, p50 over 200 | {:.1} ms | < 50 ms |",
        ms(percentile(&sorted, 0.5))
    );
    println!(
        "| one query, p99 over 200 | {:.1} ms | < 200 ms |",
        ms(percentile(&sorted, 0.99))
    );
    println!(
        "| one query, max | {:.1} ms | |",
        ms(*sorted.last().unwrap())
    );
    println!(
        "| `confide risk query --id` process, p50 over 10 | {:.1} ms | |",
        ms(percentile(&cli, 0.5))
    );
    println!(
        "| batch of 1,000 IDs | {:.2} s | < 5 s |",
        batch.as_secs_f64()
    );
}
