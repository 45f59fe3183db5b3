//! Shared fixtures: a three-member alliance with deterministic keys.
#![allow(dead_code)]

use std::path::Path;

use confide_audit::{AuditStore, EntryBody, Genesis, JobKind, Member, fingerprint};
use ed25519_dalek::SigningKey;

pub const NAMES: [&str; 3] = ["alice", "bob", "carol"];

pub fn key(name: &str) -> SigningKey {
    let i = NAMES.iter().position(|n| *n == name).expect("known name") as u8;
    SigningKey::from_bytes(&[i + 1; 32])
}

pub fn genesis() -> Genesis {
    let members = NAMES
        .iter()
        .map(|n| Member::new(*n, &key(n).verifying_key()))
        .collect();
    Genesis::new(members, "alice").unwrap()
}

pub fn body(member: &str, i: u64) -> EntryBody {
    EntryBody {
        timestamp_ms: 1_700_000_000_000 + i,
        member: member.into(),
        kind: if i.is_multiple_of(2) {
            JobKind::RiskQuery
        } else {
            JobKind::Psi
        },
        job_id: format!("job-{member}-{i}"),
        served_by: NAMES
            .iter()
            .filter(|n| **n != member)
            .map(|n| n.to_string())
            .collect(),
        fingerprint: fingerprint(&i.to_be_bytes(), b"request", b"result"),
    }
}

pub fn open(dir: &Path, name: &str) -> AuditStore {
    AuditStore::open(dir.join(format!("{name}.redb")), genesis(), name, key(name)).unwrap()
}

/// Cases per decoder property test: 256 by default; `CONFIDE_FUZZ_CASES=100000` in CI's
/// dedicated decoder step.
pub fn cases() -> u32 {
    std::env::var("CONFIDE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}
