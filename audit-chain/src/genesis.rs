//! The genesis file: who the members are, who sequences, and the quorum.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AuditError, Result};
use crate::merkle::Hash;

/// Longest member name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// One alliance member: its name (as in its TLS certificate) and its Ed25519
/// public key, hex-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member name: 1..=64 printable ASCII characters, no spaces, no `+`.
    pub name: String,
    /// Ed25519 public key, 64 hex characters.
    pub public_key_hex: String,
}

impl Member {
    /// A member entry for `key`.
    pub fn new(name: impl Into<String>, key: &VerifyingKey) -> Self {
        Member {
            name: name.into(),
            public_key_hex: hex::encode(key.as_bytes()),
        }
    }
}

/// The audit-chain genesis. The log id is SHA-256 of [`Genesis::canonical_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// All members, in a fixed order.
    pub members: Vec<Member>,
    /// Name of the member that orders entries.
    pub sequencer: String,
    /// Cosignatures needed for a final checkpoint; must be a majority.
    pub quorum: usize,
}

/// Validate a member / key name (also used as the signed-note key name).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(AuditError::InvalidEntry(format!(
            "name {name:?} must be 1..={MAX_NAME_LEN} bytes"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic() && b != b'+') {
        return Err(AuditError::InvalidEntry(format!(
            "name {name:?} must be printable ASCII without spaces or '+'"
        )));
    }
    Ok(())
}

impl Genesis {
    /// A genesis with a majority quorum (`n/2 + 1`).
    pub fn new(members: Vec<Member>, sequencer: impl Into<String>) -> Result<Self> {
        let quorum = members.len() / 2 + 1;
        let g = Genesis {
            members,
            sequencer: sequencer.into(),
            quorum,
        };
        g.validate()?;
        Ok(g)
    }

    /// Check names, keys, sequencer and quorum.
    pub fn validate(&self) -> Result<()> {
        if self.members.is_empty() {
            return Err(AuditError::Genesis("no members".into()));
        }
        let mut seen = HashMap::new();
        for m in &self.members {
            check_name(&m.name).map_err(|e| AuditError::Genesis(e.to_string()))?;
            if seen.insert(m.name.as_str(), ()).is_some() {
                return Err(AuditError::Genesis(format!(
                    "member {:?} listed twice",
                    m.name
                )));
            }
            parse_key(&m.public_key_hex)
                .map_err(|e| AuditError::Genesis(format!("member {:?}: {e}", m.name)))?;
        }
        if !seen.contains_key(self.sequencer.as_str()) {
            return Err(AuditError::Genesis(format!(
                "sequencer {:?} is not a member",
                self.sequencer
            )));
        }
        let n = self.members.len();
        if self.quorum <= n / 2 || self.quorum > n {
            return Err(AuditError::Genesis(format!(
                "quorum {} must be a majority of {n} members ({}..={n})",
                self.quorum,
                n / 2 + 1
            )));
        }
        Ok(())
    }

    /// The sequencer of `view`: the genesis sequencer at view 0, then the next member in
    /// genesis order at each view change (wrapping around).
    pub fn sequencer_at(&self, view: u64) -> &str {
        let n = self.members.len().max(1) as u64;
        let first = self
            .members
            .iter()
            .position(|m| m.name == self.sequencer)
            .unwrap_or(0) as u64;
        let i = ((first + view % n) % n) as usize;
        self.members
            .get(i)
            .map_or(self.sequencer.as_str(), |m| m.name.as_str())
    }

    /// Parse and validate genesis JSON.
    pub fn from_json(json: &str) -> Result<Self> {
        let g: Genesis =
            serde_json::from_str(json).map_err(|e| AuditError::Genesis(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON for the genesis file.
    #[allow(
        clippy::expect_used,
        reason = "serializing this plain struct (string keys, no fallible serializers) cannot fail"
    )]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serializes")
    }

    /// Load from a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }

    /// Write to a file (pretty JSON, trailing newline).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        std::fs::write(path, self.to_json() + "\n")?;
        Ok(())
    }

    /// Canonical bytes: compact JSON with the fields in declaration order and
    /// lowercase hex keys, independent of the file's whitespace.
    #[allow(
        clippy::expect_used,
        reason = "serializing this plain struct (string keys, no fallible serializers) cannot fail"
    )]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let canon = Genesis {
            members: self
                .members
                .iter()
                .map(|m| Member {
                    name: m.name.clone(),
                    public_key_hex: m.public_key_hex.to_ascii_lowercase(),
                })
                .collect(),
            sequencer: self.sequencer.clone(),
            quorum: self.quorum,
        };
        serde_json::to_vec(&canon).expect("genesis serializes")
    }

    /// The log id: SHA-256 of the canonical bytes.
    pub fn log_id(&self) -> Hash {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// The checkpoint origin line for this log.
    pub fn origin(&self) -> String {
        origin_for(&self.log_id())
    }

    /// Public keys by member name (validated keys only).
    pub fn keys(&self) -> Result<HashMap<String, VerifyingKey>> {
        self.members
            .iter()
            .map(|m| Ok((m.name.clone(), parse_key(&m.public_key_hex)?)))
            .collect()
    }

    /// Whether `name` is a member.
    pub fn is_member(&self, name: &str) -> bool {
        self.members.iter().any(|m| m.name == name)
    }

    /// Position of `name` in the member list.
    pub fn member_index(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name)
    }
}

/// The checkpoint origin for a log id.
pub fn origin_for(log_id: &Hash) -> String {
    format!("confide.audit/{}", hex::encode(log_id))
}

fn parse_key(hex_key: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .map_err(|e| AuditError::Genesis(format!("public key hex: {e}")))?
        .try_into()
        .map_err(|_| AuditError::Genesis("public key must be 32 bytes".into()))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|e| AuditError::Genesis(format!("public key: {e}")))?;
    if key.is_weak() {
        return Err(AuditError::Genesis(
            "public key is a weak (small-order) point".into(),
        ));
    }
    Ok(key)
}

/// Generate a fresh member signing key from the OS-seeded thread RNG.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rng())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u8) -> Vec<Member> {
        (0..n)
            .map(|i| {
                let k = SigningKey::from_bytes(&[i + 1; 32]).verifying_key();
                Member::new(format!("m{i}"), &k)
            })
            .collect()
    }

    #[test]
    fn roundtrip_and_log_id_is_canonical() {
        let g = Genesis::new(members(3), "m1").unwrap();
        assert_eq!(g.quorum, 2);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("genesis.json");
        g.save(&p).unwrap();
        let back = Genesis::load(&p).unwrap();
        assert_eq!(back, g);
        // Whitespace and hex case do not change the log id; content does.
        let mut upper = g.clone();
        upper.members[0].public_key_hex = upper.members[0].public_key_hex.to_uppercase();
        let compact = serde_json::to_string(&upper).unwrap();
        assert_eq!(Genesis::from_json(&compact).unwrap().log_id(), g.log_id());
        let mut other = g.clone();
        other.sequencer = "m0".into();
        assert_ne!(other.log_id(), g.log_id());
        assert!(g.origin().starts_with("confide.audit/"));
        assert_eq!(g.keys().unwrap().len(), 3);
        assert_eq!(g.member_index("m2"), Some(2));
        assert!(!g.is_member("m3"));
    }

    #[test]
    fn rejects_bad_genesis() {
        let ok = Genesis::new(members(4), "m0").unwrap();
        assert_eq!(ok.quorum, 3);
        let mut g = ok.clone();
        g.quorum = 2; // not a majority of 4
        assert!(g.validate().is_err());
        g.quorum = 5;
        assert!(g.validate().is_err());
        let mut g = ok.clone();
        g.sequencer = "nobody".into();
        assert!(g.validate().is_err());
        let mut g = ok.clone();
        g.members[1].name = "m0".into();
        assert!(g.validate().is_err());
        let mut g = ok.clone();
        g.members[1].name = "has space".into();
        assert!(g.validate().is_err());
        let mut g = ok.clone();
        g.members[1].public_key_hex = "abcd".into();
        assert!(g.validate().is_err());
        let mut g = ok.clone();
        g.members[1].public_key_hex = hex::encode([0u8; 32]); // small-order point
        assert!(g.validate().is_err());
        assert!(Genesis::new(Vec::new(), "m0").is_err());
        assert!(Genesis::from_json("{\"members\": []}").is_err());
        assert!(generate_signing_key().verifying_key() != generate_signing_key().verifying_key());
    }
}
