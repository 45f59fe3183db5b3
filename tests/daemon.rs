//! The foundation across real daemons on 127.0.0.1: reachability over mutual TLS,
//! refusals, a killed party, bad configuration.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn three_daemons_reach_each_other_and_a_killed_party_is_named_within_10s() {
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(3);
    let dir = init(root.path(), "a", "alice,bob,carol", port);
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    let mut carol = serve(&dir, "carol");
    for p in ["alice", "bob", "carol"] {
        wait_status_ok(&dir, p, Duration::from_secs(20));
    }
    let o = confide(&[
        "status",
        "--config",
        config(&dir, "alice").to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("bob") && stdout(&o).contains("mutual TLS"),
        "{}",
        stdout(&o)
    );

    carol.child.kill().unwrap();
    carol.child.wait().unwrap();
    let started = Instant::now();
    for p in ["alice", "bob"] {
        let o = confide(&["status", "--config", config(&dir, p).to_str().unwrap()]);
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
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(2);
    let dir = init(root.path(), "a", "alice,bob", port);
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
        waited < Duration::from_secs(15),
        "job took {waited:?} to fail"
    );
    // The failure is recorded in the job table.
    let o = confide(&["jobs", "--config", cfg.to_str().unwrap()]);
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
        let o = confide(&[
            "status",
            "--self-only",
            "--config",
            config(&a, "alice").to_str().unwrap(),
        ]);
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
    let o = confide(&["status", "--config", config(&a, "alice").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("UNREACHABLE"), "{}", stdout(&o));
    let o = confide(&["status", "--config", config(&b, "bob").to_str().unwrap()]);
    assert!(!o.status.success(), "{}", stdout(&o));
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(2);
    let dir = init(root.path(), "a", "alice,bob", port);
    let cfg = config(&dir, "alice");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let write = |text: &str| {
        let p = dir.join("alice").join("bad.toml");
        std::fs::write(&p, text).unwrap();
        p
    };

    let o = confide(&["serve", "--config", "/nonexistent/party.toml"]);
    assert_clean_error(&o, "/nonexistent/party.toml");

    let p = write("[party\nname = ");
    assert_clean_error(
        &confide(&["serve", "--config", p.to_str().unwrap()]),
        "bad.toml",
    );

    let p = write(&good.replace("[party]", "[party]\ncolour = \"blue\""));
    assert_clean_error(
        &confide(&["serve", "--config", p.to_str().unwrap()]),
        "unknown field `colour`",
    );

    let p = write(&good.replace("data_dir = \"data\"\n", ""));
    assert_clean_error(
        &confide(&["serve", "--config", p.to_str().unwrap()]),
        "missing field `data_dir`",
    );

    let p = write(&format!(
        "{good}\n[datasets.c]\npath = \"/nonexistent/c.csv\"\nid_column = \"id\"\n"
    ));
    assert_clean_error(
        &confide(&["serve", "--config", p.to_str().unwrap()]),
        "datasets.c.path",
    );

    // A port in use.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let o = confide(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_clean_error(&o, &format!("127.0.0.1:{port}"));

    // A daemon that is not running.
    drop(_holder);
    let o = confide(&["status", "--config", cfg.to_str().unwrap()]);
    assert_clean_error(&o, "is `confide serve` running?");
}

#[test]
fn init_refuses_bad_arguments() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("x");
    let o = confide(&["init", "--dir", d.to_str().unwrap(), "--parties", "alice"]);
    assert_clean_error(&o, "at least two");
    let o = confide(&[
        "init",
        "--dir",
        d.to_str().unwrap(),
        "--parties",
        "alice,Bob",
    ]);
    assert_clean_error(&o, "not a valid party name");
    let o = confide(&[
        "init",
        "--dir",
        d.to_str().unwrap(),
        "--parties",
        "alice,bob",
        "--dealer",
        "zed",
    ]);
    assert_clean_error(&o, "--dealer");
    let _ = init(root.path(), "y", "alice,bob", 7100);
    let o = confide(&[
        "init",
        "--dir",
        root.path().join("y").to_str().unwrap(),
        "--parties",
        "alice,bob",
    ]);
    assert_clean_error(&o, "already holds an alliance");
}

#[test]
fn metrics_count_jobs_and_bytes_per_peer() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(4);
    let dir = root.path().join("m");
    let o = confide(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--parties",
        "alice,bob",
        "--base-port",
        &port.to_string(),
        "--metrics-base-port",
        &(port + 2).to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    let o = confide(&[
        "netcheck",
        "--config",
        config(&dir, "alice").to_str().unwrap(),
        "--rounds",
        "4",
        "--size",
        "1000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
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
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(2);
    let dir = init(root.path(), "a", "alice,bob", port);
    let _alice = serve(&dir, "alice");
    let _bob = serve(&dir, "bob");
    wait_status_ok(&dir, "alice", Duration::from_secs(20));
    let cfg = config(&dir, "alice");
    let job = spawn_long_netcheck(&cfg);
    // Find the running job's id and cancel it.
    let started = Instant::now();
    let id = loop {
        let o = confide(&["jobs", "--config", cfg.to_str().unwrap()]);
        if let Some(line) = stdout(&o).lines().find(|l| l.contains("running")) {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "job never ran");
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = confide(&["cancel", "--config", cfg.to_str().unwrap(), "--job", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = job.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    // bob was told and stopped too.
    let started = Instant::now();
    loop {
        let o = confide(&["jobs", "--config", config(&dir, "bob").to_str().unwrap()]);
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
