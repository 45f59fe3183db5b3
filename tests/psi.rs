//! PSI across three real daemons on 127.0.0.1: two-party, three-party and size-only runs
//! equal the plaintext intersection; policy and input errors are clear.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;

fn write_ids(path: &Path, ids: &[String], extra: &str) {
    let mut s = String::from("phone,name\n");
    for id in ids {
        s.push_str(&format!("{id},x\n"));
    }
    s.push_str(extra);
    std::fs::write(path, s).unwrap();
}

/// Every file under `p`.
fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .flat_map(|e| walk(&e.path()))
            .collect()
    } else {
        vec![p.to_path_buf()]
    }
}

fn read_output(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id"));
    lines.map(str::to_string).collect()
}

#[test]
fn psi_between_real_daemons() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let id = |i: u32| format!("+4479{i:08}");
    let alice: Vec<String> = (0..3000).map(id).collect();
    let bob: Vec<String> = (2000..6000).map(id).collect();
    let carol: Vec<String> = (2500..2600).chain(9000..9100).map(id).collect();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // alice's file has a duplicate, a blank line and a malformed row.
    write_ids(
        &data.join("alice.csv"),
        &alice,
        &format!("{},x\n\nbad,row,extra\n", alice[0]),
    );
    write_ids(&data.join("bob.csv"), &bob, "");
    write_ids(&data.join("carol.csv"), &carol, "");
    add_dataset(
        &dir,
        "alice",
        "customers",
        &data.join("alice.csv"),
        "phone",
        "{ psi = [\"bob\", \"carol\"] }",
    );
    add_dataset(
        &dir,
        "bob",
        "customers",
        &data.join("bob.csv"),
        "phone",
        "{ psi = [\"alice\", \"carol\"] }",
    );
    add_dataset(
        &dir,
        "carol",
        "customers",
        &data.join("carol.csv"),
        "phone",
        "{ psi = [\"alice\", \"bob\"] }",
    );
    add_dataset(
        &dir,
        "carol",
        "private",
        &data.join("carol.csv"),
        "phone",
        "{ psi = [] }",
    );
    add_dataset(
        &dir,
        "alice",
        "wrongcol",
        &data.join("alice.csv"),
        "national_id",
        "{}",
    );
    let _d = start(&dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    let psi_alice = |peers: &[&str], extra: &[&str]| psi(&dir, "alice", "customers", peers, extra);

    // Two parties.
    let out = root.path().join("ab.csv");
    let o = psi_alice(&["bob:customers"], &["--output", path_str(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: BTreeSet<String> = set(&alice).intersection(&set(&bob)).cloned().collect();
    assert_eq!(read_output(&out), expected);
    let line = stdout(&o);
    assert!(line.contains("intersection 1000"), "{line}");
    assert!(
        line.contains("1 duplicates") && line.contains("1 malformed"),
        "{line}"
    );
    assert!(line.contains("bob 4000"), "{line}");
    // Two parties run KKRT unless told otherwise, and the summary says so.
    assert!(line.trim_end().ends_with("(kkrt PSI)"), "{line}");

    // The same job on ECDH, delivered to both parties: the same intersection.
    let out_ecdh = root.path().join("ab-ecdh.csv");
    let o = psi_alice(
        &["bob:customers"],
        &[
            "--output",
            path_str(&out_ecdh),
            "--protocol",
            "ecdh",
            "--to-all",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).trim_end().ends_with("(ecdh PSI)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(read_output(&out_ecdh), expected);
    // KKRT delivered to both: bob's copy lands in his results folder.
    let out_all = root.path().join("ab-all.csv");
    let o = psi_alice(
        &["bob:customers"],
        &[
            "--output",
            path_str(&out_all),
            "--protocol",
            "kkrt",
            "--to-all",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_output(&out_all), expected);
    let job = stdout(&o)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let bobs = std::fs::read_dir(dir.join("bob"))
        .unwrap()
        .flatten()
        .flat_map(|e| walk(&e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == format!("psi-{job}.csv").as_str())
        })
        .expect("bob's copy of the intersection");
    assert_eq!(read_output(&bobs), expected);

    // KKRT is refused where it does not apply, before anything runs.
    let never = root.path().join("never.csv");
    let o = psi_alice(
        &["bob:customers", "carol:customers"],
        &["--output", path_str(&never), "--protocol", "kkrt"],
    );
    assert_clean_error(&o, "KKRT is a two-party protocol");
    assert!(!never.exists());
    let o = psi_alice(&["bob:customers"], &["--size-only", "--protocol", "kkrt"]);
    assert_clean_error(&o, "KKRT does not offer size-only output");

    // Three parties.
    let out3 = root.path().join("abc.csv");
    let o = psi_alice(
        &["bob:customers", "carol:customers"],
        &["--output", path_str(&out3)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let expected3: BTreeSet<String> = expected.intersection(&set(&carol)).cloned().collect();
    assert_eq!(expected3.len(), 100);
    assert_eq!(read_output(&out3), expected3);

    // Size only.
    let o = psi_alice(&["bob:customers"], &["--size-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("intersection 1000"), "{}", stdout(&o));

    // Policy: carol does not allow alice on `private`.
    let o = psi_alice(&["carol:private"], &["--size-only"]);
    assert_clean_error(
        &o,
        "does not allow `alice` to run `psi` on dataset `private`",
    );

    // A missing ID column fails before any cryptography, naming the column.
    let o = psi(
        &dir,
        "alice",
        "wrongcol",
        &["bob:customers"],
        &["--size-only"],
    );
    assert_clean_error(&o, "no column `national_id`");

    // An unknown peer.
    let o = psi_alice(&["zed:customers"], &["--size-only"]);
    assert_clean_error(&o, "unknown peer `zed`");
}
