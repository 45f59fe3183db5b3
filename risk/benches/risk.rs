//! Risk benchmarks (small by default; `RISK_BENCH_TAGS=1000000` for the 10^6-customer index,
//! `RISK_BENCH_INGEST=1000000` for a 10^6-row ingest).
//!
//! `cargo bench -p confide-risk -- --quick`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use confide_mpc::transport::memory_mesh;
use confide_risk::codec::Purpose;
use confide_risk::{EvidenceSource, OverTransport, RiskRecord, blinded_points_hash, ingest, serve};

use confide_risk::audit::AuditGate;
use confide_risk::oprf::{BlindedBatch, OprfKey};
use confide_risk::{ComputeNode, PairSeed, RiskError, RiskIndex, Role};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

struct AllowAll;
impl AuditGate for AllowAll {
    fn check(&self, _: &str, _: [u8; 32], _: &[u8]) -> Result<(), RiskError> {
        Ok(())
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Unique evidence per batch (the node refuses replays).
struct Counter(AtomicU64);
impl EvidenceSource for Counter {
    async fn evidence(&self, _: Purpose, h: [u8; 32], _: usize) -> Result<Vec<u8>, RiskError> {
        let mut e = h.to_vec();
        e.extend_from_slice(&self.0.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Ok(e)
    }
}

/// One holder ingesting `RISK_BENCH_INGEST` rows (default 20,000) end to end over an in-memory
/// transport, both nodes in the same process (all sharing this machine's cores).
fn ingest_end_to_end(k0: &OprfKey, k1: &OprfKey) {
    let n = env_or("RISK_BENCH_INGEST", 20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pair = PairSeed::new([3; 32]);
    let n0 = Arc::new(ComputeNode::new(
        Role::S0,
        k0.clone(),
        pair.clone(),
        RiskIndex::open(dir.path().join("a")).unwrap(),
        AllowAll,
    ));
    let n1 = Arc::new(ComputeNode::new(
        Role::S1,
        k1.clone(),
        pair,
        RiskIndex::open(dir.path().join("b")).unwrap(),
        AllowAll,
    ));
    let records: Vec<RiskRecord> = (0..n)
        .map(|i| RiskRecord {
            id: format!("CUST-{i:09}"),
            values: [0, 1, 1000, 0],
        })
        .collect();
    rt.block_on(async {
        let mut mesh = memory_mesh(&["s0", "s1", "holder"], 8);
        let h = mesh.pop().unwrap();
        let t1 = mesh.pop().unwrap();
        let t0 = mesh.pop().unwrap();
        let s0 = tokio::spawn(async move { serve(&*n0, &t0, "holder").await });
        let s1 = tokio::spawn(async move { serve(&*n1, &t1, "holder").await });
        let t = Instant::now();
        let r = ingest(&OverTransport(&h), ["s0", "s1"], &records, &Counter(AtomicU64::new(0)))
            .await
            .unwrap();
        let el = t.elapsed();
        eprintln!(
            "ingest end to end: {} rows (+{} dummies) in {el:.2?} = {:.0} rows/s (holder and both nodes on this machine)",
            r.rows,
            r.dummies,
            n as f64 / el.as_secs_f64()
        );
        drop(h);
        s0.await.unwrap().unwrap();
        s1.await.unwrap().unwrap();
    });
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let key = OprfKey::random(&mut rng);
    let (k0, k1) = key.split(&mut rng);
    let ids: Vec<String> = (0..1024).map(|i| format!("CUST-{i:08}")).collect();

    let mut g = c.benchmark_group("oprf");
    g.sample_size(10);
    let batch = BlindedBatch::new(&ids, 0, &mut rng).unwrap();
    g.bench_function("node_blind_evaluate_1024", |b| {
        b.iter(|| black_box(k0.blind_evaluate(batch.elements()).unwrap()))
    });
    let e0 = k0.blind_evaluate(batch.elements()).unwrap();
    let e1 = k1.blind_evaluate(batch.elements()).unwrap();
    g.bench_function("client_blind_1024", |b| {
        b.iter(|| black_box(BlindedBatch::new(&ids, 0, &mut rng).unwrap()))
    });
    g.bench_function("client_finalize_1024", |b| {
        b.iter(|| black_box(batch.finalize(&ids, &e0, &e1).unwrap()))
    });
    g.finish();

    ingest_end_to_end(&k0, &k1);

    // An index of N tags on both nodes, filled through the ingest path (one holder).
    let n = env_or("RISK_BENCH_TAGS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let pair = PairSeed::new([9; 32]);
    let mk = |role, k: &OprfKey, name: &str| {
        ComputeNode::new(
            role,
            k.clone(),
            pair.clone(),
            RiskIndex::open(dir.path().join(name)).unwrap(),
            AllowAll,
        )
        .with_rate_limiter(None)
    };
    let n0 = mk(Role::S0, &k0, "s0.redb");
    let n1 = mk(Role::S1, &k1, "s1.redb");
    let t = Instant::now();
    for node in [&n0, &n1] {
        node.ingest_begin("holder", 1, n as u64).unwrap();
        let mut r = ChaCha20Rng::seed_from_u64(2);
        let mut left = n;
        while left > 0 {
            let k = left.min(4096);
            let rows: Vec<([u8; 64], [u64; 4])> = (0..k)
                .map(|_| {
                    let mut tag = [0u8; 64];
                    r.fill_bytes(&mut tag);
                    (
                        tag,
                        [r.next_u64(), r.next_u64(), r.next_u64(), r.next_u64()],
                    )
                })
                .collect();
            node.ingest_rows("holder", 1, &rows).unwrap();
            left -= k;
        }
        node.ingest_commit("holder", 1).unwrap();
    }
    eprintln!(
        "index: staged + committed {n} rows on each of 2 nodes in {:.2?} ({:.0} rows/s per node)",
        t.elapsed(),
        (2 * n) as f64 / t.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group(format!("query_at_{n}_tags"));
    g.sample_size(20);
    // Evidence must be fresh per evaluation (replays are refused); AllowAll accepts any.
    let serial = AtomicU64::new(0);
    let fresh = || {
        serial
            .fetch_add(1, Ordering::Relaxed)
            .to_le_bytes()
            .to_vec()
    };
    // A full in-process query: blind, two audited evaluations, finalize, two lookups.
    let mut query_inproc = |ids: &[String]| {
        let bb = BlindedBatch::new(ids, 0, &mut rng).unwrap();
        let ev = fresh();
        let hash = blinded_points_hash(Purpose::Query, bb.elements());
        let e0 = n0
            .eval_blinded("lender", Purpose::Query, &ev, bb.elements())
            .unwrap();
        let e1 = n1
            .eval_blinded("lender", Purpose::Query, &ev, bb.elements())
            .unwrap();
        let tags = bb.finalize(ids, &e0, &e1).unwrap();
        let a = n0.lookup("lender", &[1; 16], &ev, &hash, &tags).unwrap();
        let b2 = n1.lookup("lender", &[1; 16], &ev, &hash, &tags).unwrap();
        (a, b2)
    };
    let one = ["APPLICANT-1".to_string()];
    g.bench_function("one_id_inproc", |b| {
        b.iter(|| black_box(query_inproc(&one)))
    });
    g.sample_size(10);
    let thousand: Vec<String> = (0..1000).map(|i| format!("APPLICANT-{i}")).collect();
    g.bench_function("batch_1000_ids_inproc", |b| {
        b.iter(|| black_box(query_inproc(&thousand)))
    });
    // One node's lookup of one tag (the evaluation that authorises it is set-up, not timed).
    g.sample_size(20);
    let element = BlindedBatch::new(&one, 0, &mut ChaCha20Rng::seed_from_u64(4))
        .unwrap()
        .elements()
        .to_vec();
    let tag = [[5u8; 64]];
    g.bench_function("node_lookup_one_tag", |b| {
        b.iter_batched(
            || {
                let ev = fresh();
                n0.eval_blinded("lender", Purpose::Query, &ev, &element)
                    .unwrap();
                ev
            },
            |ev| black_box(n0.lookup("lender", &[1; 16], &ev, &[0; 32], &tag).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
