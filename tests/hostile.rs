//! Hostile inputs across real daemons (`confide serve` processes, one log file each).
//!
//! 1. Raw values of a party's dataset (an ID, a cell, a binary file's bytes, its file
//!    path; psi, train and risk-ingest jobs) never reach another party: not in an abort, a refusal, a status, the other
//!    daemons' logs, their job tables or the initiator's terminal. The initiator still
//!    learns who failed, the category and the line.
//! 2. Sizes a peer announces (a PSI set size, a training matrix shape, netcheck rounds)
//!    are refused before anything is allocated; the daemon stays up and its job's error
//!    names the peer. A proposal whose streams never arrive expires.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Daemon, add_dataset, at, channel_as, config, edit_config, new_alliance, path_str};
use confide::base::config::PartyConfig;
use confide_proto::peer_client::PeerClient;
use confide_proto::{DatasetRef, Frame, JobProposal};

const ID: &str = "PLANTED-ID-7f3a";
const CELL: &str = "PLANTED-CELL-991";
const BIN: &str = "PLANTED-BIN-5e1";
const PATH: &str = "PLANTED-PATH-c0de";
/// A figure of carol's risk dataset (carol's own log may show it).
const RISK: &str = "PLANTED-RISK-4b2";

/// Every planted marker.
const PLANTED: [&str; 4] = [ID, CELL, BIN, PATH];

/// Starts `party`'s daemon with its log (info and up) in `<log_dir>/<party>.log`.
fn serve_logged(dir: &Path, party: &str, log_dir: &Path) -> Daemon {
    let f = std::fs::File::create(log_dir.join(format!("{party}.log"))).unwrap();
    common::serve_with(dir, party, "info", Stdio::from(f))
}

fn log_of(log_dir: &Path, party: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(log_dir.join(format!("{party}.log"))).unwrap())
        .into_owned()
}

/// Everything `party` saw: its log and its job table.
fn seen_by(dir: &Path, log_dir: &Path, party: &str) -> String {
    let jobs = at(dir, party, &["jobs"]);
    format!(
        "{}\n{}{}",
        log_of(log_dir, party),
        common::stdout(&jobs),
        common::stderr(&jobs)
    )
}

fn assert_clean(what: &str, text: &str) {
    for m in PLANTED {
        assert!(!text.contains(m), "{what} contains `{m}`:\n{text}");
    }
    assert!(!text.contains('\0'), "{what} contains a NUL byte");
}

/// `train` at alice with bob's `dataset`; returns alice's terminal (stdout + stderr).
fn train_with(dir: &Path, out: &Path, dataset: &str) -> String {
    let peer = format!("bob:{dataset}");
    let o = at(
        dir,
        "alice",
        &[
            "train",
            "--dataset",
            "credit",
            "--peer",
            &peer,
            "--label",
            "y",
            "--output",
            path_str(out),
            "--epochs",
            "1",
            "--batch-size",
            "16",
        ],
    );
    assert!(!o.status.success(), "the job should fail");
    format!("{}{}", common::stdout(&o), common::stderr(&o))
}

#[test]
fn planted_values_never_leave_their_owner() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // bob's files live under a directory whose name is a marker.
    let bob_dir: PathBuf = root.path().join(PATH);
    std::fs::create_dir_all(&bob_dir).unwrap();
    let mut alice = String::from("id,y,a1\n");
    for i in 0..40 {
        alice.push_str(&format!("r{i},{},{}.5\n", i % 2, i % 7));
    }
    let a_path = root.path().join("alice.csv");
    std::fs::write(&a_path, alice).unwrap();
    add_dataset(
        &dir,
        "alice",
        "credit",
        &a_path,
        "id",
        "{ psi = [\"bob\"], train = [\"bob\"] }",
    );
    let allow = "{ psi = [\"alice\"], train = [\"alice\"] }";
    // A repeated ID on line 3.
    let dup = bob_dir.join("dup.csv");
    std::fs::write(&dup, format!("id,b1\n{ID},1\n{ID},2\nr3,4\n")).unwrap();
    add_dataset(&dir, "bob", "dup", &dup, "id", allow);
    // A cell that is not a number on line 3.
    let cell = bob_dir.join("cell.csv");
    std::fs::write(&cell, format!("id,b1\nr1,1\nr2,{CELL}\n")).unwrap();
    add_dataset(&dir, "bob", "cell", &cell, "id", allow);
    // A binary file: its first "row" (NULs, escapes, a marker) is read as the header.
    let bin = bob_dir.join("bin.csv");
    let mut bytes = b"\x00\x01\x1b[31m".to_vec();
    bytes.extend_from_slice(BIN.as_bytes());
    bytes.extend_from_slice(b"\x00,\xff\x00\n\x00\x00\x07\n");
    std::fs::write(&bin, bytes).unwrap();
    add_dataset(&dir, "bob", "bin", &bin, "id", allow);

    // carol's risk dataset: a figure that is not a number on line 3.
    let risk = root.path().join("carol-risk.csv");
    std::fs::write(
        &risk,
        format!("id,blacklisted,loans,amount,overdue\nk1,0,1,10,0\nk2,0,1,{RISK},0\n"),
    )
    .unwrap();
    add_dataset(
        &dir,
        "carol",
        "risk",
        &risk,
        "id",
        "{ risk = [\"alice\", \"bob\"] }",
    );

    let parties = ["alice", "bob", "carol"];
    let _d: Vec<Daemon> = parties
        .iter()
        .map(|p| serve_logged(&dir, p, &logs))
        .collect();
    common::wait_all_ok(&dir, &parties, Duration::from_secs(20));
    let out = root.path().join("out.csv");

    // A risk ingest fails at the holder (carol) before anything reaches the compute nodes.
    let o = at(&dir, "carol", &["risk", "ingest", "--dataset", "risk"]);
    assert!(!o.status.success(), "the ingest should fail");
    assert!(
        common::stderr(&o).contains("line 3"),
        "{}",
        common::stderr(&o)
    );

    // PSI with the binary file: bob refuses at the proposal.
    let o = common::psi(
        &dir,
        "alice",
        "credit",
        &["bob:bin"],
        &["--output", path_str(&out)],
    );
    assert!(!o.status.success());
    let psi_err = common::stderr(&o);
    assert!(
        psi_err.contains("`bob`") && psi_err.contains("no ID column"),
        "the initiator learns who and why: {psi_err}"
    );

    // Training: bob's data fails on line 3 once the job runs.
    let dup_err = train_with(&dir, &out, "dup");
    assert!(
        dup_err.contains("`bob`") && dup_err.contains("line 3: duplicate ID"),
        "{dup_err}"
    );
    let cell_err = train_with(&dir, &out, "cell");
    assert!(
        cell_err.contains("`bob`") && cell_err.contains("line 3: not a number"),
        "{cell_err}"
    );

    eprintln!("alice saw:\n{psi_err}{dup_err}{cell_err}");
    // Nothing planted reached alice (initiator) or carol (dealer).
    for (what, text) in [
        ("alice's terminal (psi)", &psi_err),
        ("alice's terminal (train, duplicate)", &dup_err),
        ("alice's terminal (train, cell)", &cell_err),
    ] {
        assert_clean(what, text);
    }
    assert_clean("alice's log and jobs", &seen_by(&dir, &logs, "alice"));
    assert_clean("carol's log and jobs", &seen_by(&dir, &logs, "carol"));
    // The compute nodes saw nothing of carol's failed ingest.
    for node in ["alice", "bob"] {
        let seen = seen_by(&dir, &logs, node);
        assert!(!seen.contains(RISK), "{node} saw carol's `{RISK}`:\n{seen}");
    }
    // bob keeps the full story locally (so the checks above can fail).
    let bob = seen_by(&dir, &logs, "bob");
    for m in [ID, CELL, PATH] {
        assert!(
            bob.contains(m),
            "bob's own log/jobs should name `{m}`:\n{bob}"
        );
    }
}

/// Proposes `kind` with `options` from `me` (the test holds its certificate) to `to`.
async fn propose(
    cfg: &PartyConfig,
    to: &str,
    job: &str,
    kind: &str,
    options: &str,
    parties: &[(&str, &str)],
) -> confide_proto::ProposalReply {
    let mut c = PeerClient::new(channel_as(cfg, to).await);
    c.propose(JobProposal {
        job_id: job.into(),
        kind: kind.into(),
        parties: parties
            .iter()
            .map(|(p, d)| DatasetRef {
                party: p.to_string(),
                dataset: d.to_string(),
            })
            .collect(),
        options_json: options.into(),
        deadline_unix_ms: confide::base::ids::now_ms() + 60_000,
    })
    .await
    .expect("propose")
    .into_inner()
}

/// The two ends of a stream the test holds open.
type Held = (
    tokio::sync::mpsc::Sender<Frame>,
    Option<tonic::Response<tonic::Streaming<Frame>>>,
);

/// Opens the job's stream to `to` as `cfg`'s party and sends `msgs`; the stream stays
/// open while the returned ends live.
async fn stream_as(cfg: &PartyConfig, to: &str, job: &str, msgs: Vec<Vec<u8>>) -> Held {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for m in msgs {
        tx.send(Frame { payload: m }).await.unwrap();
    }
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert(confide_proto::JOB_HEADER, job.parse().unwrap());
    let mut c = PeerClient::new(channel_as(cfg, to).await);
    (tx, c.stream(req).await.ok())
}

/// Waits until `party`'s job `job` is no longer running; returns its `confide jobs` line.
fn wait_job_done(dir: &Path, party: &str, job: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let o = at(dir, party, &["jobs"]);
        let s = common::stdout(&o);
        if let Some(l) = s.lines().find(|l| l.contains(job))
            && !l.contains("running")
            && !l.contains("queued")
        {
            eprintln!("{party}: {l}");
            return l.to_string();
        }
        assert!(
            started.elapsed() < within,
            "job {job} at {party} never ended:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_announcements_are_refused_and_the_daemon_stays_up() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    edit_config(
        &dir,
        "bob",
        "peer_timeout_secs = 15",
        "peer_timeout_secs = 2",
    );
    let b_path = root.path().join("bob.csv");
    std::fs::write(&b_path, "id,b1\nr1,1\nr2,2\n").unwrap();
    add_dataset(
        &dir,
        "bob",
        "d",
        &b_path,
        "id",
        "{ psi = [\"alice\"], train = [\"alice\"] }",
    );
    let a_path = root.path().join("alice.csv");
    std::fs::write(&a_path, "id,y\nr1,1\n").unwrap();
    add_dataset(&dir, "alice", "d", &a_path, "id", "{ psi = [\"bob\"] }");
    let parties = ["alice", "bob", "carol"];
    let _d: Vec<Daemon> = parties.iter().map(|p| common::serve(&dir, p)).collect();
    common::wait_all_ok(&dir, &parties, Duration::from_secs(20));
    let alice = PartyConfig::load(&config(&dir, "alice")).unwrap();
    let bob = PartyConfig::load(&config(&dir, "bob")).unwrap();

    // netcheck: rounds and size beyond the limits are refused at the proposal.
    let r = propose(
        &alice,
        "bob",
        "0000000000000000000000a1",
        "netcheck",
        r#"{"rounds": 18446744073709551615, "size": 1099511627776}"#,
        &[("alice", ""), ("bob", "")],
    )
    .await;
    assert!(!r.accepted && r.reason.contains("exceeds"), "{r:?}");

    // psi, on ECDH and on KKRT (the two-party default): alice announces 2^60 IDs in a
    // hello that is otherwise valid.
    let ecdh_hello = confide_psi::wire::hello(0, 2, &[0; 32], 1 << 60);
    let kkrt_hello = confide_psi::kkrt::hello(
        confide_psi::OutputMode::Initiator,
        "alice",
        "bob",
        1 << 60,
        7,
    );
    let mut keep = Vec::new();
    for (job, opts, hello) in [
        (
            "0000000000000000000000a2",
            r#"{"protocol": "ecdh"}"#,
            ecdh_hello,
        ),
        ("0000000000000000000000a5", "", kkrt_hello),
    ] {
        let parties = [("alice", "d"), ("bob", "d")];
        let r = propose(&alice, "bob", job, "psi", opts, &parties).await;
        assert!(r.accepted, "{r:?}");
        keep.push(stream_as(&alice, "bob", job, vec![hello]).await);
        let line = wait_job_done(&dir, "bob", job, Duration::from_secs(20));
        assert!(
            line.contains("failed") && line.contains("`alice`") && line.contains("announced a set"),
            "{line}"
        );
    }

    // train: carol is the dealer; "alice" and "bob" announce a huge matrix.
    let job = "0000000000000000000000a3";
    let opts = r#"{"label": "y", "seed": 1, "dealer": "carol"}"#;
    let carol_parties = [("alice", "d"), ("bob", "d"), ("carol", "")];
    let r = propose(&alice, "carol", job, "train", opts, &carol_parties).await;
    assert!(r.accepted, "{r:?}");
    let huge = |rows: u64, cols: u64| {
        format!(r#"{{"rows":{rows},"cols":{cols},"features":[],"params":"","error":null}}"#)
            .into_bytes()
    };
    let _ka = stream_as(&alice, "carol", job, vec![huge(1 << 40, 1 << 30)]).await;
    let _kb = stream_as(&bob, "carol", job, vec![huge(1 << 40, 1 << 30)]).await;
    let line = wait_job_done(&dir, "carol", job, Duration::from_secs(20));
    assert!(
        line.contains("failed") && line.contains("announced") && line.contains("`alice`"),
        "{line}"
    );

    // A proposal whose stream never arrives expires (peer_timeout_secs = 2 at bob).
    let job = "0000000000000000000000a4";
    let r = propose(
        &alice,
        "bob",
        job,
        "psi",
        "",
        &[("alice", "d"), ("bob", "d")],
    )
    .await;
    assert!(r.accepted, "{r:?}");
    let line = wait_job_done(&dir, "bob", job, Duration::from_secs(20));
    assert!(
        line.contains("failed") && line.contains("did not join"),
        "{line}"
    );

    // Every daemon is still up.
    for p in parties {
        common::wait_status_ok(&dir, p, Duration::from_secs(5));
    }
}
