//! Keys generated where they are used: `confide keygen` at each member, `confide ca` at
//! the operator (key encrypted at rest), `confide join`; a member added later; a member
//! revoked while every daemon keeps running. Real daemons on loopback.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use confide::base::config::PartyConfig;

const PASS: &str = "correct horse battery staple";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `confide ca ...` with the passphrase in the environment.
fn ca(args: &[&str]) -> std::process::Output {
    cli(args)
        .env("CONFIDE_CA_PASSPHRASE", PASS)
        .output()
        .expect("run confide ca")
}

fn keygen(root: &Path, name: &str, port: u16) {
    let dir = root.join(name);
    let address = format!("127.0.0.1:{port}");
    ok(
        &confide(&[
            "keygen",
            "--dir",
            path_str(&dir),
            "--name",
            name,
            "--address",
            &address,
        ]),
        "keygen",
    );
    // Private keys are 0600 right after creation; the request is public.
    assert_eq!(mode(&dir.join(format!("{name}.key"))), 0o600);
    assert_eq!(mode(&dir.join("audit.key")), 0o600);
    let req = std::fs::read_to_string(dir.join(format!("{name}.req.json"))).unwrap();
    assert!(req.contains("CERTIFICATE REQUEST"), "{req}");
    assert!(!req.contains("PRIVATE KEY"), "{req}");
}

fn sign(root: &Path, name: &str) {
    let cadir = root.join("ca");
    let req = root.join(name).join(format!("{name}.req.json"));
    let out = cadir.join(format!("{name}.pem"));
    ok(
        &ca(&[
            "ca",
            "sign",
            "--ca",
            path_str(&cadir),
            "--request",
            path_str(&req),
            "--out",
            path_str(&out),
        ]),
        "ca sign",
    );
}

fn join(root: &Path, name: &str) {
    let c = root.join("ca");
    let f = |n: &str| c.join(n).to_str().unwrap().to_string();
    let dir = root.join(name);
    ok(
        &confide(&[
            "join",
            "--dir",
            path_str(&dir),
            "--cert",
            &f(&format!("{name}.pem")),
            "--ca",
            &f("ca.pem"),
            "--members",
            &f("members.json"),
            "--genesis",
            &f("genesis.json"),
            "--crl",
            &f("crl.pem"),
        ]),
        "join",
    );
}

/// Bob's view: a Ping to `to` over a channel holding bob's own certificate.
async fn ping(ch: tonic::transport::Channel) -> Result<String, tonic::Status> {
    confide_proto::peer_client::PeerClient::new(ch)
        .ping(confide_proto::PingRequest {})
        .await
        .map(|r| r.into_inner().party)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_sign_join_add_and_revoke_without_a_new_alliance() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let port = free_base_port(4);
    for (i, n) in ["alice", "bob", "carol"].iter().enumerate() {
        keygen(root, n, port + i as u16);
    }
    // The operator's CA: its key is encrypted at rest, never plaintext PEM.
    let cadir = root.join("ca");
    ok(&ca(&["ca", "init", "--dir", path_str(&cadir)]), "ca init");
    let sealed = std::fs::read_to_string(cadir.join("ca.key.enc")).unwrap();
    assert!(
        !sealed.contains("BEGIN") && !sealed.contains("PRIVATE"),
        "{sealed}"
    );
    assert_eq!(mode(&cadir.join("ca.key.enc")), 0o600);
    // A wrong passphrase opens nothing.
    let wrong = cli(&["ca", "revoke", "--ca", path_str(&cadir), "--name", "alice"])
        .env("CONFIDE_CA_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_clean_error(&wrong, "wrong passphrase");
    // A request whose CSR names someone else is refused.
    let forged = root.join("forged.req.json");
    let req = std::fs::read_to_string(root.join("bob/bob.req.json")).unwrap();
    std::fs::write(
        &forged,
        req.replace("\"name\": \"bob\"", "\"name\": \"mallory\""),
    )
    .unwrap();
    let o = ca(&[
        "ca",
        "sign",
        "--ca",
        path_str(&cadir),
        "--request",
        path_str(&forged),
        "--out",
        path_str(&root.join("m.pem")),
    ]);
    assert_clean_error(&o, "is for `bob`, not for the member `mallory`");

    for n in ["alice", "bob", "carol"] {
        sign(root, n);
    }
    let genesis = cadir.join("genesis.json");
    ok(
        &confide(&[
            "ca",
            "genesis",
            "--ca",
            path_str(&cadir),
            "--out",
            path_str(&genesis),
        ]),
        "ca genesis",
    );
    for n in ["alice", "bob", "carol"] {
        join(root, n);
    }
    let key_of = |n: &str| std::fs::read(root.join(n).join(format!("{n}.key"))).unwrap();
    let keys_before: Vec<Vec<u8>> = ["alice", "bob", "carol"].map(key_of).to_vec();

    // The alliance works: every daemon reaches every peer, a job runs.
    let mut daemons = start(root, &["alice", "bob", "carol"], Duration::from_secs(20));
    ok(&at(root, "alice", &["netcheck"]), "netcheck");
    ok(&at(root, "alice", &["audit", "verify"]), "audit verify");

    // Dave joins later: the operator signs him, the members that work with him add him as a
    // peer; nobody's keys change and there is no new alliance.
    keygen(root, "dave", port + 3);
    sign(root, "dave");
    join(root, "dave");
    let dave_toml = std::fs::read_to_string(config(root, "dave")).unwrap();
    assert!(dave_toml.contains("[peers.alice]"), "{dave_toml}");
    assert!(dave_toml.contains("No audit chain"), "{dave_toml}");
    let dave_address = format!("127.0.0.1:{}", port + 3);
    ok(
        &at(
            root,
            "alice",
            &["peer", "add", "--name", "dave", "--address", &dave_address],
        ),
        "peer add",
    );
    daemons.retain(|d| d.name != "alice");
    daemons.push(serve(root, "alice"));
    daemons.push(serve(root, "dave"));
    wait_status_ok(root, "alice", Duration::from_secs(20));
    ok(
        &at(root, "alice", &["netcheck", "--peer", "dave"]),
        "netcheck with the new member",
    );
    assert_eq!(["alice", "bob", "carol"].map(key_of).to_vec(), keys_before);

    // Bob holds a connection to alice from before his revocation.
    let bob_cfg = PartyConfig::load(&config(root, "bob")).unwrap();
    let bob_to_alice = channel_as(&bob_cfg, "alice").await;
    assert_eq!(ping(bob_to_alice.clone()).await.unwrap(), "alice");

    // The operator revokes bob and hands the new CRL to the others (bob keeps his old one).
    ok(
        &ca(&["ca", "revoke", "--ca", path_str(&cadir), "--name", "bob"]),
        "ca revoke",
    );
    for n in ["alice", "carol", "dave"] {
        std::fs::copy(cadir.join("crl.pem"), root.join(n).join("crl.pem")).unwrap();
    }
    // No restart: bob's requests are refused, even on his open connection ...
    let refused = ping(bob_to_alice).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("Revoked"), "{refused:?}");
    let o = at(root, "bob", &["netcheck", "--peer", "carol"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Revoked"), "{}", stderr(&o));
    // ... and the others do not dial him: the handshake fails on his revoked certificate.
    let o = at(root, "alice", &["status"]);
    assert!(!o.status.success());
    let table = stdout(&o);
    let bob_line = table.lines().find(|l| l.contains("bob")).unwrap();
    assert!(bob_line.contains("Revoked"), "{table}");
    assert!(
        table
            .lines()
            .find(|l| l.contains("carol"))
            .unwrap()
            .contains("ok"),
        "{table}"
    );
    // The others keep working together.
    ok(
        &at(root, "alice", &["netcheck", "--peer", "carol"]),
        "netcheck after the revocation",
    );
    drop(daemons);
}

#[test]
fn demo_init_says_so_and_writes_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let o = run_init(&dir, "alice,bob", &[]);
    assert!(ok(&o, "init").contains("FOR DEMOS ONLY"));
    assert_eq!(mode(&dir.join("alice/alice.key")), 0o600);
    assert_eq!(mode(&dir.join("alice/audit.key")), 0o600);
    let help = stdout(&confide(&["init", "--help"]));
    assert!(help.contains("DEMOS ONLY"), "{help}");
    assert!(help.contains("every member's private keys"), "{help}");
}

#[test]
fn keygen_never_overwrites_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    keygen(tmp.path(), "alice", 7999);
    let again = confide(&[
        "keygen",
        "--dir",
        path_str(&tmp.path().join("alice")),
        "--name",
        "alice",
        "--address",
        "127.0.0.1:7999",
    ]);
    assert_clean_error(&again, "keys are never overwritten");
}
