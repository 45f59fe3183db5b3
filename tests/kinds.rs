//! Every job kind over the in-process kit: three daemons in this test process on loopback
//! listeners (`confide::kit`), driven through the CLI's own submit path.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{add_dataset, channel_as, edit_config};
use confide::cli::submit::{Show, request, submit_with};
use confide::kinds::{JobOptions, netcheck, predict, psi, risk_ingest, risk_query, train};
use confide::kit::LocalAlliance;
use confide_proto::DatasetRef;

fn peer(party: &str, dataset: &str) -> DatasetRef {
    DatasetRef {
        party: party.into(),
        dataset: dataset.into(),
    }
}

/// Writes `csv` to a file and declares it as `party`'s dataset `name`.
fn dataset(dir: &Path, party: &str, name: &str, csv: &str, id: &str, allow: &str) {
    let path = dir.join(format!("{party}-{name}.csv"));
    std::fs::write(&path, csv).unwrap();
    add_dataset(dir, party, name, &path, id, allow);
}

/// Two numeric columns at alice (with the label) and two at bob; 300 common rows.
fn training_data(dir: &Path) {
    let mut a = String::from("id,y,a1,a2\n");
    let mut b = String::from("id,b1,b2\n");
    for i in 0..320u64 {
        let x = |k: u64| ((i * 7919 + k * 104_729) % 1000) as f64 / 100.0 - 5.0;
        let y = u8::from(x(1) + 0.5 * x(3) - 0.3 * x(2) > 0.0);
        if i < 310 {
            a.push_str(&format!("c{i:04},{y},{:.3},{:.3}\n", x(1), x(2)));
        }
        if i >= 10 {
            b.push_str(&format!("c{i:04},{:.3},{:.3}\n", x(3), x(4)));
        }
    }
    dataset(dir, "alice", "credit", &a, "id", "{ train = [\"bob\"] }");
    dataset(dir, "bob", "credit", &b, "id", "{ train = [\"alice\"] }");
}

async fn job(
    a: &LocalAlliance,
    who: &str,
    opts: JobOptions,
    dataset: &str,
    peers: Vec<DatasetRef>,
    output: Option<&Path>,
) -> Result<(String, serde_json::Value), String> {
    let cfg = a.config(who).map_err(|e| e.to_string())?;
    submit_with(&cfg, request(&opts, dataset, peers, output), Show::Quiet)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_runs_in_process() {
    let (dir, tmp) = LocalAlliance::create(None, 0).unwrap();
    dataset(
        &dir,
        "alice",
        "customers",
        "phone\n1\n2\n3\n4\n",
        "phone",
        "{ psi = [\"bob\", \"carol\"] }",
    );
    dataset(
        &dir,
        "bob",
        "customers",
        "phone\n3\n4\n5\n",
        "phone",
        "{ psi = [\"alice\"] }",
    );
    dataset(
        &dir,
        "carol",
        "customers",
        "phone\n4\n",
        "phone",
        "{ psi = [] }",
    );
    training_data(&dir);
    let loans = "id,blacklisted,loans,amount,overdue\nA1,1,2,500,0\nA2,0,1,100,1\n";
    dataset(
        &dir,
        "carol",
        "loans",
        loans,
        "id",
        "{ risk = [\"s0\", \"s1\"] }",
    );
    let a = LocalAlliance::start(dir.clone(), tmp).await.unwrap();

    // netcheck: every pair exchanges the rounds.
    let (_, r) = job(
        &a,
        "alice",
        JobOptions::Netcheck(netcheck::Opts {
            rounds: 4,
            size: 100,
            interval_ms: 0,
        }),
        "",
        vec![peer("bob", ""), peer("carol", "")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r["rounds"], 4);
    // Bounds are checked once, where the options enter the daemon.
    let e = job(
        &a,
        "alice",
        JobOptions::Netcheck(netcheck::Opts {
            rounds: 1,
            size: netcheck::MAX_SIZE + 1,
            interval_ms: 0,
        }),
        "",
        vec![peer("bob", "")],
        None,
    )
    .await
    .unwrap_err();
    assert!(e.contains("exceeds"), "{e}");

    // psi: the intersection at the initiator; carol's policy refuses alice.
    let out = dir.join("matched.csv");
    let (_, r) = job(
        &a,
        "alice",
        JobOptions::Psi(psi::Opts::default()),
        "customers",
        vec![peer("bob", "customers")],
        Some(&out),
    )
    .await
    .unwrap();
    assert_eq!(r["intersection_size"], 2);
    let mut got: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(String::from)
        .collect();
    got.sort();
    assert_eq!(got, ["3", "4"]);
    let e = job(
        &a,
        "alice",
        JobOptions::Psi(psi::Opts::default()),
        "customers",
        vec![peer("carol", "customers")],
        Some(&out),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("refused") && e.contains("does not allow `alice`"),
        "{e}"
    );

    // train (kept shared) then predict with the shared model; carol is the dealer.
    let (model, r) = job(
        &a,
        "alice",
        JobOptions::Train(train::Opts {
            epochs: 2,
            batch_size: 64,
            learning_rate: Some(0.1),
            keep_shared: true,
            ..train::Opts::new("y", 5, "carol")
        }),
        "credit",
        vec![peer("bob", "credit"), peer("carol", "")],
        Some(&dir.join("model.json")),
    )
    .await
    .unwrap();
    assert_eq!(r["common_rows"], 300);
    assert!(r["shared_model"].is_string(), "{r}");
    let meta =
        confide::kinds::train_common::read_meta(&a.config("alice").unwrap(), &model).unwrap();
    let scores = dir.join("scores.csv");
    let (_, r) = job(
        &a,
        "alice",
        JobOptions::Predict(predict::Opts {
            model: model.clone(),
            active: "alice".into(),
            passive: "bob".into(),
            dealer: "carol".into(),
            frac_bits: meta.frac_bits,
            trees: None,
            depth: None,
        }),
        "credit",
        vec![peer("bob", "credit"), peer("carol", "")],
        Some(&scores),
    )
    .await
    .unwrap();
    assert_eq!(r["common_rows"], 300);
    assert_eq!(
        std::fs::read_to_string(&scores).unwrap().lines().count(),
        301
    );

    // risk-ingest at carol, risk-query at carol: the dedicated nodes (s0, s1) answer the sums.
    let (_, r) = job(
        &a,
        "carol",
        JobOptions::RiskIngest(risk_ingest::Opts {}),
        "loans",
        vec![],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r["rows"], 2);
    let (_, r) = job(
        &a,
        "carol",
        JobOptions::RiskQuery(risk_query::Opts {
            ids: vec!["A1".into(), "nobody".into()],
        }),
        "",
        vec![],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r["answers"][0], serde_json::json!([1, 2, 500, 0, 1]));
    assert_eq!(r["answers"][1], serde_json::json!([0, 0, 0, 0, 1]));
    // Risk jobs run at the initiator alone.
    let e = job(
        &a,
        "carol",
        JobOptions::RiskQuery(risk_query::Opts {
            ids: vec!["A1".into()],
        }),
        "",
        vec![peer("alice", "")],
        None,
    )
    .await
    .unwrap_err();
    assert!(e.contains("takes no peers"), "{e}");

    // Every kind appears in the job table, and the chain records predict as predict.
    let cfg = a.config("alice").unwrap();
    let mut ctl = confide::net::client::control(&cfg).await.unwrap();
    let jobs = ctl
        .list_jobs(confide_proto::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    for k in ["netcheck", "psi", "train", "predict"] {
        assert!(jobs.iter().any(|j| j.kind == k), "no {k} job in {jobs:?}");
    }
    let cfg = a.config("carol").unwrap();
    let mut ctl = confide::net::client::control(&cfg).await.unwrap();
    let jobs = ctl
        .list_jobs(confide_proto::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    for k in ["risk-ingest", "risk-query"] {
        assert!(
            jobs.iter().any(|j| j.kind == k && j.state == 3),
            "no {k} job in {jobs:?}"
        );
    }
    a.wait_audit_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    let mut au = confide::net::client::audit(&a.config("bob").unwrap())
        .await
        .unwrap();
    let log = au
        .log(confide_proto::LogRequest {
            summary: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let v: serde_json::Value = serde_json::from_str(&log).unwrap();
    let kinds: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in ["psi", "train", "predict", "risk-ingest", "risk-query"] {
        assert!(kinds.contains(&k), "no {k} entry on the chain: {kinds:?}");
    }
    a.stop().await;
}

/// Opens a `Peer.Stream` to `to` as `me` for `job` and returns the status it ends with.
async fn open_stream_as(a: &LocalAlliance, me: &str, to: &str, job: &str) -> tonic::Status {
    let ch = channel_as(&a.config(me).unwrap(), to).await;
    let mut req = tonic::Request::new(futures::stream::pending::<confide_proto::Frame>());
    req.metadata_mut()
        .insert(confide_proto::JOB_HEADER, job.parse().unwrap());
    match confide_proto::peer_client::PeerClient::new(ch)
        .stream(req)
        .await
    {
        Ok(_) => tonic::Status::ok("accepted"),
        Err(s) => s,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_for_unknown_jobs_or_outsiders_are_refused() {
    let (dir, tmp) = LocalAlliance::create(None, 0).unwrap();
    for p in ["alice", "bob", "carol"] {
        edit_config(&dir, p, "peer_timeout_secs = 15", "peer_timeout_secs = 1");
    }
    let a = LocalAlliance::start(dir, tmp).await.unwrap();
    // No such job at alice.
    let s = open_stream_as(&a, "bob", "alice", "00112233445566778899aabb").await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    // A live job between alice and bob: carol is not a party of it.
    let cfg = a.config("alice").unwrap();
    let opts = JobOptions::Netcheck(netcheck::Opts {
        rounds: 1000,
        size: 10,
        interval_ms: 20,
    });
    let mut ctl = confide::net::client::control(&cfg).await.unwrap();
    let mut events = ctl
        .submit(request(&opts, "", vec![peer("bob", "")], None))
        .await
        .unwrap()
        .into_inner();
    let job = events.message().await.unwrap().unwrap().job_id;
    let s = open_stream_as(&a, "carol", "alice", &job).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("not a party"), "{s:?}");
    ctl.cancel_job(confide_proto::CancelJobRequest { job_id: job })
        .await
        .unwrap();
    a.stop().await;
}

/// A multi-party PSI runs only if every party's policy allows every other participant
/// (each learns at least the set sizes); the refusal names who is not allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_party_psi_needs_every_participants_consent() {
    let (dir, tmp) = LocalAlliance::create(None, 0).unwrap();
    let all = "{ psi = [\"alice\", \"bob\", \"carol\"] }";
    dataset(&dir, "alice", "c", "id\n1\n2\n3\n", "id", all);
    dataset(&dir, "bob", "c", "id\n2\n3\n", "id", all);
    // carol consents to alice (the initiator) but not to bob.
    dataset(&dir, "carol", "c", "id\n3\n", "id", "{ psi = [\"alice\"] }");
    dataset(&dir, "carol", "open", "id\n3\n", "id", all);
    let a = LocalAlliance::start(dir.clone(), tmp).await.unwrap();
    let out = dir.join("abc.csv");
    let e = job(
        &a,
        "alice",
        JobOptions::Psi(psi::Opts::default()),
        "c",
        vec![peer("bob", "c"), peer("carol", "c")],
        Some(&out),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("refused") && e.contains("does not allow psi for `bob`"),
        "{e}"
    );
    // Two parties: carol's consent to alice is enough.
    let (_, r) = job(
        &a,
        "alice",
        JobOptions::Psi(psi::Opts::default()),
        "c",
        vec![peer("carol", "c")],
        Some(&out),
    )
    .await
    .unwrap();
    assert_eq!(r["intersection_size"], 1);
    // With everyone's consent the three-party job runs.
    let (_, r) = job(
        &a,
        "alice",
        JobOptions::Psi(psi::Opts::default()),
        "c",
        vec![peer("bob", "c"), peer("carol", "open")],
        Some(&out),
    )
    .await
    .unwrap();
    assert_eq!(r["intersection_size"], 1);
    a.stop().await;
}

/// The audit entry of a job commits to each party's dataset with a salt of that party's,
/// fresh per job: the initiator's record holds bob's commitment, never the bare hash of
/// bob's file; only the job's initiator can collect a commitment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dataset_commitments_are_salted_per_job() {
    use confide::audit::commitment::{METHOD, dataset_commitment};
    use sha2::{Digest, Sha256};
    let (dir, tmp) = LocalAlliance::create(None, 0).unwrap();
    let all = "{ psi = [\"alice\", \"bob\", \"carol\"] }";
    dataset(&dir, "alice", "c", "id\n1\n2\n3\n", "id", all);
    dataset(&dir, "bob", "c", "id\n2\n3\n", "id", all);
    let bob_file = Sha256::digest(std::fs::read(dir.join("bob-c.csv")).unwrap());
    let a = LocalAlliance::start(dir.clone(), tmp).await.unwrap();
    let alice_dir = a.config("alice").unwrap().party.data_dir;
    let bob_dir = a.config("bob").unwrap().party.data_dir;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = dir.join("ab.csv");
        let (job_id, r) = job(
            &a,
            "alice",
            JobOptions::Psi(psi::Opts::default()),
            "c",
            vec![peer("bob", "c")],
            Some(&out),
        )
        .await
        .unwrap();
        assert_eq!(r["intersection_size"], 2);
        let read = |p: std::path::PathBuf| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let opening = read(bob_dir.join(format!("audit-salts/{job_id}.dataset.json")));
        let mut salt = [0u8; 32];
        hex::decode_to_slice(opening["salt"].as_str().unwrap(), &mut salt).unwrap();
        assert_eq!(opening["content_sha256"], hex::encode(bob_file));
        let c = dataset_commitment(&job_id, &salt, &bob_file.into());
        assert_eq!(opening["commitment"], hex::encode(c));
        let record = read(alice_dir.join(format!("audit-salts/{job_id}.json")));
        let request = record["request"].as_str().unwrap();
        assert!(
            request.contains(&hex::encode(c)),
            "bob's commitment anchored"
        );
        assert!(
            !request.contains(&hex::encode(bob_file)),
            "the bare hash of bob's file reached the initiator"
        );
        seen.push((job_id, c));
    }
    assert_ne!(seen[0].1, seen[1].1, "two jobs on one file: unlinkable");
    // carol did not initiate the job: bob does not hand her its commitment.
    let ch = channel_as(&a.config("carol").unwrap(), "bob").await;
    let s = confide_proto::peer_client::PeerClient::new(ch)
        .call(confide_proto::CallRequest {
            method: METHOD.into(),
            job_id: seen[0].0.clone(),
            payload: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    a.stop().await;
}
