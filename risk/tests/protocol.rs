//! End-to-end, privacy, audit-gate, replace-on-reingest and rate-limit tests.

mod common;

use std::collections::HashMap;

use common::{Alliance, MockLog, nodes};
use confide_mpc::transport::recording_contains;
use confide_risk::codec::{Purpose, Request, Response};
use confide_risk::oprf::{self, BlindedBatch};
use confide_risk::{Answer, OverTransport, RiskRecord, blinded_points_hash, ingest, query};
use rand::RngExt;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const S: [&str; 2] = ["s0", "s1"];

fn id(i: usize) -> String {
    format!("CUST-{i:06}-X")
}

/// Three holders with random overlapping customers and random values.
fn random_holders(pool: usize, per_holder: usize, seed: u64) -> Vec<Vec<RiskRecord>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..3)
        .map(|_| {
            let mut picked: Vec<usize> = (0..pool).collect();
            for i in 0..pool {
                let j = rng.random_range(i..pool);
                picked.swap(i, j);
            }
            picked[..per_holder]
                .iter()
                .map(|&i| RiskRecord {
                    id: id(i),
                    values: [
                        rng.random_range(0..2),
                        rng.random_range(0..5),
                        rng.random_range(0..(1u64 << 39)),
                        rng.random_range(0..3),
                    ],
                })
                .collect()
        })
        .collect()
}

fn plaintext_sums(holders: &[Vec<RiskRecord>]) -> HashMap<String, [u64; 4]> {
    let mut m: HashMap<String, [u64; 4]> = HashMap::new();
    for h in holders {
        for r in h {
            let e = m.entry(r.id.clone()).or_default();
            for (x, v) in e.iter_mut().zip(r.values) {
                *x += v;
            }
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_holders_answers_equal_plaintext_sums_and_wire_leaks_nothing() {
    let holders_names = ["h1", "h2", "h3"];
    let alliance = Alliance::start(&["h1", "h2", "h3", "q"]);
    let pool = 300;
    let data = random_holders(pool, 150, 7);

    // Ingest at all three holders concurrently.
    let callers: Vec<_> = alliance.clients[..3].iter().map(OverTransport).collect();
    let sources: Vec<_> = holders_names.iter().map(|h| alliance.source(h)).collect();
    let (a, b, c) = tokio::join!(
        ingest(&callers[0], S, &data[0], &sources[0]),
        ingest(&callers[1], S, &data[1], &sources[1]),
        ingest(&callers[2], S, &data[2], &sources[2]),
    );
    for r in [a, b, c] {
        let r = r.unwrap();
        assert_eq!(r.rows, 150);
        assert_eq!(r.rows + r.dummies, 1024);
    }

    // Query: every pool ID plus unknown ones.
    let before_query = alliance.recording.lock().unwrap().len();
    let mut ids: Vec<String> = (0..pool).map(id).collect();
    ids.push("NOBODY-1".into());
    ids.push("NOBODY-2".into());
    let q = &alliance.clients[3];
    let answers = query(&OverTransport(q), S, &ids, &alliance.source("q"))
        .await
        .unwrap();
    let sums = plaintext_sums(&data);
    for (i, a) in ids.iter().zip(&answers) {
        let want = sums.get(i).copied().unwrap_or([0; 4]);
        assert_eq!(
            [a.blacklisted, a.loans, a.amount, a.overdue],
            want,
            "ID {i}"
        );
        assert_eq!(a.queried_by, 1);
    }
    assert_eq!(
        answers[pool],
        Answer {
            queried_by: 1,
            ..Answer::default()
        }
    );

    let rec = alliance.recording.lock().unwrap().clone();
    // No raw ID, and no unkeyed hash of an ID, ever crosses the wire.
    for i in &ids {
        assert!(
            !recording_contains(&alliance.recording, i.as_bytes()),
            "raw ID {i} leaked"
        );
        let p = oprf::hash_to_group(i.as_bytes()).compress().to_bytes();
        assert!(
            !recording_contains(&alliance.recording, &p),
            "HashToGroup({i}) leaked"
        );
    }
    // Holders never talk to each other, and receive nothing during the query.
    for m in &rec {
        if holders_names.contains(&m.from.as_str()) {
            assert!(S.contains(&m.to.as_str()), "{} sent to {}", m.from, m.to);
        }
    }
    let during = &rec[before_query..];
    assert!(
        during
            .iter()
            .all(|m| !holders_names.contains(&m.to.as_str()))
    );
    // The querier receives, from each node, one evaluation and one answer message; each answer
    // is one share per field and ID.
    let to_q: Vec<_> = during.iter().filter(|m| m.to == "q").collect();
    assert_eq!(to_q.len(), 4);
    for node in S {
        let msgs: Vec<Response> = to_q
            .iter()
            .filter(|m| m.from == node)
            .map(|m| Response::decode(&m.bytes).unwrap())
            .collect();
        assert!(matches!(&msgs[0], Response::Eval(e) if e.len() == ids.len()));
        match &msgs[1] {
            Response::Query(shares) => assert_eq!(shares.len(), ids.len()),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The answer shares of an unknown applicant are random-looking, not zeros.
    let share_of = |node: &str| match Response::decode(
        &to_q
            .iter()
            .find(|m| m.from == node && m.bytes[1] == 0x83)
            .unwrap()
            .bytes,
    )
    .unwrap()
    {
        Response::Query(s) => s[pool],
        _ => unreachable!(),
    };
    assert_ne!(share_of("s0"), [0; 5]);
    drop(rec);
    alliance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingest_replaces_and_queried_by_counts_distinct_members() {
    let alliance = Alliance::start(&["h1", "h2", "qa", "qb"]);
    let h1 = OverTransport(&alliance.clients[0]);
    let h2 = OverTransport(&alliance.clients[1]);
    let rec = |id: &str, v: [u64; 4]| RiskRecord {
        id: id.into(),
        values: v,
    };
    ingest(
        &h1,
        S,
        &[rec("alice", [1, 2, 300, 1]), rec("bob", [0, 1, 50, 0])],
        &alliance.source("h1"),
    )
    .await
    .unwrap();
    ingest(
        &h2,
        S,
        &[rec("alice", [0, 1, 20, 0])],
        &alliance.source("h2"),
    )
    .await
    .unwrap();
    // h1 re-ingests: alice changes, bob disappears.
    ingest(
        &h1,
        S,
        &[rec("alice", [0, 1, 100, 0])],
        &alliance.source("h1"),
    )
    .await
    .unwrap();

    let qa = OverTransport(&alliance.clients[2]);
    let qb = OverTransport(&alliance.clients[3]);
    let ids = ["alice", "bob"];
    let a1 = query(&qa, S, &ids, &alliance.source("qa")).await.unwrap();
    assert_eq!(
        a1[0],
        Answer {
            blacklisted: 0,
            loans: 2,
            amount: 120,
            overdue: 0,
            queried_by: 1
        }
    );
    assert_eq!(
        a1[1],
        Answer {
            queried_by: 1,
            ..Answer::default()
        }
    );
    let b1 = query(&qb, S, &ids[..1], &alliance.source("qb"))
        .await
        .unwrap();
    assert_eq!(b1[0].queried_by, 2);
    // Asking again does not count twice.
    let a2 = query(&qa, S, &ids[..1], &alliance.source("qa"))
        .await
        .unwrap();
    assert_eq!(a2[0].queried_by, 2);
    assert_eq!(a2[0].amount, 120);
    alliance.shutdown().await;
}

/// Builds an evaluation request for `ids` with the given evidence.
fn eval_request(ids: &[&str], evidence: Vec<u8>) -> (Request, [u8; 32]) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let batch = BlindedBatch::new(ids, 0, &mut rng).unwrap();
    let hash = blinded_points_hash(Purpose::Query, batch.elements());
    (
        Request::Eval {
            purpose: Purpose::Query,
            evidence,
            elements: batch.elements().to_vec(),
        },
        hash,
    )
}

#[test]
fn unlogged_and_replayed_evaluations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(MockLog::default());
    let (n0, _n1, _) = nodes(dir.path(), &log, 5);
    let decode = |b: Vec<u8>| Response::decode(&b).unwrap();

    // Unlogged: evidence that the log never saw.
    let (req, hash) = eval_request(&["alice"], b"forged".to_vec());
    match decode(n0.handle("q", &req.encode())) {
        Response::Error(e) => assert!(
            e.contains("audit gate refused") && e.contains("no such logged entry"),
            "{e}"
        ),
        r => panic!("evaluated an unlogged request: {r:?}"),
    }
    // Logged for other elements: refused.
    let other = log.log("q", &[9; 32]);
    let (req, _) = eval_request(&["alice"], other);
    assert!(
        matches!(decode(n0.handle("q", &req.encode())), Response::Error(e) if e.contains("does not bind"))
    );
    // Logged by another member: refused.
    let (req, _) = eval_request(&["alice"], log.log("mallory", &hash));
    assert!(matches!(
        decode(n0.handle("q", &req.encode())),
        Response::Error(_)
    ));

    // Properly logged: evaluated once...
    let (req, _) = eval_request(&["alice"], log.log("q", &hash));
    assert!(matches!(decode(n0.handle("q", &req.encode())), Response::Eval(e) if e.len() == 1));
    // ...and refused when replayed.
    match decode(n0.handle("q", &req.encode())) {
        Response::Error(e) => assert!(e.contains("replayed"), "{e}"),
        r => panic!("replay evaluated: {r:?}"),
    }
    // Replay protection survives a restart (it lives in redb).
    drop(n0);
    drop(_n1);
    let (n0, _n1, _) = nodes(dir.path(), &log, 5);
    assert!(
        matches!(decode(n0.handle("q", &req.encode())), Response::Error(e) if e.contains("replayed"))
    );
    // Garbage is an error response, never a panic.
    assert!(matches!(
        decode(n0.handle("q", &[1, 0x01, 2, 3])),
        Response::Error(_)
    ));
}

#[test]
fn ingest_protocol_errors_are_refused_without_changing_sums() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(MockLog::default());
    let (n0, _n1, _) = nodes(dir.path(), &log, 9);
    let row = ([1u8; 64], [1, 1, 1, 1]);
    let e = n0.ingest_rows("h", 1, &[row]).unwrap_err().to_string();
    assert!(e.contains("no upload in progress"), "{e}");
    n0.ingest_begin("h", 1, 2).unwrap();
    assert!(
        n0.ingest_rows("h", 2, &[row])
            .unwrap_err()
            .to_string()
            .contains("upload in progress is 1")
    );
    n0.ingest_rows("h", 1, &[row]).unwrap();
    let e = n0.ingest_commit("h", 1).unwrap_err().to_string();
    assert!(e.contains("1 of 2 rows"), "{e}");
    assert!(
        n0.ingest_rows("h", 1, &[row, row])
            .unwrap_err()
            .to_string()
            .contains("announced 2")
    );
    assert_eq!(n0.index().shares_of(&[1; 64]).unwrap(), None);
    n0.ingest_rows("h", 1, &[row]).unwrap();
    assert_eq!(n0.ingest_commit("h", 1).unwrap(), 2);
    // Same tag twice in one upload adds up.
    assert_eq!(n0.index().shares_of(&[1; 64]).unwrap(), Some([2, 2, 2, 2]));
    // A new upload that is begun but never committed leaves the sums alone.
    n0.ingest_begin("h", 2, 1).unwrap();
    n0.ingest_rows("h", 2, &[([1; 64], [5; 4])]).unwrap();
    assert_eq!(n0.index().shares_of(&[1; 64]).unwrap(), Some([2, 2, 2, 2]));
    assert!(n0.ingest_begin("", 3, 1).is_err());
}
