//! Issue 13: every evaluation needs evidence and is rate limited (ingest included), lookups
//! need the evidence of an evaluated query entry, replays are recognised by the canonical entry,
//! and `queried_by` has a retention window measured on logged time, applied alike by both nodes.

mod common;

use std::sync::Arc;

use common::{MockGate, MockLog, nodes};
use confide_risk::codec::{Purpose, Request, Response};
use confide_risk::oprf::BlindedBatch;
use confide_risk::{Answer, ComputeNode, Limits, RiskError, blinded_points_hash};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Node = ComputeNode<MockGate>;

/// `n` fresh blinded elements.
fn elements(n: usize, seed: u64) -> Vec<[u8; 32]> {
    let ids: Vec<String> = (0..n).map(|i| format!("ID-{seed}-{i}")).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    BlindedBatch::new(&ids, 0, &mut rng)
        .unwrap()
        .elements()
        .to_vec()
}

/// `who` logs an entry (at the log's current time) for `n` elements and has `nodes` evaluate
/// them; returns the evidence and the hash it binds.
fn evaluated(
    log: &MockLog,
    nodes: &[&Node],
    who: &str,
    purpose: Purpose,
    n: usize,
) -> (Vec<u8>, [u8; 32]) {
    let els = elements(n, rand::random());
    let hash = blinded_points_hash(purpose, &els);
    let ev = log.log(who, &hash);
    for node in nodes {
        node.eval_blinded(who, purpose, &ev, &els).unwrap();
    }
    (ev, hash)
}

/// `who` asks both nodes about `tag` under a query entry logged at `t_secs`.
fn ask(n0: &Node, n1: &Node, log: &MockLog, who: &str, tag: [u8; 64], t_secs: u64) -> Answer {
    log.set_time_ms(t_secs * 1000);
    let (ev, hash) = evaluated(log, &[n0, n1], who, Purpose::Query, 1);
    let a = n0.lookup(who, &[3; 16], &ev, &hash, &[tag]).unwrap();
    let b = n1.lookup(who, &[3; 16], &ev, &hash, &[tag]).unwrap();
    // Each share alone is masked.
    assert_ne!(a[0][4], 0);
    Answer::from_shares(&a[0], &b[0])
}

fn lookup_err(node: &Node, who: &str, ev: &[u8], hash: &[u8; 32], n: usize) -> String {
    let tags: Vec<[u8; 64]> = (0..n as u8).map(|i| [i; 64]).collect();
    node.lookup(who, &[0; 16], ev, hash, &tags)
        .unwrap_err()
        .to_string()
}

#[test]
fn lookups_need_an_evaluated_query_entry_of_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let (n0, _n1, _) = nodes(dir.path(), &log, 21);
    let tag = [[1u8; 64]];

    // Forged evidence, on the wire too.
    let req = Request::Query {
        nonce: [0; 16],
        evidence: b"forged".to_vec(),
        blinded_points_hash: [0; 32],
        tags: tag.to_vec(),
    };
    match Response::decode(&n0.handle("q", &req.encode())).unwrap() {
        Response::Error(e) => assert!(e.contains("audit gate refused"), "{e}"),
        r => panic!("looked up without evidence: {r:?}"),
    }

    // Logged but never evaluated here.
    let els = elements(2, 1);
    let hash = blinded_points_hash(Purpose::Query, &els);
    let ev = log.log("q", &hash);
    let e = lookup_err(&n0, "q", &ev, &hash, 1);
    assert!(
        e.contains("no query evaluation under this logged entry"),
        "{e}"
    );

    // Evaluated (2 elements): covers 2 lookups by q, not by anyone else.
    n0.eval_blinded("q", Purpose::Query, &ev, &els).unwrap();
    assert_eq!(n0.index().lookups_left(&common::entry_id(&ev)).unwrap(), 2);
    let e = lookup_err(&n0, "mallory", &ev, &hash, 1);
    assert!(
        e.contains("audit gate refused the request of `mallory`"),
        "{e}"
    );
    let e = lookup_err(&n0, "q", &ev, &hash, 3);
    assert!(e.contains("covers 2 more lookups, 3 asked"), "{e}");
    n0.lookup("q", &[0; 16], &ev, &hash, &tag).unwrap();
    n0.lookup("q", &[0; 16], &ev, &hash, &tag).unwrap();
    let e = lookup_err(&n0, "q", &ev, &hash, 1);
    assert!(e.contains("no query evaluation"), "{e}");

    // An ingest evaluation authorises no lookup.
    let (ev, hash) = evaluated(&log, &[&n0], "h", Purpose::Ingest, 4);
    let e = lookup_err(&n0, "h", &ev, &hash, 1);
    assert!(e.contains("no query evaluation"), "{e}");
}

#[test]
fn every_evaluation_counts_against_the_rate_limit_ingest_included() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let (n0, _n1, _) = nodes(dir.path(), &log, 22);
    let n0 = n0.with_limits(Limits {
        query_ids_per_minute: 5,
        ingest_ids_per_hour: 4,
        ..Limits::default()
    });
    let eval = |who: &str, purpose, n| {
        let els = elements(n, rand::random());
        let hash = blinded_points_hash(purpose, &els);
        let ev = log.log(who, &hash);
        n0.eval_blinded(who, purpose, &ev, &els).map(|_| (ev, hash))
    };
    eval("h", Purpose::Ingest, 3).unwrap();
    let e = eval("h", Purpose::Ingest, 3).unwrap_err();
    assert!(
        matches!(e, RiskError::RateLimited { .. }) && e.to_string().contains("4 IDs per hour"),
        "{e}"
    );
    let (ev, hash) = eval("q", Purpose::Query, 3).unwrap();
    let e = eval("q", Purpose::Query, 3).unwrap_err().to_string();
    assert!(
        e.contains("rate limit") && e.contains("`q`") && e.contains("5 IDs per minute"),
        "{e}"
    );
    // Lookups were charged at evaluation: 3 tags with 2 tokens left is fine.
    n0.lookup("q", &[0; 16], &ev, &hash, &[[0; 64], [1; 64], [2; 64]])
        .unwrap();
    // Other members have their own buckets.
    eval("other", Purpose::Query, 5).unwrap();
    eval("other", Purpose::Ingest, 4).unwrap();
}

#[test]
fn a_re_encoded_entry_is_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let (n0, _n1, _) = nodes(dir.path(), &log, 23);
    let els = elements(2, 2);
    let hash = blinded_points_hash(Purpose::Query, &els);
    let ev = log.log("q", &hash);
    n0.eval_blinded("q", Purpose::Query, &ev, &els).unwrap();
    // The same logged entry, encoded with trailing bytes the gate ignores.
    let mut again = ev.clone();
    again.extend_from_slice(b"   ");
    assert_ne!(again, ev);
    let e = n0
        .eval_blinded("q", Purpose::Query, &again, &els)
        .unwrap_err();
    assert!(matches!(e, RiskError::Replay(_)), "{e}");
    // The lookup budget is the entry's too, whatever the encoding.
    n0.lookup("q", &[0; 16], &again, &hash, &[[0; 64]]).unwrap();
    n0.lookup("q", &[0; 16], &ev, &hash, &[[0; 64]]).unwrap();
    assert!(n0.lookup("q", &[0; 16], &again, &hash, &[[0; 64]]).is_err());
}

#[test]
fn queried_by_window_runs_on_logged_time_and_both_nodes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let (n0, n1, _) = nodes(dir.path(), &log, 24);
    let limits = Limits {
        retention_secs: 1000,
        ..Limits::default()
    };
    let (n0, n1) = (n0.with_limits(limits), n1.with_limits(limits));
    // Logged times far from the nodes' clocks: a node clock would see these all "now".
    let t = 1_000_000;
    let tag = [7u8; 64];
    let qb = |who, at| {
        let a = ask(&n0, &n1, &log, who, tag, at);
        assert_eq!([a.blacklisted, a.loans, a.amount, a.overdue], [0; 4]);
        a.queried_by
    };
    assert_eq!(qb("a", t), 1);
    assert_eq!(qb("b", t + 100), 2);
    // At t + 1050 the window starts at t + 50: a's query no longer counts, b's does.
    assert_eq!(qb("c", t + 1050), 2);
    // a asks again: counts again; b's (t + 100) is now out of the window (starts t + 200).
    assert_eq!(qb("a", t + 1200), 2);
    // Asking again does not count twice.
    assert_eq!(qb("a", t + 1201), 2);
    // Another tag is independent.
    let other = ask(&n0, &n1, &log, "c", [8; 64], t + 1300);
    assert_eq!(other.queried_by, 1);

    // Pruning flags older than any window still to come changes no answer.
    let cutoff = t + 2100 - 1000;
    assert_eq!(n0.index().prune_queries(cutoff).unwrap(), 2);
    assert_eq!(n1.index().prune_queries(cutoff).unwrap(), 2);
    assert_eq!(qb("d", t + 2100), 2);
}

#[test]
fn the_default_window_is_ninety_days() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let (n0, n1, _) = nodes(dir.path(), &log, 25);
    assert_eq!(Limits::default().retention_secs, 90 * 86_400);
    assert_eq!(n0.retention_secs(), 90 * 86_400);
    let day = 86_400;
    let t = 10_000 * day;
    let tag = [9u8; 64];
    assert_eq!(ask(&n0, &n1, &log, "a", tag, t).queried_by, 1);
    assert_eq!(ask(&n0, &n1, &log, "b", tag, t + 90 * day).queried_by, 2);
    assert_eq!(
        ask(&n0, &n1, &log, "c", tag, t + 90 * day + 1).queried_by,
        2
    );
}
