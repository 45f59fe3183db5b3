//! Offline proof bundles: valid ones verify, tampered ones never do.

mod common;

use common::{NAMES, body, cases, genesis, key, open};
use confide_audit::{AuditError, Entry, Genesis, Member, verify_bundle};
use proptest::prelude::*;
use serde_json::Value;

/// A 13-entry log finalized with all three cosignatures; bundle for entry 6.
fn fixture() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, mut c) = (
        open(dir.path(), "alice"),
        open(dir.path(), "bob"),
        open(dir.path(), "carol"),
    );
    let entries: Vec<Entry> = (0..13)
        .map(|i| {
            let who = NAMES[(i % 3) as usize];
            Entry::create(body(who, i), &a.log_id(), &key(who)).unwrap()
        })
        .collect();
    a.append_signed(&entries).unwrap();
    a.checkpoint().unwrap();
    for m in [&mut b, &mut c] {
        let up = a.update_for(0, 100).unwrap();
        let cs = m.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
        a.add_cosignature(&cs).unwrap();
    }
    // All three signatures: more than the quorum of 2, so a dropped or
    // tampered one must still be caught by the strict check.
    let mut fin = a.latest_final().unwrap().clone();
    if fin.signatures.len() < 3 {
        let up = a.update_for(0, 100).unwrap();
        fin.signatures.push(
            c.apply(&up.entries, &up.checkpoint, &up.proof)
                .unwrap()
                .signature,
        );
    }
    assert_eq!(fin.signatures.len(), 3);
    b.record_final(&fin).unwrap();
    let bundle = b.prove(6).unwrap().to_json();
    (bundle, genesis().to_json())
}

fn other(c: char) -> char {
    match c {
        '0' => '1',
        'A' => 'B',
        _ if c.is_ascii_hexdigit() && c.is_ascii_lowercase() => '0',
        _ => 'A',
    }
}

fn with(bundle: &Value, field: &str, new: Value) -> String {
    let mut v = bundle.clone();
    v[field] = new;
    v.to_string()
}

#[test]
fn valid_bundle_verifies() {
    let (bundle, g) = fixture();
    let v = verify_bundle(&bundle, &g).unwrap();
    assert_eq!(v.index, 6);
    assert_eq!(v.tree_size, 13);
    assert_eq!(v.cosigners.len(), 3);
    assert_eq!(v.entry.body().job_id, "job-alice-6");
}

#[test]
fn any_changed_character_is_rejected() {
    let (bundle, g) = fixture();
    let v: Value = serde_json::from_str(&bundle).unwrap();
    let mut tried = 0;
    // Every character of the checkpoint note (text, signature names, key ids, signatures).
    let note = v["checkpoint"].as_str().unwrap().to_string();
    for (i, c) in note.char_indices() {
        let mut n = note.clone();
        n.replace_range(i..i + c.len_utf8(), &other(c).to_string());
        assert!(
            verify_bundle(&with(&v, "checkpoint", n.clone().into()), &g).is_err(),
            "note char {i}: {n}"
        );
        tried += 1;
    }
    // Every hex digit of every audit-path element.
    let path: Vec<String> = serde_json::from_value(v["audit_path"].clone()).unwrap();
    assert!(path.len() >= 3);
    for k in 0..path.len() {
        for (i, c) in path[k].char_indices() {
            let mut p = path.clone();
            p[k].replace_range(i..=i, &other(c).to_string());
            assert!(
                verify_bundle(&with(&v, "audit_path", p.into()), &g).is_err(),
                "path[{k}] char {i}"
            );
            tried += 1;
        }
    }
    // Path truncated or extended.
    let mut p = path.clone();
    p.pop();
    assert!(verify_bundle(&with(&v, "audit_path", p.into()), &g).is_err());
    let mut p = path.clone();
    p.push(path[0].clone());
    assert!(verify_bundle(&with(&v, "audit_path", p.into()), &g).is_err());
    // Every hex digit of the entry and of the genesis hash.
    for field in ["entry", "genesis_hash"] {
        let s = v[field].as_str().unwrap().to_string();
        for (i, c) in s.char_indices() {
            let mut t = s.clone();
            t.replace_range(i..=i, &other(c).to_string());
            assert!(
                verify_bundle(&with(&v, field, t.into()), &g).is_err(),
                "{field} char {i}"
            );
            tried += 1;
        }
    }
    // Index and size.
    for (field, delta) in [
        ("index", 1i64),
        ("index", -1),
        ("tree_size", 1),
        ("tree_size", -1),
    ] {
        let n = v[field].as_i64().unwrap() + delta;
        assert!(
            verify_bundle(&with(&v, field, n.into()), &g).is_err(),
            "{field} {delta}"
        );
    }
    assert!(tried > 1000, "{tried}");
}

#[test]
fn quorum_and_genesis_are_enforced() {
    let (bundle, g) = fixture();
    let v: Value = serde_json::from_str(&bundle).unwrap();
    let note = v["checkpoint"].as_str().unwrap();
    let lines: Vec<&str> = note.lines().collect();
    // Drop two of the three signatures: below quorum.
    let one = format!("{}\n", lines[..5].join("\n"));
    let err = verify_bundle(&with(&v, "checkpoint", one.into()), &g).unwrap_err();
    assert!(
        matches!(err, AuditError::QuorumNotMet { have: 1, need: 2 }),
        "{err}"
    );
    // Two signatures are enough.
    let two = format!("{}\n", lines[..6].join("\n"));
    verify_bundle(&with(&v, "checkpoint", two.into()), &g).unwrap();
    // The same signature twice does not count twice.
    let dup = format!("{}\n{}\n", lines[..5].join("\n"), lines[4]);
    assert!(verify_bundle(&with(&v, "checkpoint", dup.into()), &g).is_err());
    // A different genesis (another quorum, or another member key) rejects.
    let mut g2 = genesis();
    g2.quorum = 3;
    verify_bundle(&bundle, &g2.to_json()).unwrap_err();
    let mut g3 = genesis();
    g3.members[2] = Member::new(
        "carol",
        &ed25519_dalek::SigningKey::from_bytes(&[42; 32]).verifying_key(),
    );
    verify_bundle(&bundle, &g3.to_json()).unwrap_err();
    // Garbage inputs are errors, not panics.
    assert!(verify_bundle("{}", &g).is_err());
    assert!(verify_bundle(&bundle, "not json").is_err());
    assert!(Genesis::from_json(&g).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Parsing an entry from arbitrary bytes never panics.
    #[test]
    fn entry_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Entry::from_bytes(&bytes);
    }

    /// Parsing a mutated valid entry never panics, and a parsed mutant never
    /// verifies under its member's key.
    #[test]
    fn mutated_entries_never_panic(i in 0usize..200, x in 1u8..=255, cut in 0usize..300) {
        let e = Entry::create(body("bob", 3), &genesis().log_id(), &key("bob")).unwrap();
        let mut b = e.as_bytes().to_vec();
        let i = i % b.len();
        b[i] ^= x;
        if let Ok(p) = Entry::from_bytes(&b) {
            prop_assert!(p.verify(&key("bob").verifying_key()).is_err());
        }
        let _ = Entry::from_bytes(&e.as_bytes()[..cut.min(e.as_bytes().len())]);
    }

    /// Parsing arbitrary text as a signed note or bundle never panics.
    #[test]
    fn note_parse_never_panics(s in "\\PC{0,300}", t in "[a-z0-9\n\u{2014} +/=]{0,200}") {
        let _ = confide_audit::SignedCheckpoint::from_note(&s);
        let _ = confide_audit::SignedCheckpoint::from_note(&t);
        let _ = confide_audit::Checkpoint::parse_text(&s);
        let _ = confide_audit::Checkpoint::parse_text(&t);
        let _ = confide_audit::NoteSignature::parse_line(&s);
        let _ = verify_bundle(&s, &t);
    }
}
