//! Checkpoints in the C2SP tlog-checkpoint / signed-note format, cosignatures,
//! inclusion promises and equivocation evidence.
//!
//! A checkpoint note is `origin\nsize\nbase64(root)\n`, then a blank line, then
//! one line per signature: `— <member name> base64(key id ‖ Ed25519 signature)`
//! with key id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)\[:4\] (signature type
//! 0x01, plain Ed25519 over the note text).

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::hex_array;
use crate::error::{AuditError, Result};
pub use crate::evidence::Equivocation;
use crate::genesis::{Genesis, check_name};
use crate::merkle::{Hash, verify_consistency};

const SIG_PREFIX: &str = "\u{2014} ";
/// Largest note accepted from a peer or file.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted in one note.
pub const MAX_NOTE_SIGNATURES: usize = 100;
const PROMISE_CONTEXT: &[u8] = b"confide/audit/promise/v1\n";

/// C2SP signed-note key id for an Ed25519 key.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, 0x01]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A tree head: origin, size, root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity line (`confide.audit/<hex log id>`).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The signed note text (three lines, each ending in a newline).
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse the note text (exactly origin, size, root; no extension lines).
    pub fn parse_text(text: &str) -> Result<Self> {
        let bad = |why: &str| AuditError::malformed("checkpoint", why);
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(bad("expected exactly origin, size and root lines"));
        };
        if origin.is_empty() || origin.contains([' ', '+']) {
            return Err(bad("bad origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("bad size"));
        }
        let size: u64 = size.parse().map_err(|_| bad("size out of range"))?;
        let root: Hash = B64
            .decode(root)
            .map_err(|_| bad("root is not base64"))?
            .try_into()
            .map_err(|_| bad("root is not 32 bytes"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Sign the note text as `name`.
    pub fn sign(&self, name: &str, key: &SigningKey) -> NoteSignature {
        NoteSignature {
            name: name.to_string(),
            key_id: key_id(name, &key.verifying_key()),
            signature: key.sign(self.text().as_bytes()).to_bytes(),
        }
    }
}

/// One signature line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name (the member name).
    pub name: String,
    /// Key id (first 4 bytes of the key hash).
    pub key_id: [u8; 4],
    /// Ed25519 signature over the note text.
    pub signature: [u8; 64],
}

impl NoteSignature {
    /// The line without the trailing newline.
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}", self.name, B64.encode(raw))
    }

    /// Parse one line (without the newline).
    pub fn parse_line(line: &str) -> Result<Self> {
        let bad = |why: &str| AuditError::malformed("signature line", why);
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("no em dash"))?;
        let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("no signature"))?;
        check_name(name).map_err(|_| bad("bad key name"))?;
        let raw = B64.decode(b64).map_err(|_| bad("not base64"))?;
        if raw.len() != 68 {
            return Err(bad("not key id + Ed25519 signature"));
        }
        let (key_id, signature) = raw.split_at(4);
        Ok(NoteSignature {
            name: name.to_string(),
            key_id: key_id.try_into().map_err(|_| bad("key id"))?,
            signature: signature.try_into().map_err(|_| bad("signature"))?,
        })
    }

    /// Verify over `text` with `key` (key id must match; `verify_strict`).
    pub fn verify(&self, text: &str, key: &VerifyingKey) -> Result<()> {
        if self.key_id != key_id(&self.name, key) {
            return Err(AuditError::BadSignature(format!(
                "key id of {:?} does not match its genesis key",
                self.name
            )));
        }
        key.verify_strict(text.as_bytes(), &Signature::from_bytes(&self.signature))
            .map_err(|_| {
                AuditError::BadSignature(format!("checkpoint signature by {:?}", self.name))
            })
    }
}

/// A checkpoint with its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head.
    pub checkpoint: Checkpoint,
    /// Signatures, in note order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// The full signed note.
    pub fn to_note(&self) -> String {
        let mut s = self.checkpoint.text();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
            s.push('\n');
        }
        s
    }

    /// Parse a signed note (size-limited; never panics).
    pub fn from_note(note: &str) -> Result<Self> {
        let bad = |why: &str| AuditError::malformed("signed note", why);
        if note.len() > MAX_NOTE_BYTES {
            return Err(bad("too large"));
        }
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(bad("control character"));
        }
        let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line"))?;
        let text = &note[..=split];
        let sigs = note[split + 2..]
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let checkpoint = Checkpoint::parse_text(text)?;
        let lines: Vec<&str> = sigs.split('\n').collect();
        if lines.len() > MAX_NOTE_SIGNATURES {
            return Err(bad("too many signatures"));
        }
        let signatures = lines
            .into_iter()
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>>>()?;
        Ok(SignedCheckpoint {
            checkpoint,
            signatures,
        })
    }

    /// Verify the signature of `name` (must be present and valid).
    pub fn verify_signer(&self, name: &str, key: &VerifyingKey) -> Result<()> {
        let text = self.checkpoint.text();
        let sig = self
            .signatures
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| AuditError::BadSignature(format!("no signature by {name:?}")))?;
        sig.verify(&text, key)
    }

    /// Strict quorum check for final checkpoints: every signature line must be
    /// by a distinct genesis member and verify, the origin must be this log's,
    /// and there must be at least `quorum` of them. Returns the signers.
    pub fn verify_quorum(
        &self,
        genesis: &Genesis,
        keys: &HashMap<String, VerifyingKey>,
    ) -> Result<Vec<String>> {
        if self.checkpoint.origin != genesis.origin() {
            return Err(AuditError::BadSignature(
                "checkpoint is for another log".into(),
            ));
        }
        let text = self.checkpoint.text();
        let mut seen = HashSet::new();
        for sig in &self.signatures {
            let key = keys
                .get(&sig.name)
                .ok_or_else(|| AuditError::UnknownMember(sig.name.clone()))?;
            if !seen.insert(sig.name.as_str()) {
                return Err(AuditError::BadSignature(format!(
                    "{:?} signed twice",
                    sig.name
                )));
            }
            sig.verify(&text, key)?;
        }
        if seen.len() < genesis.quorum {
            return Err(AuditError::QuorumNotMet {
                have: seen.len(),
                need: genesis.quorum,
            });
        }
        Ok(self.signatures.iter().map(|s| s.name.clone()).collect())
    }
}

impl Serialize for SignedCheckpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_note())
    }
}

impl<'de> Deserialize<'de> for SignedCheckpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SignedCheckpoint::from_note(&s).map_err(serde::de::Error::custom)
    }
}

/// A checkpoint carrying at least a quorum of valid genesis-member signatures
/// (check with [`SignedCheckpoint::verify_quorum`]).
pub type FinalCheckpoint = SignedCheckpoint;

/// A member's cosignature on the sequencer's checkpoint (one note signature line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosignature {
    /// Checkpoint size cosigned.
    pub size: u64,
    /// Checkpoint root cosigned.
    #[serde(with = "hex_array")]
    pub root: Hash,
    /// The signature line (`— name base64(...)`).
    #[serde(with = "line_serde")]
    pub signature: NoteSignature,
}

mod line_serde {
    use super::NoteSignature;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &NoteSignature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.line())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NoteSignature, D::Error> {
        NoteSignature::parse_line(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// The sequencer's signed promise, returned at once by `append`, that an entry
/// has index `index` in the log `log_id`. Risk evaluations log before they are
/// answered: the caller then waits for a final checkpoint covering the entry,
/// and its evidence carries both (the promise for the signed time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionPromise {
    /// Index the entry was given.
    pub index: u64,
    /// RFC 6962 leaf hash of the entry.
    #[serde(with = "hex_array")]
    pub entry_hash: Hash,
    /// Log id.
    #[serde(with = "hex_array")]
    pub log_id: Hash,
    /// Sequencer time of the append, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Sequencer name.
    pub sequencer: String,
    /// The view in which the sequencer appended the entry (0 before any view change).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub view: u64,
    /// Sequencer's Ed25519 signature.
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl InclusionPromise {
    fn message(index: u64, entry_hash: &Hash, log_id: &Hash, ts: u64, view: u64) -> Vec<u8> {
        let mut m = Vec::with_capacity(PROMISE_CONTEXT.len() + 88);
        m.extend_from_slice(PROMISE_CONTEXT);
        m.extend_from_slice(log_id);
        m.extend_from_slice(&index.to_be_bytes());
        m.extend_from_slice(entry_hash);
        m.extend_from_slice(&ts.to_be_bytes());
        // View 0 keeps the original layout, so promises made before views still verify.
        if view > 0 {
            m.extend_from_slice(&view.to_be_bytes());
        }
        m
    }

    pub(crate) fn sign(
        index: u64,
        entry_hash: Hash,
        log_id: Hash,
        timestamp_ms: u64,
        (sequencer, view): (&str, u64),
        key: &SigningKey,
    ) -> Self {
        let signature = key
            .sign(&Self::message(
                index,
                &entry_hash,
                &log_id,
                timestamp_ms,
                view,
            ))
            .to_bytes();
        InclusionPromise {
            index,
            entry_hash,
            log_id,
            timestamp_ms,
            sequencer: sequencer.to_string(),
            view,
            signature,
        }
    }

    /// Verify against the genesis: right log, signed by its sequencer.
    pub fn verify(&self, genesis: &Genesis) -> Result<()> {
        if self.log_id != genesis.log_id() {
            return Err(AuditError::BadSignature(
                "promise is for another log".into(),
            ));
        }
        if self.sequencer != genesis.sequencer_at(self.view) {
            return Err(AuditError::BadSignature(format!(
                "promise not by the sequencer of view {}",
                self.view
            )));
        }
        let keys = genesis.keys()?;
        let key = keys
            .get(&self.sequencer)
            .ok_or_else(|| AuditError::UnknownMember(self.sequencer.clone()))?;
        let m = Self::message(
            self.index,
            &self.entry_hash,
            &self.log_id,
            self.timestamp_ms,
            self.view,
        );
        key.verify_strict(&m, &Signature::from_bytes(&self.signature))
            .map_err(|_| AuditError::BadSignature("inclusion promise".into()))
    }
}

/// The check lives here, above the evidence type, because it needs signed
/// notes and the genesis.
impl Equivocation {
    /// Check the evidence independently, with only the genesis.
    pub fn verify(&self, genesis: &Genesis) -> Result<()> {
        let keys = genesis.keys()?;
        let a = SignedCheckpoint::from_note(&self.note_a)?;
        let b = SignedCheckpoint::from_note(&self.note_b)?;
        // Both signed by the same member, as sequencer (of whichever views).
        let seq = a
            .signatures
            .first()
            .map(|s| s.name.clone())
            .ok_or_else(|| AuditError::BadSignature("unsigned evidence".into()))?;
        let seq_key = keys
            .get(&seq)
            .ok_or_else(|| AuditError::UnknownMember(seq.clone()))?;
        for c in [&a, &b] {
            if c.checkpoint.origin != genesis.origin() {
                return Err(AuditError::BadSignature(
                    "evidence is for another log".into(),
                ));
            }
            c.verify_signer(&seq, seq_key)?;
        }
        let (ca, cb) = (&a.checkpoint, &b.checkpoint);
        if ca.size != self.size_a || cb.size != self.size_b || cb.size > ca.size {
            return Err(AuditError::InvalidProof("evidence sizes"));
        }
        if !verify_consistency(cb.size, ca.size, &self.alt_root, &ca.root, &self.proof) {
            return Err(AuditError::InvalidProof("evidence consistency proof"));
        }
        if self.alt_root == cb.root {
            return Err(AuditError::InvalidProof("checkpoints are consistent"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_roundtrip_and_format() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 20852163,
            root: [9; 32],
        };
        let sc = SignedCheckpoint {
            signatures: vec![cp.sign("alice", &key)],
            checkpoint: cp.clone(),
        };
        let note = sc.to_note();
        assert!(note.starts_with("example.com/log\n20852163\n"));
        assert!(note.contains("\n\n\u{2014} alice "));
        assert!(note.ends_with('\n'));
        let back = SignedCheckpoint::from_note(&note).unwrap();
        assert_eq!(back, sc);
        back.verify_signer("alice", &key.verifying_key()).unwrap();
        for bad in [
            note.replace("20852163", "020852163"),
            note.replace("\n\n", "\n"),
            note.trim_end().to_string(),
            note.replace('\u{2014}', "-"),
        ] {
            assert!(
                SignedCheckpoint::from_note(&bad)
                    .and_then(|s| s.verify_signer("alice", &key.verifying_key()))
                    .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_id_uses_name_and_type() {
        let k = SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert_ne!(key_id("a", &k), key_id("b", &k));
        let mut h = Sha256::new();
        h.update(b"a\n\x01");
        h.update(k.as_bytes());
        assert_eq!(key_id("a", &k)[..], h.finalize()[..4]);
    }
}
