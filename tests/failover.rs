//! Sequencer failover across real daemons: the sequencer is killed in the middle of a
//! stream of jobs; the next member takes over within 10 s, jobs go on being anchored,
//! and every acknowledged job's entry is in the log at every member afterwards, the
//! old sequencer included once it returns (as a member of the new view). A member back
//! from an outage catches up at once, not when the sequencer's backoff on it ends.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const ALL: [&str; 3] = ["alice", "bob", "carol"];

/// The `audit store:` line of `party`'s `confide status`.
fn audit_line(dir: &Path, party: &str) -> String {
    let out = stdout(&at(dir, party, &["status"]));
    out.lines()
        .find(|l| l.contains("audit store:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_next_member_takes_over_when_the_sequencer_is_killed() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let data = write_ids(root.path(), 200);
    add_dataset(&dir, "bob", "ids", &data, "id", "{ psi = [\"carol\"] }");
    add_dataset(&dir, "carol", "ids", &data, "id", "{ psi = [\"bob\"] }");
    let mut daemons = start(&dir, &ALL, Duration::from_secs(20));
    let line = audit_line(&dir, "bob");
    assert!(line.contains("sequencer `alice` (view 0)"), "{line}");

    // bob runs jobs back to back (each anchored at its start and end) while alice, the
    // sequencer, is killed.
    let killed_at = std::sync::Mutex::new(None::<Instant>);
    let mut jobs: Vec<(bool, String, Instant)> = Vec::new();
    std::thread::scope(|s| {
        let runner = s.spawn(|| {
            let mut out = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(90) {
                let o = psi(&dir, "bob", "ids", &["carol:ids"], &["--size-only"]);
                let text = if o.status.success() {
                    job_id(&stdout(&o))
                } else {
                    stderr(&o)
                };
                out.push((o.status.success(), text, Instant::now()));
                let after_kill = killed_at
                    .lock()
                    .unwrap()
                    .map(|k| out.iter().filter(|(ok, _, t)| *ok && *t > k).count());
                if after_kill.unwrap_or(0) >= 3 {
                    break;
                }
            }
            out
        });
        std::thread::sleep(Duration::from_millis(1500));
        let alice = daemons.remove(0);
        *killed_at.lock().unwrap() = Some(Instant::now());
        drop(alice);
        jobs = runner.join().unwrap();
    });
    let killed = killed_at.lock().unwrap().unwrap();
    let before = jobs.iter().filter(|(ok, _, t)| *ok && *t < killed).count();
    let after: Vec<&(bool, String, Instant)> = jobs
        .iter()
        .filter(|(ok, _, t)| *ok && *t > killed)
        .collect();
    assert!(before >= 1, "no job before the kill: {jobs:?}");
    assert_eq!(after.len(), 3, "jobs after the kill: {jobs:?}");
    let takeover = after[0].2 - killed;
    assert!(
        takeover < Duration::from_secs(10),
        "the first job after the kill ended {takeover:?} after it"
    );
    let line = wait_audit_status(
        &dir,
        "bob",
        "sequencer `bob` (view 1)",
        Duration::from_secs(5),
    );
    assert!(line.contains("ok:"), "{line}");
    wait_audit_status(
        &dir,
        "carol",
        "sequencer `bob` (view 1)",
        Duration::from_secs(5),
    );

    // alice returns: she learns view 1, drops what was never final, and catches up at
    // once (her first call to bob ends the backoff bob kept her in while she was down),
    // before any new entry.
    // Down long enough for bob's backoff to reach 8 s (0.25 s doubling per failure).
    std::thread::sleep(Duration::from_secs(9));
    let (n, _, _) = log_json(&dir, "bob");
    let returned = Instant::now();
    daemons.insert(0, serve(&dir, "alice"));
    wait_audit_status(
        &dir,
        "alice",
        "sequencer `bob` (view 1)",
        Duration::from_secs(20),
    );
    wait_replicated(&dir, &["alice"], n, Duration::from_secs(3));
    eprintln!("alice caught up {:?} after her restart", returned.elapsed());
    let o = psi(&dir, "bob", "ids", &["carol:ids"], &["--size-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let last = job_id(&stdout(&o));
    let (n, _, _) = log_json(&dir, "bob");
    wait_replicated(&dir, &ALL, n, Duration::from_secs(20));
    let acknowledged = jobs
        .iter()
        .filter(|(ok, _, _)| *ok)
        .map(|(_, id, _)| id.clone())
        .chain([last]);
    let logs: Vec<String> = ALL.iter().map(|p| log_json(&dir, p).2).collect();
    for job in acknowledged {
        for (p, log) in ALL.iter().zip(&logs) {
            assert!(
                log.lines().filter(|l| l.contains(&job)).count() >= 2,
                "{p} lacks the start and end entries of acknowledged job {job}"
            );
        }
    }
    for p in ALL {
        let v = at(&dir, p, &["audit", "verify"]);
        assert!(v.status.success(), "{p}: {}{}", stdout(&v), stderr(&v));
    }
    eprintln!(
        "takeover: first job done {takeover:?} after the kill; {} jobs",
        jobs.len()
    );
}

#[test]
fn a_frozen_sequencer_is_replaced_within_10s_and_follows_when_it_thaws() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let data = write_ids(root.path(), 200);
    add_dataset(&dir, "bob", "ids", &data, "id", "{ psi = [\"carol\"] }");
    add_dataset(&dir, "carol", "ids", &data, "id", "{ psi = [\"bob\"] }");
    let daemons = start(&dir, &ALL, Duration::from_secs(20));
    let bob_psi = || {
        let o = psi(&dir, "bob", "ids", &["carol:ids"], &["--size-only"]);
        assert!(o.status.success(), "{}", stderr(&o));
        job_id(&stdout(&o))
    };
    let mut jobs = vec![bob_psi()];
    let signal = |sig: &str| {
        let s = std::process::Command::new("kill")
            .args([sig, &daemons[0].child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success(), "kill {sig}");
    };
    // alice, the sequencer, freezes (SIGSTOP): her connections stay open, nothing answers.
    signal("-STOP");
    let frozen = Instant::now();
    jobs.push(bob_psi());
    let took = frozen.elapsed();
    // The takeover (3 s append timeout, then the votes) and the new sequencer's first
    // replication round, which waits up to 5 s for the frozen alice, both fall in this job.
    assert!(
        took < Duration::from_secs(12),
        "the job during the freeze took {took:?}"
    );
    let line = audit_line(&dir, "carol");
    assert!(line.contains("sequencer `bob` (view 1)"), "{line}");
    jobs.push(bob_psi());
    // alice thaws: the first member she reaches tells her of view 1; she follows.
    signal("-CONT");
    wait_audit_status(
        &dir,
        "alice",
        "sequencer `bob` (view 1)",
        Duration::from_secs(20),
    );
    jobs.push(bob_psi());
    let (n, _, _) = log_json(&dir, "bob");
    wait_replicated(&dir, &ALL, n, Duration::from_secs(20));
    for p in ALL {
        let (_, _, log) = log_json(&dir, p);
        for job in &jobs {
            assert_eq!(
                log.lines().filter(|l| l.contains(job)).count(),
                2,
                "{p}: {job}"
            );
        }
        let v = at(&dir, p, &["audit", "verify"]);
        assert!(v.status.success(), "{p}: {}{}", stdout(&v), stderr(&v));
    }
    eprintln!("a job during the sequencer's freeze took {took:?}");
}

#[test]
fn a_member_back_from_an_outage_catches_up_at_once() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let data = write_ids(root.path(), 200);
    add_dataset(&dir, "alice", "ids", &data, "id", "{ psi = [\"bob\"] }");
    add_dataset(&dir, "bob", "ids", &data, "id", "{ psi = [\"alice\"] }");
    let mut daemons = start(&dir, &ALL, Duration::from_secs(20));
    // carol, a member, goes down; alice and bob go on anchoring jobs (a majority).
    drop(daemons.remove(2));
    for _ in 0..2 {
        let o = psi(&dir, "bob", "ids", &["alice:ids"], &["--size-only"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Down long enough for alice's backoff on carol to reach 8 s.
    std::thread::sleep(Duration::from_secs(9));
    let (n, _, _) = log_json(&dir, "alice");
    // Back, carol calls the sequencer once at start: alice ends the backoff and catches
    // her up before any new entry.
    let returned = Instant::now();
    daemons.push(serve(&dir, "carol"));
    wait_status_ok(&dir, "carol", Duration::from_secs(10));
    wait_replicated(&dir, &["carol"], n, Duration::from_secs(3));
    eprintln!("carol caught up {:?} after her restart", returned.elapsed());
}
