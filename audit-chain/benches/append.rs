//! Append + replicate + cosign throughput with three in-process members
//! (temp redb files): per iteration, one batch of entries signed by rotating
//! members is appended at the sequencer (one redb txn), checkpointed, applied
//! by both other members (one txn each) and cosigned until final. Criterion's
//! time per iteration is the append-to-final latency of a batch; the
//! throughput line is entries/s.

use std::time::{Duration, Instant};

use confide_audit::{
    AuditStore, Cosignature, Entry, EntryBody, Genesis, JobKind, Member, Update, fingerprint,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use rayon::prelude::*;

const NAMES: [&str; 3] = ["alice", "bob", "carol"];

fn key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

/// One batch: create (members sign), append at the sequencer, checkpoint,
/// replicate to both members, cosign until final.
fn round(
    stores: &mut [AuditStore],
    keys: &[SigningKey],
    log_id: &[u8; 32],
    next: &mut u64,
    batch: u64,
) {
    // Members sign their entries on their own machines: in parallel here.
    let entries: Vec<Entry> = (*next..*next + batch)
        .into_par_iter()
        .map(|i| {
            let m = (i % 3) as usize;
            let body = EntryBody {
                timestamp_ms: i,
                member: NAMES[m].into(),
                kind: JobKind::RiskQuery,
                job_id: format!("q-{i}"),
                served_by: vec![NAMES[(m + 1) % 3].into()],
                fingerprint: fingerprint(&i.to_be_bytes(), b"request", b"answer"),
            };
            Entry::create(body, log_id, &keys[m]).unwrap()
        })
        .collect();
    *next += batch;
    let (seq, members) = stores.split_first_mut().unwrap();
    seq.append_signed(&entries).unwrap();
    seq.checkpoint().unwrap();
    // Members are separate processes: they apply concurrently.
    let updates: Vec<Update> = members
        .iter()
        .map(|m| seq.update_for(m.size(), u64::MAX).unwrap())
        .collect();
    let cosigs: Vec<Cosignature> = std::thread::scope(|s| {
        let handles: Vec<_> = members
            .iter_mut()
            .zip(&updates)
            .map(|(m, up)| {
                s.spawn(move || m.apply(&up.entries, &up.checkpoint, &up.proof).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut fin = None;
    for cs in &cosigs {
        fin = fin.or(seq.add_cosignature(cs).unwrap());
    }
    assert!(fin.is_some());
}

/// Process CPU time (user + system) from /proc/self/stat, if available.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ = 100 on Linux
}

fn open_three(dir: &std::path::Path, genesis: &Genesis) -> Vec<AuditStore> {
    (0..3)
        .map(|i| {
            AuditStore::open(
                dir.join(format!("{i}.redb")),
                genesis.clone(),
                NAMES[i],
                key(i),
            )
            .unwrap()
        })
        .collect()
}

/// Wall-clock and CPU-time figures for 8 batches of 1024, printed once.
fn report(genesis: &Genesis) {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = open_three(dir.path(), genesis);
    let keys: Vec<SigningKey> = (0..3).map(key).collect();
    let (mut next, batch, rounds) = (0u64, 1024u64, 8);
    let mut lat = Vec::new();
    let (t0, c0) = (Instant::now(), cpu_time());
    for _ in 0..rounds {
        let t = Instant::now();
        round(&mut stores, &keys, &genesis.log_id(), &mut next, batch);
        lat.push(t.elapsed());
    }
    let wall = t0.elapsed();
    lat.sort();
    let n = (batch * rounds) as f64;
    println!(
        "report: {} entries, batch {batch}: {:.0} entries/s wall; append-to-final latency per batch min {:?} median {:?} max {:?}",
        n,
        n / wall.as_secs_f64(),
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    if let (Some(c0), Some(c1)) = (c0, cpu_time()) {
        let cpu = (c1 - c0).as_secs_f64();
        println!(
            "report: CPU {:.1} µs/entry (all three members); an idle 2-core machine has CPU for {:.0} entries/s",
            cpu / n * 1e6,
            2.0 * n / cpu
        );
    }
}

fn bench(c: &mut Criterion) {
    let genesis = Genesis::new(
        (0..3)
            .map(|i| Member::new(NAMES[i], &key(i).verifying_key()))
            .collect(),
        "alice",
    )
    .unwrap();
    let log_id = genesis.log_id();
    report(&genesis);
    let mut group = c.benchmark_group("audit_append_replicate_cosign");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for batch in [256u64, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let mut stores = open_three(dir.path(), &genesis);
        let keys: Vec<SigningKey> = (0..3).map(key).collect();
        let mut next = 0u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    round(&mut stores, &keys, &log_id, &mut next, batch);
                }
                t.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
