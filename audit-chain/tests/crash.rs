//! Crash safety: a child process (this test binary, re-executed) appends and
//! replicates in a loop, printing every acknowledged index and every signed
//! (size, root); the parent SIGKILLs it at varying points, reopens the stores
//! and checks that no acknowledged entry is lost and that no size ever got two
//! different signed roots. Repeated so later children resume from a crashed store.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{body, open};

const ENV: &str = "CONFIDE_AUDIT_CRASH_DIR";

#[test]
#[ignore = "child process of `kill_reopen_nothing_acknowledged_is_lost`, which runs it"]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let (mut a, mut b) = (open(dir, "alice"), open(dir, "bob"));
    let out = std::io::stdout();
    // Safety net: never outlive a parent that failed to kill us.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let start = a.size();
        let appended = a
            .append_batch((start..start + 5).map(|i| body("alice", i)).collect())
            .unwrap();
        let mut o = out.lock();
        for (e, p) in &appended {
            writeln!(o, "ACK {} {}", p.index, hex::encode(e.leaf_hash())).unwrap();
        }
        let cp = a.checkpoint().unwrap().checkpoint;
        writeln!(o, "SIGNED alice {} {}", cp.size, hex::encode(cp.root)).unwrap();
        o.flush().unwrap();
        let up = a.update_for(b.size(), u64::MAX).unwrap();
        let cs = b.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
        writeln!(o, "SIGNED bob {} {}", cs.size, hex::encode(cs.root)).unwrap();
        o.flush().unwrap();
        drop(o);
        a.add_cosignature(&cs).unwrap();
    }
}

/// Kills the child when dropped, so a failing assertion never leaves it running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_reopen_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut signed: BTreeMap<(String, u64), String> = BTreeMap::new();
    for kill_after in [40usize, 133, 17, 260] {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "crash_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut reader = BufReader::new(child.0.stdout.take().unwrap());
        let mut seen = 0;
        let mut line = String::new();
        while seen < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("child exited early");
            }
            if !line.ends_with('\n') {
                continue;
            }
            if let Some(pos) = line.find("ACK ") {
                let mut it = line[pos + 4..].split_whitespace();
                let idx: u64 = it.next().unwrap().parse().unwrap();
                let h = it.next().unwrap().to_string();
                assert!(
                    acked.insert(idx, h).is_none(),
                    "index {idx} acknowledged twice"
                );
                seen += 1;
            } else if let Some(pos) = line.find("SIGNED ") {
                let mut it = line[pos + 7..].split_whitespace();
                let who = it.next().unwrap().to_string();
                let size: u64 = it.next().unwrap().parse().unwrap();
                let root = it.next().unwrap().to_string();
                if let Some(prev) = signed.insert((who.clone(), size), root.clone()) {
                    assert_eq!(prev, root, "{who} signed two roots at size {size}");
                }
                seen += 1;
            }
        }
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        drop(child);

        let (a, b) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
        assert!(a.fault().is_none(), "{:?}", a.fault());
        assert!(b.fault().is_none(), "{:?}", b.fault());
        for (&i, h) in &acked {
            assert_eq!(
                &hex::encode(a.entry(i).unwrap().leaf_hash()),
                h,
                "acknowledged entry {i}"
            );
        }
        for ((who, size), root) in &signed {
            let store = if who == "alice" { &a } else { &b };
            assert_eq!(
                store.root_at(*size).map(hex::encode).as_ref(),
                Some(root),
                "{who}'s signed root at {size} lost or changed"
            );
        }
        a.verify_all().unwrap();
        b.verify_all().unwrap();
    }
    assert!(acked.len() >= 100);
}
