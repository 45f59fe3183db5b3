//! The foundation across real daemons on 127.0.0.1: reachability over mutual TLS,
//! refusals, a killed party, bad configuration.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn three_daemons_reach_each_other_and_a_killed_party_is_named_within_10s() {
    let (_root, dir, _) = new_alliance("alice,bob,carol");
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    let mut carol = serve(&dir, "carol");
    wait_all_ok(&dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    let o = at(&dir, "alice", &["status"]);
    assert!(
        stdout(&o).contains("bob") && stdout(&o).contains("mutual TLS"),
        "{}",
        stdout(&o)
    );

    carol.child.kill().unwrap();
    carol.child.wait().unwrap();
    let started = Instant::now();
    for p in ["alice", "bob"] {
        let o = at(&dir, p, &["status"]);
        assert!(
            !o.status.success(),
            "status at {p} should fail with carol down"
        );
        assert!(stderr(&o).contains("carol"), "{}", stderr(&o));
        assert!(stdout(&o).contains("carol") && stdout(&o).contains("UNREACHABLE"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_peer_that_dies_mid_job_fails_the_job_naming_it() {
    let (_root, dir, _) = new_alliance("alice,bob");
    let _alice = serve(&dir, "alice");
    let mut bob = serve(&dir, "bob");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    let cfg = config(&dir, "alice");
    let job = spawn_long_netcheck(&cfg);
    std::thread::sleep(Duration::from_millis(1500));
    bob.child.kill().unwrap();
    let killed = Instant::now();
    let out = job.wait_with_output().unwrap();
    let waited = killed.elapsed();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("bob"), "error should name bob: {e}");
    assert!(
        e.contains("connection dropped (its daemon stopped or restarted)"),
        "the cause in words: {e}"
    );
    assert!(!e.contains("h2") && !e.contains("http2"), "{e}");
    assert!(
        !e.contains("cancelled"),
        "a failure is not a cancellation: {e}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "job took {waited:?} to fail"
    );
    // The failure is recorded in the job table.
    let o = at(&dir, "alice", &["jobs"]);
    assert!(stdout(&o).contains("failed"), "{}", stdout(&o));
}

#[test]
fn a_daemon_with_another_alliances_certificate_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(2);
    // Two alliances on the same ports: alice of the first, bob of the second.
    let a = init(root.path(), "a", "alice,bob", port);
    let b = init(root.path(), "b", "alice,bob", port);
    let _alice = serve(&a, "alice");
    let _bob = serve(&b, "bob");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    loop {
        // alice's own daemon is up (self-only status succeeds)...
        let o = at(&a, "alice", &["status", "--self-only"]);
        if o.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    // ...but bob, whose certificate is from another CA, is refused in both directions.
    let o = at(&a, "alice", &["status"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("UNREACHABLE"), "{}", stdout(&o));
    let o = at(&b, "bob", &["status"]);
    assert!(!o.status.success(), "{}", stdout(&o));
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let (_root, dir, port) = new_alliance("alice,bob");
    let cfg = config(&dir, "alice");
    let good = std::fs::read_to_string(&cfg).unwrap();
    // `confide serve` with alice's config as `text`.
    let serve_config = |text: &str| {
        let p = dir.join("alice").join("bad.toml");
        std::fs::write(&p, text).unwrap();
        confide(&["serve", "--config", path_str(&p)])
    };

    let o = confide(&["serve", "--config", "/nonexistent/party.toml"]);
    assert_clean_error(&o, "/nonexistent/party.toml");

    assert_clean_error(&serve_config("[party\nname = "), "bad.toml");
    assert_clean_error(
        &serve_config(&good.replace("[party]", "[party]\ncolour = \"blue\"")),
        "unknown field `colour`",
    );
    assert_clean_error(
        &serve_config(&good.replace("data_dir = \"data\"\n", "")),
        "missing field `data_dir`",
    );

    // A port in use.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let o = at(&dir, "alice", &["serve"]);
    assert_clean_error(&o, &format!("127.0.0.1:{port}"));

    // A daemon that is not running.
    drop(_holder);
    let o = at(&dir, "alice", &["status"]);
    assert_clean_error(&o, "is `confide serve` running?");
}

#[test]
fn init_refuses_bad_arguments() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("x");
    assert_clean_error(&run_init(&d, "alice", &[]), "at least two");
    assert_clean_error(&run_init(&d, "alice,Bob", &[]), "not a valid party name");
    assert_clean_error(&run_init(&d, "alice,bob", &["--dealer", "zed"]), "--dealer");
    let y = init(root.path(), "y", "alice,bob", 7100);
    let o = run_init(&y, "alice,bob", &[]);
    assert_clean_error(&o, "already holds an alliance");
}

#[test]
fn metrics_count_jobs_and_bytes_per_peer() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(4);
    let metrics = (port + 2).to_string();
    let dir = init_with(
        &root.path().join("m"),
        "alice,bob",
        port,
        &["--metrics-base-port", &metrics],
    );
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    ok(
        &at(
            &dir,
            "alice",
            &["netcheck", "--rounds", "4", "--size", "1000"],
        ),
        "netcheck",
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port + 2)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.contains(
            "confide_jobs_total{party=\"alice\",kind=\"netcheck\",status=\"succeeded\"} 1"
        ),
        "{body}"
    );
    // 4 rounds of 1,008 bytes to bob.
    assert!(
        body.contains("confide_peer_bytes_sent_total{party=\"alice\",peer=\"bob\"} 4032"),
        "{body}"
    );
    assert!(
        body.contains("confide_peer_bytes_received_total{party=\"alice\",peer=\"bob\"} 4032"),
        "{body}"
    );
}

#[test]
fn a_cancelled_job_stops_at_every_party() {
    let (_root, dir, _) = new_alliance("alice,bob");
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    let cfg = config(&dir, "alice");
    let job = spawn_long_netcheck(&cfg);
    // Find the running job's id and cancel it.
    let started = Instant::now();
    let id = loop {
        let o = at(&dir, "alice", &["jobs"]);
        if let Some(line) = stdout(&o).lines().find(|l| l.contains("running")) {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "job never ran");
        std::thread::sleep(Duration::from_millis(100));
    };
    ok(&at(&dir, "alice", &["cancel", "--job", &id]), "cancel");
    let out = job.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    // bob was told and stopped too.
    let started = Instant::now();
    loop {
        let o = at(&dir, "bob", &["jobs"]);
        let line = stdout(&o)
            .lines()
            .find(|l| l.starts_with(&id))
            .map(str::to_string);
        if line.as_deref().is_some_and(|l| !l.contains("running")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bob still runs the job: {line:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dataset_whose_file_is_unusable_is_disabled_and_the_others_are_served() {
    let (root, dir, _) = new_alliance("alice,bob");
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("folder.csv")).unwrap();
    let ids: String = (0..50).map(|i| format!("id{i}\n")).collect();
    std::fs::write(data.join("a.csv"), format!("id\n{ids}")).unwrap();
    std::fs::write(data.join("b.csv"), format!("id\n{ids}")).unwrap();
    let allow = "{ psi = [\"alice\", \"bob\"] }";
    add_dataset(&dir, "alice", "customers", &data.join("a.csv"), "id", allow);
    add_dataset(&dir, "bob", "customers", &data.join("b.csv"), "id", allow);
    add_dataset(&dir, "bob", "folder", &data.join("folder.csv"), "id", allow);
    add_dataset(&dir, "bob", "gone", &data.join("gone.csv"), "id", allow);
    let log = root.path().join("bob.log");
    let _bob = serve_with(
        &dir,
        "bob",
        "warn",
        std::fs::File::create(&log).unwrap().into(),
    );
    let _alice = serve(&dir, "alice");
    wait_all_ok(&dir, &["alice", "bob"], Duration::from_secs(20));

    // bob serves his good dataset …
    let out = root.path().join("out.csv");
    let o = alice_psi(&dir, "bob:customers", &out);
    ok(&o, "psi on bob's good dataset");
    // … and refuses the broken ones, naming the dataset but not its path.
    for name in ["folder", "gone"] {
        let out = root.path().join(format!("{name}.csv"));
        let o = alice_psi(&dir, &format!("bob:{name}"), &out);
        assert!(!o.status.success(), "psi on bob:{name} succeeded");
        let e = stderr(&o);
        assert!(
            e.contains(&format!("dataset `{name}` of party `bob` is disabled")),
            "{e}"
        );
        assert!(
            !e.contains(path_str(&data)),
            "bob's path reached alice: {e}"
        );
    }
    // bob's own log says why.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("folder.csv is a directory"), "{text}");
    assert!(text.contains("gone.csv does not exist"), "{text}");
}

#[test]
fn a_frozen_peer_is_named_unresponsive_within_15s() {
    let (_root, dir, _) = new_alliance("alice,bob");
    let _alice = serve(&dir, "alice");
    let bob = serve(&dir, "bob");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    let job = spawn_long_netcheck(&config(&dir, "alice"));
    std::thread::sleep(Duration::from_millis(1500));
    let signal = |sig: &str| {
        let s = std::process::Command::new("kill")
            .args([sig, &bob.child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success(), "kill {sig}");
    };
    signal("-STOP");
    let frozen = Instant::now();
    let out = job.wait_with_output().unwrap();
    let waited = frozen.elapsed();
    signal("-CONT");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("peer `bob`") && e.contains("unresponsive: no keepalive reply within 7 s"),
        "{e}"
    );
    assert!(waited < Duration::from_secs(15), "took {waited:?}");
}

#[test]
fn job_history_survives_a_restart_and_a_cut_off_job_is_marked_interrupted() {
    let (_root, dir, _) = new_alliance("alice,bob");
    let mut alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    wait_all_ok(&dir, &["alice", "bob"], Duration::from_secs(20));
    let cfg = config(&dir, "alice");
    let o = cli(&["netcheck", "--config", path_str(&cfg), "--rounds", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut long = spawn_long_netcheck(&cfg);
    std::thread::sleep(Duration::from_millis(1500));
    // alice's daemon dies (SIGKILL) with the long job running, and comes back.
    alice.child.kill().unwrap();
    alice.child.wait().unwrap();
    let _ = long.kill();
    let _ = long.wait();
    let _alice = serve(&dir, "alice");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    let jobs = stdout(&at(&dir, "alice", &["jobs"]));
    let lines: Vec<&str> = jobs.lines().filter(|l| l.contains("netcheck")).collect();
    assert_eq!(lines.len(), 2, "both jobs are still listed:\n{jobs}");
    assert!(
        lines.iter().any(|l| l.contains("succeeded")),
        "the finished job keeps its state:\n{jobs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("failed") && l.contains("interrupted: daemon restarted")),
        "the cut-off job is marked interrupted:\n{jobs}"
    );
    // bob, who saw only the broken link, is told the cause by the restarted alice.
    let started = std::time::Instant::now();
    loop {
        let jobs = stdout(&at(&dir, "bob", &["jobs"]));
        let cut: Vec<&str> = jobs
            .lines()
            .filter(|l| l.contains("netcheck") && l.contains("failed"))
            .collect();
        if cut.len() == 1
            && cut[0].contains("peer `alice` restarted during the job (seen here as: peer `alice`")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "bob does not record alice's restart as the cause:\n{jobs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn job_folders_left_by_a_crash_are_removed_at_restart() {
    let (_root, dir, _) = new_alliance("alice,bob");
    let left = dir
        .join("alice")
        .join("data")
        .join("jobs")
        .join("0123456789abcdef01234567");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("round-1-set-bob.pts"), [7u8; 64]).unwrap();
    let empty = left.with_file_name("89abcdef0123456701234567");
    std::fs::create_dir_all(&empty).unwrap();
    let _d = start(&dir, &["alice", "bob"], Duration::from_secs(20));
    assert!(
        !left.exists(),
        "spill files of a crashed job survive a restart"
    );
    assert!(!empty.exists(), "an empty job folder survives a restart");
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_any_work() {
    let (root, dir, _) = new_alliance("alice,bob");
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let allow = "{ psi = [\"alice\", \"bob\"] }";
    for p in ["alice", "bob"] {
        let csv = data.join(format!("{p}.csv"));
        std::fs::write(&csv, "id\n1\n2\n").unwrap();
        add_dataset(&dir, p, "customers", &csv, "id", allow);
    }
    let _d = start(&dir, &["alice", "bob"], Duration::from_secs(20));
    let file = root.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (out, why) in [
        (file.join("out.csv"), "File exists"),
        (file.join("sub").join("out.csv"), "Not a directory"),
        (data.clone(), "it is a directory"),
    ] {
        let o = alice_psi(&dir, "bob:customers", &out);
        assert!(!o.status.success(), "{}", out.display());
        let e = stderr(&o);
        assert!(
            e.contains("cannot write the output") && e.contains(why),
            "{e}"
        );
        assert!(
            !e.contains("accepted"),
            "work started before the check: {e}"
        );
    }
    // No job was proposed to bob.
    let jobs = stdout(&at(&dir, "bob", &["jobs"]));
    assert!(!jobs.contains("psi"), "{jobs}");

    // A path that is not UTF-8 is refused, not rewritten.
    use std::os::unix::ffi::OsStrExt;
    let bad = root
        .path()
        .join(std::ffi::OsStr::from_bytes(b"out-\xff.csv"));
    let o = cli(&[
        "psi",
        "--config",
        path_str(&config(&dir, "alice")),
        "--dataset",
        "customers",
    ])
    .args(["--peer", "bob:customers", "--output"])
    .arg(&bad)
    .output()
    .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    let names: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().contains('\u{fffd}')),
        "{names:?}"
    );
}

/// `confide psi` at alice on her `customers` with `peer` (PARTY:DATASET), output to `out`.
fn alice_psi(dir: &std::path::Path, peer: &str, out: &std::path::Path) -> std::process::Output {
    psi(
        dir,
        "alice",
        "customers",
        &[peer],
        &["--output", path_str(out)],
    )
}
