//! Joint risk queries across real daemons.
//!
//! * Dedicated compute nodes (the default: `s0`, `s1` hold no data): holders ingest, a lender
//!   queries; a node that tries to ingest or query is refused at its own daemon and by the
//!   other node; per-query latency is printed.
//! * An alliance that accepts nodes holding data (`compute_nodes_may_hold_data = true`;
//!   alice and bob are the nodes, alice the audit sequencer): three holders ingest random
//!   data; answers equal the plaintext sums; unknown IDs give zeros; re-ingest replaces;
//!   unlogged, replayed and mislabelled evaluation requests are refused; the rate limit, the
//!   ingest policy and bad CSV files give clear one-line errors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use confide::audit::evidence::{RISK_EVIDENCE_FORMAT, RiskEvidence};
use confide::base::config::PartyConfig;
use confide_audit::{
    Entry, EntryBody, Genesis, InclusionPromise, JobKind, ProofBundle, fingerprint, new_salt,
};
use confide_proto::audit_client::AuditClient;
use confide_proto::peer_client::PeerClient;
use confide_proto::{AppendRequest, CallRequest, ProveRequest};
use confide_risk::{Purpose, Request, Response, blinded_points_hash};

type Sums = BTreeMap<String, [u64; 4]>;

/// Writes a random risk CSV (header `customer,...`) over IDs C0..C599; returns its rows.
fn write_random(path: &Path, rows: usize) -> Sums {
    let mut ids: Vec<u32> = (0..600).collect();
    // Fisher-Yates with rand's thread RNG: a random subset of `rows` IDs.
    for i in (1..ids.len()).rev() {
        let j = (rand::random::<u64>() % (i as u64 + 1)) as usize;
        ids.swap(i, j);
    }
    let mut out = Sums::new();
    let mut s = String::from("customer,blacklisted,loans,amount,overdue,branch\n");
    for &i in &ids[..rows] {
        let r: u64 = rand::random();
        let v = [
            r % 2,
            (r >> 8) % 6,
            (r >> 16) % 1_000_000_000_000, // < 2^40
            (r >> 60) % 3,
        ];
        s.push_str(&format!("C{i},{},{},{},{},x\n", v[0], v[1], v[2], v[3]));
        out.insert(format!("C{i}"), v);
    }
    std::fs::write(path, s).unwrap();
    out
}

fn total(holders: &[&Sums], id: &str) -> [u64; 4] {
    let mut t = [0u64; 4];
    for h in holders {
        if let Some(v) = h.get(id) {
            for k in 0..4 {
                t[k] += v[k];
            }
        }
    }
    t
}

fn query_one(dir: &Path, party: &str, id: &str) -> serde_json::Value {
    let out = ok(
        &at(dir, party, &["risk", "query", "--id", id]),
        &format!("query {id}"),
    );
    assert_eq!(out.trim().lines().count(), 1, "one JSON object: {out}");
    assert!(
        out.starts_with("{\"id\": "),
        "fields in the documented order: {out}"
    );
    serde_json::from_str(out.trim()).unwrap()
}

fn sums_of(v: &serde_json::Value) -> [u64; 4] {
    ["blacklisted", "loans", "amount", "overdue"].map(|k| v[k].as_u64().unwrap())
}

/// Queries a batch through `--ids-file` (IDs in the second column, named `id`).
fn query_batch(dir: &Path, party: &str, ids: &[String]) -> Vec<(String, [u64; 4], u64)> {
    let input = dir.join(format!("{party}-applicants.csv"));
    let output = dir.join(format!("{party}-answers.csv"));
    let mut s = String::from("note,id\n");
    for id in ids {
        s.push_str(&format!("n,{id}\n"));
    }
    std::fs::write(&input, s).unwrap();
    let args = [
        "risk",
        "query",
        "--ids-file",
        path_str(&input),
        "--output",
        path_str(&output),
    ];
    ok(&at(dir, party, &args), "batch");
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,blacklisted,loans,amount,overdue,queried_by")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            (f[0].to_string(), [n(1), n(2), n(3), n(4)], n(5))
        })
        .collect()
}

fn ingest(dir: &Path, party: &str, dataset: &str) -> std::process::Output {
    at(dir, party, &["risk", "ingest", "--dataset", dataset])
}

fn set_rate(dir: &Path, party: &str, per_minute: u32) {
    edit_config(
        dir,
        party,
        "risk_queries_per_minute = 1000",
        &format!("risk_queries_per_minute = {per_minute}"),
    );
}

/// A `Peer` client to `to` holding `me`'s certificate.
async fn peer_as(
    dir: &Path,
    me: &str,
    to: &str,
) -> (PeerClient<tonic::transport::Channel>, PartyConfig) {
    let cfg = PartyConfig::load(&config(dir, me)).unwrap();
    (PeerClient::new(channel_as(&cfg, to).await), cfg)
}

async fn node_call(c: &mut PeerClient<tonic::transport::Channel>, req: &Request) -> Response {
    let r = c
        .call(CallRequest {
            method: "risk.node".into(),
            job_id: "test".into(),
            payload: req.encode(),
        })
        .await
        .unwrap()
        .into_inner();
    Response::decode(&r.payload).unwrap()
}

fn error_of(r: Response) -> String {
    match r {
        Response::Error(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Logs a risk entry of `member` (kind `kind`) bound to `hash` through the sequencer, as the
/// member's daemon would, waits for the member to hold a final checkpoint covering it, and
/// returns the evidence bytes (entry, inclusion proof, promise, salt).
async fn log_entry(dir: &Path, member: &str, kind: JobKind, hash: [u8; 32]) -> Vec<u8> {
    let genesis = Genesis::load(dir.join("genesis.json")).unwrap();
    let key_hex = std::fs::read_to_string(dir.join(member).join("audit.key")).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(key_hex.trim(), &mut seed).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let salt = new_salt();
    let job_id = format!("by-test-{}", hex::encode(rand::random::<[u8; 8]>()));
    let body = EntryBody {
        timestamp_ms: 1,
        member: member.to_string(),
        kind,
        job_id: job_id.clone(),
        served_by: vec!["alice".into(), "bob".into()],
        fingerprint: fingerprint(&salt, &hash, b""),
    };
    let entry = Entry::create(body, &genesis.log_id(), &key).unwrap();
    let cfg = PartyConfig::load(&config(dir, member)).unwrap();
    let ch = channel_as(&cfg, &genesis.sequencer).await;
    let reply = AuditClient::new(ch)
        .append(AppendRequest {
            entry: entry.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let promise: InclusionPromise = serde_json::from_slice(&reply.promise).unwrap();
    // The member's own daemon proves the entry once a quorum has cosigned it.
    let mut own = AuditClient::new(channel_as(&cfg, member).await);
    let mut proof = None;
    for _ in 0..100 {
        let r = own
            .prove(ProveRequest {
                job_id: job_id.clone(),
            })
            .await;
        if let Ok(r) = r {
            proof = Some(serde_json::from_str::<ProofBundle>(&r.into_inner().bundle_json).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serde_json::to_vec(&RiskEvidence {
        format: RISK_EVIDENCE_FORMAT.into(),
        proof: proof.expect("a final checkpoint within 5 s"),
        promise,
        salt_hex: hex::encode(salt),
        blinded_hash_hex: hex::encode(hash),
    })
    .unwrap()
}

fn elements(n: usize) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            confide_risk::oprf::blind(format!("probe-{i}").as_bytes(), &mut rand::rng())
                .unwrap()
                .1
        })
        .collect()
}

async fn forged_and_replayed_requests_are_refused(dir: &Path) {
    // carol (a member, not a compute node) talks to bob (S1) directly.
    let (mut bob, _) = peer_as(dir, "carol", "bob").await;
    let els = elements(3);
    let eval = |evidence: Vec<u8>, elements: Vec<[u8; 32]>| Request::Eval {
        purpose: Purpose::Query,
        evidence,
        elements,
    };

    // Not logged at all: garbage evidence.
    let e = error_of(node_call(&mut bob, &eval(b"{}".to_vec(), els.clone())).await);
    assert!(e.contains("audit gate refused"), "{e}");

    // Logged, but for other blinded points.
    let other = blinded_points_hash(Purpose::Query, &elements(3));
    let ev = log_entry(dir, "carol", JobKind::RiskQuery, other).await;
    let e = error_of(node_call(&mut bob, &eval(ev, els.clone())).await);
    assert!(e.contains("does not commit to these blinded points"), "{e}");

    // Logged for exactly these points: served once, then refused as a replay.
    let hash = blinded_points_hash(Purpose::Query, &els);
    let ev = log_entry(dir, "carol", JobKind::RiskQuery, hash).await;
    match node_call(&mut bob, &eval(ev.clone(), els.clone())).await {
        Response::Eval(out) => assert_eq!(out.len(), 3),
        other => panic!("a logged request must be served: {other:?}"),
    }
    let e = error_of(node_call(&mut bob, &eval(ev.clone(), els.clone())).await);
    assert!(e.contains("replayed"), "{e}");
    // The same logged entry re-encoded (other bytes, same canonical entry) is a replay too.
    let v: serde_json::Value = serde_json::from_slice(&ev).unwrap();
    let mut reencoded = serde_json::to_vec_pretty(&v).unwrap();
    reencoded.extend_from_slice(b"\n ");
    assert_ne!(reencoded, ev);
    let e = error_of(node_call(&mut bob, &eval(reencoded, els.clone())).await);
    assert!(e.contains("replayed"), "{e}");

    // Someone else's evidence: alice's node refuses carol's entry presented by bob.
    let (mut alice_as_bob, _) = peer_as(dir, "bob", "alice").await;
    let e = error_of(node_call(&mut alice_as_bob, &eval(ev, els.clone())).await);
    assert!(e.contains("audit gate refused the request of `bob`"), "{e}");

    // An ingest entry cannot authorise a query evaluation.
    let hash = blinded_points_hash(Purpose::Query, &els);
    let ev = log_entry(dir, "carol", JobKind::RiskIngest, hash).await;
    let e = error_of(node_call(&mut bob, &eval(ev, els.clone())).await);
    assert!(e.contains("cannot authorise"), "{e}");

    // Only S1 gets the pair seed from S0; nobody drives another party's ingest or query.
    let (mut alice_as_carol, _) = peer_as(dir, "carol", "alice").await;
    let s = alice_as_carol
        .call(CallRequest {
            method: "risk.pair-seed".into(),
            job_id: String::new(),
            payload: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    // Queries are jobs on a party's own Control service: carol may not submit one at alice.
    let cfg = PartyConfig::load(&config(dir, "carol")).unwrap();
    let ch = channel_as(&cfg, "alice").await;
    let opts = confide::kinds::JobOptions::RiskQuery(confide::kinds::risk_query::Opts {
        ids: vec!["C1".into()],
    });
    let s = confide_proto::control_client::ControlClient::new(ch)
        .submit(confide::cli::submit::request(&opts, "", vec![], None))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    // And the old local-call path is gone: a peer call to `risk.query` is unknown.
    let s = alice_as_carol
        .call(CallRequest {
            method: "risk.query".into(),
            job_id: String::new(),
            payload: br#"{"ids":["C1"]}"#.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
}

#[test]
fn risk_queries_with_nodes_that_hold_data() {
    // Four members (quorum 3: every final checkpoint has a cosigner other than the node and
    // the caller); the nodes alice and bob also hold data, which this alliance accepts.
    let root = tempfile::tempdir().unwrap();
    let extra = ["--compute", "alice,bob"];
    let dir = init_with(
        &root.path().join("a"),
        "alice,bob,carol,dave",
        free_base_port(4),
        &extra,
    );
    let parties = ["alice", "bob", "carol"];
    let mut data: BTreeMap<&str, Sums> = BTreeMap::new();
    let mut csv: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for p in ["alice", "bob", "carol", "dave"] {
        let (off, on) = ("may_hold_data = false", "may_hold_data = true");
        edit_config(&dir, p, off, on);
    }
    for (k, p) in parties.iter().enumerate() {
        set_rate(&dir, p, 60);
        let path = root.path().join(format!("{p}-loans.csv"));
        data.insert(p, write_random(&path, 300 + 50 * k));
        add_dataset(
            &dir,
            p,
            "loans",
            &path,
            "customer",
            "{ risk = [\"alice\", \"bob\"] }",
        );
        csv.insert(p, path);
    }
    // carol's second dataset consents to alice only; bob has malformed files.
    add_dataset(
        &dir,
        "carol",
        "private",
        &csv["carol"],
        "customer",
        "{ risk = [\"alice\"] }",
    );
    let bad = |name: &str, text: &str| {
        let p = root.path().join(name);
        std::fs::write(&p, text).unwrap();
        add_dataset(
            &dir,
            "bob",
            name.trim_end_matches(".csv"),
            &p,
            "customer",
            "{ risk = [\"alice\", \"bob\"] }",
        );
    };
    bad(
        "negative.csv",
        "customer,blacklisted,loans,amount,overdue\nC1,0,1,5,0\nC2,0,-1,5,0\n",
    );
    bad(
        "fraction.csv",
        "customer,blacklisted,loans,amount,overdue\nC1,0,1,2.5,0\n",
    );
    bad(
        "nocolumn.csv",
        "customer,blacklisted,loans,amount\nC1,0,1,5\n",
    );
    bad(
        "huge.csv",
        "customer,blacklisted,loans,amount,overdue\nC1,0,1,1099511627776,0\n",
    );

    let _daemons = start(
        &dir,
        &["alice", "bob", "carol", "dave"],
        Duration::from_secs(30),
    );

    // 1. Every holder ingests (bob is S1, alice is S0 and holder at once).
    for p in parties {
        let o = ingest(&dir, p, "loans");
        assert!(o.status.success(), "ingest at {p}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!("contributed {} customers", data[p].len())),
            "{out}"
        );
    }

    // 2. Single queries by alice: IDs at 3, 2, 1 holders, and an unknown one.
    let all: Vec<&Sums> = data.values().collect();
    let count = |id: &str| all.iter().filter(|h| h.contains_key(id)).count();
    let universe: BTreeSet<String> = all.iter().flat_map(|h| h.keys().cloned()).collect();
    let mut probes: Vec<String> = (1..=3)
        .rev()
        .filter_map(|n| universe.iter().find(|id| count(id) == n).cloned())
        .collect();
    probes.push("NOT-A-CUSTOMER".into());
    for id in &probes {
        let v = query_one(&dir, "alice", id);
        assert_eq!(v["id"], id.as_str());
        assert_eq!(sums_of(&v), total(&all, id), "answer for {id}");
        assert_eq!(v["queried_by"], 1, "{v}");
    }
    // queried_by counts distinct members: carol now asks about alice's first probe.
    let v = query_one(&dir, "carol", &probes[0]);
    assert_eq!(sums_of(&v), total(&all, &probes[0]));
    assert_eq!(v["queried_by"], 2, "{v}");

    // 3. A batch file.
    let mut batch: Vec<String> = universe.iter().step_by(37).cloned().collect();
    batch.push("NOBODY".into());
    let answers = query_batch(&dir, "alice", &batch);
    assert_eq!(answers.len(), batch.len());
    for ((id, sums, qb), want) in answers.iter().zip(&batch) {
        assert_eq!(id, want);
        assert_eq!(*sums, total(&all, id), "batch answer for {id}");
        assert!(*qb >= 1);
    }

    // 4. Re-ingest replaces bob's contribution.
    let new_bob = write_random(&csv["bob"], 200);
    let o = ingest(&dir, "bob", "loans");
    assert!(o.status.success(), "re-ingest: {}", stderr(&o));
    data.insert("bob", new_bob);
    let all: Vec<&Sums> = data.values().collect();
    let batch: Vec<String> = universe.iter().skip(5).step_by(53).cloned().collect();
    for (id, sums, _) in query_batch(&dir, "alice", &batch) {
        assert_eq!(sums, total(&all, &id), "after re-ingest, {id}");
    }

    // 5. Forged, replayed and mislabelled evaluation requests.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(forged_and_replayed_requests_are_refused(&dir));

    // 6. Rate limit (60 IDs per minute here): carol has used 1 of 60.
    let big: Vec<String> = (0..61).map(|i| format!("C{i}")).collect();
    let path = dir.join("big.csv");
    std::fs::write(&path, format!("id\n{}\n", big.join("\n"))).unwrap();
    let q = |file: &Path| {
        at(
            &dir,
            "carol",
            &["risk", "query", "--ids-file", path_str(file)],
        )
    };
    assert_clean_error(&q(&path), "split it into smaller batches");
    std::fs::write(&path, format!("id\n{}\n", big[..50].join("\n"))).unwrap();
    let o = q(&path);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().count(),
        51,
        "CSV on stdout without --output"
    );
    std::fs::write(&path, format!("id\n{}\n", big[..30].join("\n"))).unwrap();
    assert_clean_error(&q(&path), "rate limit: member `carol` asked for 30 IDs");

    // 7. Policy and bad input.
    assert_clean_error(
        &ingest(&dir, "carol", "private"),
        "does not allow `bob` to run `risk` on dataset `private`",
    );
    assert_clean_error(&ingest(&dir, "bob", "nope"), "has no dataset `nope`");
    let o = ingest(&dir, "bob", "negative");
    assert_clean_error(&o, "line 3");
    assert!(stderr(&o).contains("`loans` must be a non-negative integer, got `-1`"));
    assert_clean_error(
        &ingest(&dir, "bob", "fraction"),
        "`amount` must be a non-negative integer",
    );
    assert_clean_error(&ingest(&dir, "bob", "nocolumn"), "missing column `overdue`");
    assert_clean_error(&ingest(&dir, "bob", "huge"), "not below 2^40");
    // A failed ingest left bob's contribution as it was.
    let id = &batch[0];
    let v = query_one(&dir, "alice", id);
    assert_eq!(sums_of(&v), total(&all, id));
}

#[test]
fn dedicated_compute_nodes_hold_no_data() {
    // `confide init`'s default for five parties: the last two (s0, s1) are the compute nodes.
    let (root, dir, _) = new_alliance("alice,bob,carol,s0,s1");
    let cfg = PartyConfig::load(&config(&dir, "alice")).unwrap();
    assert_eq!(cfg.alliance.compute, ["s0", "s1"]);
    assert!(!cfg.alliance.compute_nodes_may_hold_data);
    let mut data: BTreeMap<&str, Sums> = BTreeMap::new();
    for p in ["alice", "carol", "s0"] {
        let path = root.path().join(format!("{p}-loans.csv"));
        data.insert(p, write_random(&path, 200));
        add_dataset(
            &dir,
            p,
            "loans",
            &path,
            "customer",
            "{ risk = [\"s0\", \"s1\"] }",
        );
    }
    let parties = ["alice", "bob", "carol", "s0", "s1"];
    let _daemons = start(&dir, &parties, Duration::from_secs(30));
    for p in ["alice", "carol"] {
        ok(&ingest(&dir, p, "loans"), "ingest");
    }
    // A node may neither ingest nor query at its own daemon ...
    let why = "`s0` is a risk compute node and may not ingest: a node";
    assert_clean_error(&ingest(&dir, "s0", "loans"), why);
    let o = at(&dir, "s0", &["risk", "query", "--id", "C1"]);
    assert_clean_error(&o, "`s0` is a risk compute node and may not query");
    assert!(stderr(&o).contains("compute_nodes_may_hold_data"));
    // ... nor through the other node directly (whatever its evidence).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut s1, _) = peer_as(&dir, "s0", "s1").await;
        let els = elements(2);
        let hash = blinded_points_hash(Purpose::Ingest, &els);
        let ev = log_entry(&dir, "s0", JobKind::RiskIngest, hash).await;
        let req = Request::Eval {
            purpose: Purpose::Ingest,
            evidence: ev,
            elements: els,
        };
        let e = error_of(node_call(&mut s1, &req).await);
        assert!(e.contains("`s0` is a risk compute node"), "{e}");
    });
    // The holders' data is there; the refused node's is not.
    let holders: Vec<&Sums> = ["alice", "carol"].iter().map(|p| &data[p]).collect();
    let id = data["alice"].keys().next().unwrap().clone();
    let v = query_one(&dir, "bob", &id);
    assert_eq!(sums_of(&v), total(&holders, &id));
    // Per-query latency (the whole CLI call: process start, submit, log and wait for the
    // quorum checkpoint, evaluate, look up).
    let mut times: Vec<Duration> = (0..8)
        .map(|_| {
            let t = std::time::Instant::now();
            query_one(&dir, "bob", "NOT-A-CUSTOMER");
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "risk query latency (CLI, 8 runs): median {:?}, max {:?}",
        times[4], times[7]
    );
}
