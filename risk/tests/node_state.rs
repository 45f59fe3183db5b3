//! Issue 9: the node owns its key share and the pair-seed hand-off.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Alliance, MockGate, MockLog};
use confide_risk::state::{KEY_FILE, SEED_FILE};
use confide_risk::{
    Limits, NodeState, OverTransport, RiskError, RiskRecord, Role, ingest, install_pair_seed,
    needs_pair_seed, query,
};

fn open(dir: &Path, role: Role, log: &Arc<MockLog>) -> confide_risk::Result<NodeState<MockGate>> {
    NodeState::open(dir, role, MockGate(log.clone()), Limits::default())
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn s0_creates_secrets_0600_and_reopens_the_same_key_and_seed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("risk");
    let log = Arc::new(MockLog::default());
    let s0 = open(&dir, Role::S0, &log).unwrap();
    let pk = s0.node().public_key();
    let seed = s0.pair_seed_for("s1", "s1").unwrap();
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(SEED_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    drop(s0);
    let s0 = open(&dir, Role::S0, &log).unwrap();
    assert_eq!(s0.node().public_key(), pk);
    assert_eq!(*s0.pair_seed_for("s1", "s1").unwrap(), *seed);
    // Another directory is another key.
    let other = open(&root.path().join("other"), Role::S0, &log).unwrap();
    assert_ne!(other.node().public_key(), pk);
}

#[test]
fn the_pair_seed_goes_to_s1_only() {
    let root = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let s0 = open(&root.path().join("s0"), Role::S0, &log).unwrap();
    for (caller, s1) in [("mallory", "s1"), ("s0", "s1"), ("", ""), ("S1", "s1")] {
        let e = s0.pair_seed_for(caller, s1).unwrap_err();
        assert!(matches!(e, RiskError::PermissionDenied(_)), "{e}");
    }
    let seed = s0.pair_seed_for("s1", "s1").unwrap();

    // S1 cannot open before it has the seed, and hands it to nobody.
    let d1 = root.path().join("s1");
    assert!(needs_pair_seed(&d1, Role::S1).unwrap());
    let e = open(&d1, Role::S1, &log).unwrap_err().to_string();
    assert!(e.contains("install the pair seed"), "{e}");
    assert!(install_pair_seed(&d1, &seed[..31]).is_err());
    install_pair_seed(&d1, &seed[..]).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&d1.join(SEED_FILE)), 0o600);
    assert!(!needs_pair_seed(&d1, Role::S1).unwrap());
    // Installing the same seed again is fine; another one is refused.
    install_pair_seed(&d1, &seed[..]).unwrap();
    let e = install_pair_seed(&d1, &[0; 32]).unwrap_err().to_string();
    assert!(e.contains("different pair seed"), "{e}");
    let s1 = open(&d1, Role::S1, &log).unwrap();
    assert!(matches!(
        s1.pair_seed_for("s1", "s1"),
        Err(RiskError::PermissionDenied(_))
    ));
    assert!(!needs_pair_seed(&root.path().join("fresh"), Role::S0).unwrap());
}

#[test]
fn debug_never_shows_the_secrets() {
    let root = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let s0 = open(root.path(), Role::S0, &log).unwrap();
    let shown = format!("{s0:?} {:?}", s0.node());
    let key = std::fs::read(root.path().join(KEY_FILE)).unwrap();
    let seed = std::fs::read(root.path().join(SEED_FILE)).unwrap();
    for secret in [&key, &seed] {
        assert!(!shown.contains(&format!("{:?}", &secret[..])), "{shown}");
        assert!(!shown.contains(&format!("{:?}", &secret[..4])), "{shown}");
        assert!(!shown.contains(&hex::encode(secret)), "{shown}");
    }
    assert!(shown.contains("redacted"), "{shown}");
}

#[cfg(unix)]
#[test]
fn a_secret_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    drop(open(root.path(), Role::S0, &log).unwrap());
    let key = root.path().join(KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = open(root.path(), Role::S0, &log).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
    // A damaged key file is an error, not a panic.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, [1u8; 31]).unwrap();
    assert!(open(root.path(), Role::S0, &log).is_err());
}

/// Two nodes opened from their directories, S1 seeded by S0, answer correctly together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_opened_from_disk_answer_together() {
    let root = tempfile::tempdir().unwrap();
    let log = Arc::new(MockLog::default());
    let (d0, d1) = (root.path().join("s0"), root.path().join("s1"));
    let s0 = open(&d0, Role::S0, &log).unwrap();
    install_pair_seed(&d1, &s0.pair_seed_for("s1", "s1").unwrap()[..]).unwrap();
    let s1 = open(&d1, Role::S1, &log).unwrap();
    let alliance = Alliance::serve(s0.into_node(), s1.into_node(), log, root, &["h", "q"]);
    let recs = [RiskRecord {
        id: "alice".into(),
        values: [1, 2, 300, 1],
    }];
    let h = OverTransport(&alliance.clients[0]);
    ingest(&h, ["s0", "s1"], &recs, &alliance.source("h"))
        .await
        .unwrap();
    let q = OverTransport(&alliance.clients[1]);
    let a = query(&q, ["s0", "s1"], &["alice", "bob"], &alliance.source("q"))
        .await
        .unwrap();
    assert_eq!(
        [
            a[0].blacklisted,
            a[0].loans,
            a[0].amount,
            a[0].overdue,
            a[0].queried_by
        ],
        [1, 2, 300, 1, 1]
    );
    assert_eq!(a[1].queried_by, 1);
    alliance.shutdown().await;
}
