//! Append + replicate + cosign with three in-process members (temp redb
//! files), pipelined the way the deployment runs: the sequencer thread makes a
//! batch of entries signed by rotating members, appends it (one redb txn,
//! inclusion promises), signs a checkpoint and sends each member an `Update`;
//! each member thread applies it (verifies every entry, one redb txn) and sends
//! back its cosignature; the sequencer collects cosignatures until final while
//! it already appends the next batch (at most 2 batches in flight per member).
//!
//! Criterion's time per iteration is one batch at steady state (throughput =
//! entries/s, counted until the last batch is final). `report` prints the
//! append-to-final latency per batch and the CPU time per entry.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
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

struct Pipeline {
    seq: AuditStore,
    keys: Vec<SigningKey>,
    to_members: Vec<SyncSender<Update>>,
    sent: Vec<u64>,
    cosigs: Receiver<Cosignature>,
    members: Vec<JoinHandle<()>>,
    next: u64,
    in_flight: VecDeque<(u64, Instant)>,
    latencies: Vec<Duration>,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    fn new(genesis: &Genesis) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let open = |i: usize| {
            AuditStore::open(
                dir.path().join(format!("{i}.redb")),
                genesis.clone(),
                NAMES[i],
                key(i),
            )
            .unwrap()
        };
        let (cos_tx, cosigs) = sync_channel::<Cosignature>(64);
        let mut to_members = Vec::new();
        let mut members = Vec::new();
        for i in 1..3 {
            let (tx, rx) = sync_channel::<Update>(2);
            let mut store = open(i);
            let cos_tx = cos_tx.clone();
            members.push(std::thread::spawn(move || {
                for up in rx {
                    let cs = store.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
                    if cos_tx.send(cs).is_err() {
                        break;
                    }
                }
            }));
            to_members.push(tx);
        }
        Pipeline {
            seq: open(0),
            keys: (0..3).map(key).collect(),
            to_members,
            sent: vec![0, 0],
            cosigs,
            members,
            next: 0,
            in_flight: VecDeque::new(),
            latencies: Vec::new(),
            _dir: dir,
        }
    }

    /// Members sign their entries on their own machines: in parallel here.
    fn make_batch(&mut self, batch: u64) -> Vec<Entry> {
        let log_id = self.seq.log_id();
        let keys = &self.keys;
        let v = (self.next..self.next + batch)
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
                Entry::create(body, &log_id, &keys[m]).unwrap()
            })
            .collect();
        self.next += batch;
        v
    }

    fn take_cosig(&mut self, cs: Cosignature) {
        if let Some(fin) = self.seq.add_cosignature(&cs).unwrap() {
            let size = fin.checkpoint.size;
            while self.in_flight.front().is_some_and(|(end, _)| *end <= size) {
                let (_, t) = self.in_flight.pop_front().unwrap();
                self.latencies.push(t.elapsed());
            }
        }
    }

    /// Run `n` batches and wait until the last one is final.
    fn run(&mut self, n: u64, batch: u64) {
        for _ in 0..n {
            let entries = self.make_batch(batch);
            let start = Instant::now();
            self.seq.append_signed(&entries).unwrap();
            self.seq.checkpoint().unwrap();
            self.in_flight.push_back((self.seq.size(), start));
            for m in 0..2 {
                let up = self.seq.update_for(self.sent[m], u64::MAX).unwrap();
                self.sent[m] = up.checkpoint.checkpoint.size;
                // Blocks when a member is 2 batches behind; collect meanwhile.
                let mut up = Some(up);
                while let Some(u) = up.take() {
                    match self.to_members[m].try_send(u) {
                        Ok(()) => {}
                        Err(std::sync::mpsc::TrySendError::Full(u)) => {
                            up = Some(u);
                            let cs = self.cosigs.recv().unwrap();
                            self.take_cosig(cs);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            while let Ok(cs) = self.cosigs.try_recv() {
                self.take_cosig(cs);
            }
        }
        while !self.in_flight.is_empty() {
            let cs = self.cosigs.recv().unwrap();
            self.take_cosig(cs);
        }
    }

    fn shutdown(self) {
        drop(self.to_members);
        drop(self.cosigs);
        for h in self.members {
            h.join().unwrap();
        }
    }
}

/// Process CPU time (user + system) from /proc/self/stat, if available.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ = 100 on Linux
}

/// Wall-clock, latency and CPU figures for 16 batches of `batch`, printed once.
fn report(genesis: &Genesis, batch: u64) {
    let mut p = Pipeline::new(genesis);
    let rounds = 16;
    let (t0, c0) = (Instant::now(), cpu_time());
    p.run(rounds, batch);
    let wall = t0.elapsed();
    let c1 = cpu_time();
    let mut lat = std::mem::take(&mut p.latencies);
    lat.sort();
    let n = (batch * rounds) as f64;
    println!(
        "report batch {batch}: {n} entries, {:.0} entries/s wall; append-to-final latency min {:?} median {:?} max {:?}",
        n / wall.as_secs_f64(),
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    if let (Some(c0), Some(c1)) = (c0, c1) {
        let cpu = (c1 - c0).as_secs_f64();
        println!(
            "report batch {batch}: CPU {:.1} µs/entry for all three members; CPU use {:.2} cores",
            cpu / n * 1e6,
            cpu / wall.as_secs_f64()
        );
    }
    p.shutdown();
}

fn bench(c: &mut Criterion) {
    let genesis = Genesis::new(
        (0..3)
            .map(|i| Member::new(NAMES[i], &key(i).verifying_key()))
            .collect(),
        "alice",
    )
    .unwrap();
    for batch in [256, 1024] {
        report(&genesis, batch);
    }
    let mut group = c.benchmark_group("audit_append_replicate_cosign");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for batch in [256u64, 1024] {
        let mut p = Pipeline::new(&genesis);
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                p.run(iters, batch);
                t.elapsed()
            })
        });
        p.shutdown();
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
