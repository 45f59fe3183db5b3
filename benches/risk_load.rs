//! Load on the joint risk service: five real daemons on 127.0.0.1 (`confide init`'s
//! defaults: dave and erin the compute nodes, alice the audit sequencer; alice, bob and
//! carol lenders that each contributed loans), three lenders querying at once.
//!
//! 1. **Rate steps**: open-loop arrivals (each query is sent at its scheduled time, and its
//!    latency counts from that time, so a backlog shows in the figures) at increasing total
//!    rates, split evenly over the three lenders, `RISK_LOAD_STEP_SECS` (default 15) per
//!    step. Every answer is checked against the plaintext sums. The highest rate whose p99
//!    stays under 50 ms with no error is the sustained rate.
//! 2. **Soak**: that rate (or `RISK_LOAD_SOAK_RATE`) for `RISK_LOAD_SOAK_SECS` (default 600),
//!    with the five daemons' resident memory sampled every 30 s, and each daemon's growth
//!    over the soak's last 10 minutes (run a soak longer than 10 minutes so that the capped
//!    redb caches fill before that window).
//!
//! `cargo bench --bench risk_load`; `RISK_LOAD_RATES=10,20,40` picks the steps (queries per
//! second, all lenders together; default 5 to 320). When the highest step still passes,
//! the sustained rate is reported as "at least" that step. Non-default setting: `policy.risk_queries_per_minute =
//! 1000000` at every daemon (default 1,000 per member), so that the service rather than
//! the rate limit is measured. Every query is one `risk-query` job with its audit entry
//! (logged before it is answered), exactly as `confide risk query` submits it.

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use confide::base::config::PartyConfig;
use confide::cli::submit::request;
use confide::kinds::JobOptions;
use confide_proto::control_client::ControlClient;
use tonic::transport::Channel;

const PARTIES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const LENDERS: [&str; 3] = ["alice", "bob", "carol"];
/// Rows each lender contributes (the customer IDs overlap across lenders).
const ROWS: u64 = 5_000;

fn id(i: u64) -> String {
    format!(
        "{:012}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_000_000
    )
}

/// Lender `k` holds rows `k*ROWS/2 .. k*ROWS/2 + ROWS` (half overlaps the next lender).
fn rows_of(k: u64) -> std::ops::Range<u64> {
    k * ROWS / 2..k * ROWS / 2 + ROWS
}

fn record(i: u64) -> [u64; 4] {
    [
        u64::from(i.is_multiple_of(17)),
        i % 4,
        (i % 1000) * 10_000,
        i % 3,
    ]
}

/// The alliance's plaintext answer for customer `i`: each field summed over the lenders
/// that hold the customer (blacklisted counts the lenders that blacklisted them).
fn expected(i: u64) -> [u64; 4] {
    let mut a = [0u64; 4];
    for k in 0..LENDERS.len() as u64 {
        if rows_of(k).contains(&i) {
            for (x, r) in a.iter_mut().zip(record(i)) {
                *x += r;
            }
        }
    }
    a
}

fn write_loans(path: &Path, k: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "id,blacklisted,loans,amount,overdue").unwrap();
    for i in rows_of(k) {
        let r = record(i);
        writeln!(f, "{},{},{},{},{}", id(i), r[0], r[1], r[2], r[3]).unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One query of customer `i` at `client`; Err on a failed job or a wrong answer.
async fn query(mut client: ControlClient<Channel>, i: u64) -> Result<(), String> {
    let opts = JobOptions::RiskQuery(confide::kinds::risk_query::Opts { ids: vec![id(i)] });
    let mut events = client
        .submit(request(&opts, "", vec![], None))
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut result = None;
    while let Some(ev) = events
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        if !ev.error.is_empty() {
            return Err(ev.error);
        }
        if !ev.result_json.is_empty() {
            result = Some(ev.result_json);
        }
    }
    let v: serde_json::Value =
        serde_json::from_str(&result.ok_or("no result")?).map_err(|e| e.to_string())?;
    let answers: Vec<[u64; 5]> =
        serde_json::from_value(v["answers"].clone()).map_err(|e| e.to_string())?;
    match answers.first() {
        Some(a) if a[..4] == expected(i) => Ok(()),
        other => Err(format!(
            "customer {i}: got {other:?}, want {:?}",
            expected(i)
        )),
    }
}

struct Step {
    rate: f64,
    sent: usize,
    errors: Vec<String>,
    latencies: Vec<Duration>,
}

/// Open-loop arrivals at `rate` queries/s over all lenders for `secs`.
async fn run_step(clients: &[ControlClient<Channel>], rate: f64, secs: f64, seed: u64) -> Step {
    let n = (rate * secs).round() as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let span = rows_of(LENDERS.len() as u64 - 1).end;
    let tasks: Vec<_> = (0..n)
        .map(|q| {
            let client = clients[q % clients.len()].clone();
            let at = start + Duration::from_secs_f64(q as f64 / rate);
            // Customers spread over every lender's rows (and a few nobody holds).
            let i = (seed + q as u64).wrapping_mul(7_919) % (span + 500);
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let r = query(client, i).await;
                (at.elapsed(), r)
            })
        })
        .collect();
    let mut step = Step {
        rate,
        sent: n,
        errors: Vec::new(),
        latencies: Vec::with_capacity(n),
    };
    for t in tasks {
        match t.await {
            Ok((d, Ok(()))) => step.latencies.push(d),
            Ok((_, Err(e))) => step.errors.push(e),
            Err(e) => step.errors.push(e.to_string()),
        }
    }
    step.latencies.sort();
    step
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let step_secs = env_f64("RISK_LOAD_STEP_SECS", 15.0);
    let soak_secs = env_f64("RISK_LOAD_SOAK_SECS", 600.0);
    let rates: Vec<f64> = std::env::var("RISK_LOAD_RATES")
        .unwrap_or_else(|_| "5,10,20,40,80,160,240,320".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let root = tempfile::tempdir().unwrap();
    let dir = init(
        root.path(),
        "alliance",
        &PARTIES.join(","),
        free_base_port(PARTIES.len() as u16),
    );
    for p in PARTIES {
        edit_config(
            &dir,
            p,
            "risk_queries_per_minute = 1000",
            "risk_queries_per_minute = 1000000",
        );
    }
    for (k, l) in LENDERS.iter().enumerate() {
        let data = root.path().join(format!("{l}-loans.csv"));
        write_loans(&data, k as u64);
        add_dataset(
            &dir,
            l,
            "loans",
            &data,
            "id",
            "{ risk = [\"dave\", \"erin\"] }",
        );
    }
    let daemons = start(&dir, &PARTIES, Duration::from_secs(30));
    for l in LENDERS {
        let out = ok(
            &at(&dir, l, &["risk", "ingest", "--dataset", "loans"]),
            "ingest",
        );
        eprintln!("{}", out.trim());
    }
    let rss = |d: &[Daemon]| -> Vec<f64> { d.iter().map(|p| peak_rss_mib(p.child.id())).collect() };
    let current_rss = |d: &[Daemon]| -> Vec<f64> {
        d.iter()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{}/status", p.child.id()))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                    })
                    .map_or(f64::NAN, |kb| kb / 1024.0)
            })
            .collect()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clients: Vec<ControlClient<Channel>> = rt.block_on(async {
        let mut v = Vec::new();
        for l in LENDERS {
            let c = PartyConfig::load(&config(&dir, l)).unwrap();
            v.push(ControlClient::new(channel_as(&c, l).await));
        }
        v
    });
    // Warm-up.
    rt.block_on(run_step(&clients, 5.0, 2.0, 0));

    let mut steps = Vec::new();
    for (s, &rate) in rates.iter().enumerate() {
        let st = rt.block_on(run_step(&clients, rate, step_secs, 1_000 * s as u64));
        eprintln!(
            "rate {rate}/s: {} sent, {} errors, p50 {:.1} ms, p99 {:.1} ms",
            st.sent,
            st.errors.len(),
            ms(percentile(&st.latencies, 0.5)),
            ms(percentile(&st.latencies, 0.99))
        );
        let over =
            !st.errors.is_empty() || percentile(&st.latencies, 0.99) >= Duration::from_millis(50);
        steps.push(st);
        if over && percentile(&steps.last().unwrap().latencies, 0.5) >= Duration::from_millis(500) {
            break; // far past saturation
        }
    }
    let sustained = steps
        .iter()
        .filter(|s| {
            s.errors.is_empty() && percentile(&s.latencies, 0.99) < Duration::from_millis(50)
        })
        .map(|s| s.rate)
        .fold(0.0, f64::max);

    // Soak at the sustained rate, memory sampled every 30 s.
    let mut samples: Vec<(f64, Vec<f64>)> = vec![(0.0, current_rss(&daemons))];
    let soak_rate = env_f64("RISK_LOAD_SOAK_RATE", sustained.max(1.0));
    let t0 = Instant::now();
    let mut soak_errors = Vec::new();
    let mut soak_lat = Vec::new();
    let mut chunk = 0u64;
    while soak_secs - t0.elapsed().as_secs_f64() >= 1.0 {
        let secs = 30f64.min(soak_secs - t0.elapsed().as_secs_f64());
        let st = rt.block_on(run_step(
            &clients,
            soak_rate,
            secs,
            1_000_000 + chunk * 10_000,
        ));
        chunk += 1;
        soak_errors.extend(st.errors);
        soak_lat.extend(st.latencies);
        samples.push((t0.elapsed().as_secs_f64(), current_rss(&daemons)));
        // Printed as it goes, so that a soak cut short keeps its figures.
        if let Some((t, r)) = samples.last() {
            let cells: Vec<String> = r.iter().map(|m| format!("{m:.0}")).collect();
            eprintln!(
                "soak t = {t:.0} s: {} queries, {} errors; RSS MiB {}",
                soak_lat.len() + soak_errors.len(),
                soak_errors.len(),
                cells.join(" / ")
            );
        }
    }
    soak_lat.sort();
    let peak = rss(&daemons);
    let first_errors: Vec<&String> = steps
        .iter()
        .flat_map(|s| s.errors.iter())
        .chain(soak_errors.iter())
        .take(3)
        .collect();
    // The entry count from `status` (the whole log of a long soak is large to print).
    let status = stdout(&at(&dir, "alice", &["status"]));
    let entries = status
        .lines()
        .find_map(|l| {
            l.split("ok: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);

    println!();
    println!(
        "risk_load: 5 daemons on loopback (mTLS), 3 lenders × {ROWS} rows, {} cores; open-loop arrivals, {step_secs} s per step",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("non-default setting: policy.risk_queries_per_minute = 1000000 at every daemon");
    println!("| total rate (q/s) | queries | errors | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for s in &steps {
        println!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            s.rate,
            s.sent,
            s.errors.len(),
            ms(percentile(&s.latencies, 0.5)),
            ms(percentile(&s.latencies, 0.99)),
            ms(*s.latencies.last().unwrap_or(&Duration::ZERO))
        );
    }
    let top = steps.last().is_some_and(|s| s.rate == sustained) && steps.len() == rates.len();
    println!(
        "highest sustained rate with p99 < 50 ms and no error: {}{sustained} q/s",
        if top { "at least " } else { "" }
    );
    println!(
        "soak: {soak_rate} q/s for {:.0} s: {} queries, {} errors, p50 {:.1} ms, p99 {:.1} ms",
        t0.elapsed().as_secs_f64(),
        soak_lat.len() + soak_errors.len(),
        soak_errors.len(),
        ms(percentile(&soak_lat, 0.5)),
        ms(percentile(&soak_lat, 0.99))
    );
    println!("| t (s) | RSS MiB: {} |", PARTIES.join(" / "));
    println!("|---|---|");
    for (t, r) in &samples {
        let cells: Vec<String> = r.iter().map(|m| format!("{m:.0}")).collect();
        println!("| {t:.0} | {} |", cells.join(" / "));
    }
    // Flatness: each daemon's growth over the soak's last 10 minutes (the window starts at
    // the latest sample at or before end - 600 s; earlier minutes fill the capped caches).
    if let (Some(last), true) = (samples.last(), samples.len() > 1) {
        let from = samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= last.0 - 600.0)
            .unwrap_or(&samples[0]);
        let growth: Vec<String> = last
            .1
            .iter()
            .zip(&from.1)
            .map(|(b, a)| format!("{:+.1}", b - a))
            .collect();
        println!(
            "RSS growth over the last {:.0} s (t = {:.0} → {:.0}), MiB: {}",
            last.0 - from.0,
            from.0,
            last.0,
            growth.join(" / ")
        );
    }
    let peaks: Vec<String> = peak.iter().map(|m| format!("{m:.0}")).collect();
    println!("peak RSS MiB: {}", peaks.join(" / "));
    println!("audit log entries at the end: {entries}");
    if !first_errors.is_empty() {
        println!("first errors: {first_errors:?}");
    }
}
