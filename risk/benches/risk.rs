//! Risk benchmarks (small by default; `RISK_BENCH_TAGS=1000000` for the 10^6-customer index).
//!
//! `cargo bench -p confide-risk -- --quick`

use std::hint::black_box;
use std::time::Instant;

use confide_risk::audit::AuditGate;
use confide_risk::oprf::{BlindedBatch, OprfKey};
use confide_risk::{ComputeNode, PairSeed, RiskError, RiskIndex, Role};
use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

struct AllowAll;
impl AuditGate for AllowAll {
    fn check(&self, _: &str, _: [u8; 32], _: &[u8]) -> Result<(), RiskError> {
        Ok(())
    }
}

fn tags_env() -> usize {
    std::env::var("RISK_BENCH_TAGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
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

    // An index of N tags on both nodes, filled through the ingest path (one holder).
    let n = tags_env();
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
    // Full in-process query of one ID: blind, two evaluations, finalize, two lookups.
    let one = ["APPLICANT-1".to_string()];
    g.bench_function("one_id_inproc", |b| {
        b.iter(|| {
            let bb = BlindedBatch::new(&one, 0, &mut rng).unwrap();
            let tags = bb
                .finalize(
                    &one,
                    &k0.blind_evaluate(bb.elements()).unwrap(),
                    &k1.blind_evaluate(bb.elements()).unwrap(),
                )
                .unwrap();
            let a = n0.answer_at("lender", &[1; 16], &tags, 0).unwrap();
            let b2 = n1.answer_at("lender", &[1; 16], &tags, 0).unwrap();
            black_box((a, b2))
        })
    });
    let tag = [[5u8; 64]];
    g.bench_function("node_answer_one_tag", |b| {
        b.iter(|| black_box(n0.answer_at("lender", &[1; 16], &tag, 0).unwrap()))
    });
    g.sample_size(10);
    let thousand: Vec<String> = (0..1000).map(|i| format!("APPLICANT-{i}")).collect();
    g.bench_function("batch_1000_ids_inproc", |b| {
        b.iter(|| {
            let bb = BlindedBatch::new(&thousand, 0, &mut rng).unwrap();
            let tags = bb
                .finalize(
                    &thousand,
                    &k0.blind_evaluate(bb.elements()).unwrap(),
                    &k1.blind_evaluate(bb.elements()).unwrap(),
                )
                .unwrap();
            let a = n0.answer_at("lender", &[1; 16], &tags, 0).unwrap();
            let b2 = n1.answer_at("lender", &[1; 16], &tags, 0).unwrap();
            black_box((a, b2))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
