//! The audit chain across three real daemons: every PSI job is anchored, replicated to
//! every member within seconds and cosigned; `audit verify` passes everywhere; a proof
//! bundle checks offline and any tampering is rejected; a member that was down catches up.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A record a party keeps in `data_dir/audit-salts/`.
fn salt_record(dir: &Path, party: &str, file: &str) -> serde_json::Value {
    let path = dir.join(party).join("data").join("audit-salts").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `salt` of such a record.
fn salt_of(record: &serde_json::Value) -> [u8; 32] {
    hex::decode(record["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn jobs_are_anchored_replicated_and_provable_offline() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let data = write_ids(root.path(), 500);
    add_dataset(
        &dir,
        "alice",
        "ids",
        &data,
        "id",
        "{ psi = [\"bob\", \"carol\"] }",
    );
    add_dataset(
        &dir,
        "bob",
        "ids",
        &data,
        "id",
        "{ psi = [\"alice\", \"carol\"] }",
    );
    add_dataset(
        &dir,
        "carol",
        "ids",
        &data,
        "id",
        "{ psi = [\"alice\", \"bob\"] }",
    );
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    let mut carol = serve(&dir, "carol");
    wait_all_ok(&dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    // A size-only PSI job on `ids` started by `party` with `peer`; its job id.
    let psi_job = |party: &str, peer: &str| {
        let o = psi(&dir, party, "ids", &[peer], &["--size-only"]);
        assert!(o.status.success(), "{}", stderr(&o));
        job_id(&stdout(&o))
    };

    // A PSI job started by alice, and one started by bob.
    let job1 = psi_job("alice", "bob:ids");
    let job2 = psi_job("bob", "carol:ids");

    // In every member's log within seconds, final, and verified.
    // Two entries per job: its start and its outcome.
    let took = wait_replicated(&dir, &["alice", "bob", "carol"], 4, Duration::from_secs(10));
    assert!(took < Duration::from_secs(10));
    for p in ["alice", "bob", "carol"] {
        let (_, _, out) = log_json(&dir, p);
        assert!(out.contains(&job1) && out.contains(&job2), "{out}");
        let o = at(&dir, p, &["audit", "verify"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("intact"), "{}", stdout(&o));
    }
    // The log is read page by page (a long log does not fit one message): pages of 1 and 3
    // entries print the same as one page.
    let whole = log_json(&dir, "alice").2;
    for page in ["1", "3"] {
        let o = cli(&["audit", "log", "--config", path_str(&config(&dir, "alice"))])
            .env("CONFIDE_AUDIT_LOG_PAGE", page)
            .output()
            .unwrap();
        assert_eq!(stdout(&o), whole, "page of {page}: {}", stderr(&o));
    }
    // A reader that stops early (`confide audit log | head -1`) ends the command quietly,
    // with status 0: no panic on the closed pipe.
    let mut child = cli(&["audit", "log", "--config", path_str(&config(&dir, "alice"))])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    let o = at(&dir, "carol", &["audit", "log", "--summary"]);
    let summary = stdout(&o);
    let row = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(row("alice"), vec![1, 0], "{summary}");
    assert_eq!(row("bob"), vec![1, 1], "{summary}");
    assert_eq!(row("carol"), vec![0, 1], "{summary}");

    // job1's fingerprint commits, with alice's salt, to both parties' dataset commitments, the
    // parameters and the result: recompute it from alice's salt record.
    let rec = salt_record(&dir, "alice", &format!("{job1}.json"));
    let request = hex::decode(rec["request"].as_str().unwrap()).unwrap();
    let file_hash: [u8; 32] =
        <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&data).unwrap()).into();
    let has = |x: &[u8; 32]| request.windows(32).any(|w| w == x);
    assert!(!has(&file_hash), "no bare dataset hash in the request");
    // Each party's commitment opens with the salt it kept.
    for p in ["alice", "bob"] {
        let opening = salt_record(&dir, p, &format!("{job1}.dataset.json"));
        let c =
            confide::audit::commitment::dataset_commitment(&job1, &salt_of(&opening), &file_hash);
        assert!(has(&c), "{p}'s dataset commitment is in the request");
    }
    let fp = confide_audit::fingerprint(
        &salt_of(&rec),
        &request,
        rec["result"].as_str().unwrap().as_bytes(),
    );
    let (_, _, out) = log_json(&dir, "carol");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(&job1)).collect();
    assert_eq!(rows.len(), 2, "the job's start, then its outcome:\n{out}");
    assert!(rows[1].ends_with(&hex::encode(fp)), "{}", rows[1]);
    // The start entry opens too, with its own salt, to the same request and `started`.
    let start = salt_record(&dir, "alice", &format!("{job1}.start.json"));
    assert_eq!(start["result"], "started");
    let start_request = hex::decode(start["request"].as_str().unwrap()).unwrap();
    let start_fp = confide_audit::fingerprint(&salt_of(&start), &start_request, b"started");
    assert!(rows[0].ends_with(&hex::encode(start_fp)), "{}", rows[0]);

    // A proof, made at carol (not the initiator), checks offline; tampering is rejected.
    let proof = root.path().join("proof.json");
    let o = audit_prove(&dir, "carol", &job1, &proof);
    assert!(o.status.success(), "{}", stderr(&o));
    let genesis = dir.join("genesis.json");
    let check = |p: &Path| {
        confide(&[
            "audit",
            "check",
            path_str(p),
            "--genesis",
            path_str(&genesis),
        ])
    };
    let o = check(&proof);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("proof OK") && stdout(&o).contains(&job1),
        "{}",
        stdout(&o)
    );

    let original = std::fs::read_to_string(&proof).unwrap();
    let bundle: serde_json::Value = serde_json::from_str(&original).unwrap();
    let flip_hex = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'a' { b'b' } else { b'a' };
        String::from_utf8(b).unwrap()
    };
    let mut cases: Vec<(String, serde_json::Value)> = Vec::new();
    // A byte of the audit path.
    if let Some(first) = bundle["audit_path"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
    {
        let mut b = bundle.clone();
        b["audit_path"][0] = flip_hex(first, 5).into();
        cases.push(("path".into(), b));
    }
    // The entry (and with it its signature).
    let entry = bundle["entry"].as_str().unwrap().to_string();
    let mut b = bundle.clone();
    b["entry"] = flip_hex(&entry, entry.len() - 10).into();
    cases.push(("entry signature".into(), b));
    // The checkpoint: its root line, and a cosignature.
    let cp = bundle["checkpoint"].as_str().unwrap().to_string();
    let lines: Vec<&str> = cp.lines().collect();
    let mut with_root = lines.clone();
    let root_line = flip_hex(lines[2], 3);
    with_root[2] = &root_line;
    let mut b = bundle.clone();
    b["checkpoint"] = (with_root.join("\n") + "\n").into();
    cases.push(("checkpoint root".into(), b));
    let sig_at = lines.len() - 1;
    let mut with_sig = lines.clone();
    let sig_line = flip_hex(lines[sig_at], lines[sig_at].len() - 6);
    with_sig[sig_at] = &sig_line;
    let mut b = bundle.clone();
    b["checkpoint"] = (with_sig.join("\n") + "\n").into();
    cases.push(("cosignature".into(), b));
    let mut b = bundle.clone();
    b["index"] = (bundle["index"].as_u64().unwrap() + 1).into();
    cases.push(("index".into(), b));
    for (what, b) in cases {
        let p = root.path().join("tampered.json");
        std::fs::write(&p, b.to_string()).unwrap();
        assert_clean_error(&check(&p), "proof rejected");
        let _ = what;
    }

    // carol goes down: jobs still become final (alice + bob are a quorum); carol catches up.
    carol.child.kill().unwrap();
    carol.child.wait().unwrap();
    let job3 = psi_job("alice", "bob:ids");
    wait_replicated(&dir, &["alice", "bob"], 6, Duration::from_secs(10));
    let _carol = serve(&dir, "carol");
    wait_status_ok(&dir, "carol", Duration::from_secs(20));
    wait_replicated(&dir, &["alice", "bob", "carol"], 6, Duration::from_secs(15));
    let (_, _, out) = log_json(&dir, "carol");
    assert!(out.contains(&job3), "{out}");
    let o = at(&dir, "carol", &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_job_is_anchored_before_it_runs_and_does_not_run_unanchored() {
    // Four members: a final checkpoint needs three of them.
    let (root, dir, _) = new_alliance("alice,bob,carol,dave");
    let data = write_ids(root.path(), 300);
    for (p, peer) in [("bob", "alice"), ("alice", "bob")] {
        add_dataset(
            &dir,
            p,
            "ids",
            &data,
            "id",
            &format!("{{ psi = [\"{peer}\"] }}"),
        );
    }
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    let mut carol = serve(&dir, "carol");
    let mut dave = serve(&dir, "dave");
    wait_all_ok(
        &dir,
        &["alice", "bob", "carol", "dave"],
        Duration::from_secs(20),
    );

    // A job that runs: its start and its outcome are both on the chain.
    let bob_psi = |out: &Path| {
        psi(
            &dir,
            "bob",
            "ids",
            &["alice:ids"],
            &["--output", path_str(out)],
        )
    };
    let o = bob_psi(&root.path().join("first.csv"));
    assert!(o.status.success(), "{}", stderr(&o));
    let job = job_id(&stdout(&o));
    wait_replicated(&dir, &["bob"], 2, Duration::from_secs(10));
    let (_, _, log) = log_json(&dir, "bob");
    let entries = log.lines().filter(|l| l.contains(&job)).count();
    assert_eq!(entries, 2, "a start and an outcome entry for {job}:\n{log}");
    let start = salt_record(&dir, "bob", &format!("{job}.start.json"));
    assert_eq!(
        start["result"], "started",
        "the start entry can be opened later"
    );

    // With half the members down no checkpoint can be final, so nothing can be anchored
    // (whichever member sequences): the job fails before it computes, and no result file
    // appears.
    for d in [&mut carol, &mut dave] {
        d.child.kill().unwrap();
        d.child.wait().unwrap();
    }
    let out = root.path().join("second.csv");
    let o = bob_psi(&out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("start could not be anchored") && e.contains("nothing ran"),
        "{e}"
    );
    assert!(
        !out.exists(),
        "a job that was not anchored wrote its result"
    );
}
