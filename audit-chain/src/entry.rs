//! Log entries: a fixed binary layout signed by the member that started the job.
//!
//! Layout (version 1, all integers big-endian):
//!
//! ```text
//! u8       version (= 1)
//! [32]     log id (SHA-256 of the canonical genesis)
//! u64      timestamp, milliseconds since the Unix epoch
//! u8 + n   member name (1..=64 bytes)
//! u8       job kind
//! u8 + n   job id (1..=128 printable ASCII bytes)
//! u8       number of served-by parties (0..=32), each u8 + n name
//! [32]     fingerprint (see [`fingerprint`])
//! [64]     Ed25519 signature by `member` over "confide/audit/entry/v1\n" ‖ all bytes above
//! ```

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AuditError, Result};
use crate::genesis::check_name;
use crate::merkle::{Hash, leaf_hash};

/// Entry format version.
pub const ENTRY_VERSION: u8 = 1;
/// Longest job id accepted.
pub const MAX_JOB_ID_LEN: usize = 128;
/// Most served-by parties in one entry.
pub const MAX_SERVED_BY: usize = 32;
const ENTRY_CONTEXT: &[u8] = b"confide/audit/entry/v1\n";
const FINGERPRINT_CONTEXT: &[u8] = b"confide/audit/fingerprint/v1\n";

/// What kind of job an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Private set intersection.
    Psi,
    /// Vertical training.
    Train,
    /// Risk data ingest.
    RiskIngest,
    /// One risk query.
    RiskQuery,
    /// Alliance administration (policy changes and the like).
    Admin,
    /// Scoring with a secret-shared model.
    Predict,
}

impl JobKind {
    fn code(self) -> u8 {
        match self {
            JobKind::Psi => 1,
            JobKind::Train => 2,
            JobKind::RiskIngest => 3,
            JobKind::RiskQuery => 4,
            JobKind::Admin => 5,
            JobKind::Predict => 6,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => JobKind::Psi,
            2 => JobKind::Train,
            3 => JobKind::RiskIngest,
            4 => JobKind::RiskQuery,
            5 => JobKind::Admin,
            6 => JobKind::Predict,
            _ => return None,
        })
    }

    /// Short lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Psi => "psi",
            JobKind::Train => "train",
            JobKind::RiskIngest => "risk-ingest",
            JobKind::RiskQuery => "risk-query",
            JobKind::Admin => "admin",
            JobKind::Predict => "predict",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unsigned content of an entry, as the daemon fills it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Member that started the job (and signs the entry).
    pub member: String,
    /// Job kind.
    pub kind: JobKind,
    /// Job id; must not contain a plaintext or unsalted-hashed record ID.
    pub job_id: String,
    /// Parties that served the job (matches or answers), for contribution counts.
    pub served_by: Vec<String>,
    /// Salted commitment to the job request and its result ([`fingerprint`]).
    pub fingerprint: Hash,
}

impl EntryBody {
    fn validate(&self) -> Result<()> {
        check_name(&self.member)?;
        if self.job_id.is_empty()
            || self.job_id.len() > MAX_JOB_ID_LEN
            || !self.job_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AuditError::InvalidEntry(format!(
                "job id must be 1..={MAX_JOB_ID_LEN} printable ASCII bytes without spaces"
            )));
        }
        if self.served_by.len() > MAX_SERVED_BY {
            return Err(AuditError::InvalidEntry(format!(
                "at most {MAX_SERVED_BY} served-by parties"
            )));
        }
        self.served_by.iter().try_for_each(|n| check_name(n))
    }

    fn encode(&self, log_id: &Hash, out: &mut Vec<u8>) {
        out.push(ENTRY_VERSION);
        out.extend_from_slice(log_id);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        put_str(out, &self.member);
        out.push(self.kind.code());
        put_str(out, &self.job_id);
        out.push(self.served_by.len() as u8);
        for s in &self.served_by {
            put_str(out, s);
        }
        out.extend_from_slice(&self.fingerprint);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A signed log entry. Holds its canonical bytes; parsing checks the layout.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    body: EntryBody,
    log_id: Hash,
    bytes: Vec<u8>,
    leaf: Hash,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("member", &self.body.member)
            .field("kind", &self.body.kind)
            .field("job_id", &self.body.job_id)
            .field("timestamp_ms", &self.body.timestamp_ms)
            .field("served_by", &self.body.served_by)
            .field("fingerprint", &hex::encode(self.body.fingerprint))
            .finish()
    }
}

impl Entry {
    /// Encode `body` for the log `log_id` and sign it with the member's key.
    /// The key must be the one genesis lists for `body.member` (checked on append).
    pub fn create(body: EntryBody, log_id: &Hash, key: &SigningKey) -> Result<Self> {
        body.validate()?;
        let mut bytes = Vec::with_capacity(256);
        body.encode(log_id, &mut bytes);
        let sig = key.sign(&signing_message(&bytes));
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(Entry {
            body,
            log_id: *log_id,
            leaf: leaf_hash(&bytes),
            bytes,
        })
    }

    /// Parse an entry from its bytes (never panics; checks layout only, not the signature).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(AuditError::malformed("entry", format!("version {version}")));
        }
        let log_id: Hash = r.array()?;
        let timestamp_ms = u64::from_be_bytes(r.array()?);
        let member = r.string()?;
        let kind = JobKind::from_code(r.u8()?)
            .ok_or_else(|| AuditError::malformed("entry", "unknown job kind"))?;
        let job_id = r.string()?;
        let n = r.u8()? as usize;
        let mut served_by = Vec::with_capacity(n.min(MAX_SERVED_BY));
        for _ in 0..n {
            served_by.push(r.string()?);
        }
        let fingerprint: Hash = r.array()?;
        let _sig: [u8; 64] = r.array()?;
        if r.pos != bytes.len() {
            return Err(AuditError::malformed("entry", "trailing bytes"));
        }
        let body = EntryBody {
            timestamp_ms,
            member,
            kind,
            job_id,
            served_by,
            fingerprint,
        };
        body.validate()
            .map_err(|e| AuditError::malformed("entry", e.to_string()))?;
        Ok(Entry {
            body,
            log_id,
            bytes: bytes.to_vec(),
            leaf: leaf_hash(bytes),
        })
    }

    /// Canonical bytes (what the Merkle leaf hashes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content.
    pub fn body(&self) -> &EntryBody {
        &self.body
    }

    /// Log id the entry was made for.
    pub fn log_id(&self) -> &Hash {
        &self.log_id
    }

    /// RFC 6962 leaf hash of the entry: the "entry hash" of inclusion promises.
    pub fn leaf_hash(&self) -> Hash {
        self.leaf
    }

    fn signature(&self) -> Signature {
        // Entries are only built by `create` / `from_bytes`, which guarantee the
        // trailing 64-byte signature; a shorter buffer yields an all-zero one
        // that never verifies.
        let n = self.bytes.len();
        let sig: [u8; 64] = self
            .bytes
            .get(n.saturating_sub(64)..)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 64]);
        Signature::from_bytes(&sig)
    }

    /// Verify the member's signature with `verify_strict`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<()> {
        let n = self.bytes.len();
        key.verify_strict(&signing_message(&self.bytes[..n - 64]), &self.signature())
            .map_err(|_| {
                AuditError::BadSignature(format!(
                    "entry of job {:?} by {:?}",
                    self.body.job_id, self.body.member
                ))
            })
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.bytes))
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        Entry::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENTRY_CONTEXT.len() + body.len());
    m.extend_from_slice(ENTRY_CONTEXT);
    m.extend_from_slice(body);
    m
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| AuditError::malformed("entry", "truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| AuditError::malformed("entry", "truncated"))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| AuditError::malformed("entry", "name is not UTF-8"))
    }
}

/// The job request a fingerprint commits to: parties, the content hashes of
/// the datasets used, and the job parameters, in a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Job kind.
    pub kind: JobKind,
    /// Participating parties, in protocol order.
    pub parties: Vec<String>,
    /// SHA-256 content hashes of the datasets, in party order.
    pub dataset_hashes: Vec<Hash>,
    /// Job parameters (the daemon's canonical encoding, e.g. JSON).
    pub parameters: Vec<u8>,
}

impl JobRequest {
    /// Canonical bytes: every field length-prefixed (u64 big-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.kind.code()];
        out.extend_from_slice(&(self.parties.len() as u64).to_be_bytes());
        for p in &self.parties {
            put_lp(&mut out, p.as_bytes());
        }
        out.extend_from_slice(&(self.dataset_hashes.len() as u64).to_be_bytes());
        for h in &self.dataset_hashes {
            out.extend_from_slice(h);
        }
        put_lp(&mut out, &self.parameters);
        out
    }
}

fn put_lp(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

/// A random 32-byte salt for [`fingerprint`] (OS-seeded CSPRNG).
pub fn new_salt() -> [u8; 32] {
    let mut s = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut s);
    s
}

/// Salted commitment to a job's request and result:
/// SHA-256("confide/audit/fingerprint/v1\n" ‖ lp(salt) ‖ lp(request) ‖ lp(result)),
/// lp = u64 big-endian length ‖ bytes. Without the salt (kept by the job's
/// parties) the fingerprint reveals nothing checkable about the request or result.
pub fn fingerprint(salt: &[u8], request_bytes: &[u8], result_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_CONTEXT);
    for part in [salt, request_bytes, result_bytes] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> EntryBody {
        EntryBody {
            timestamp_ms: 1_700_000_000_000,
            member: "alice".into(),
            kind: JobKind::Psi,
            job_id: "job-1".into(),
            served_by: vec!["bob".into(), "carol".into()],
            fingerprint: fingerprint(b"salt", b"req", b"res"),
        }
    }

    #[test]
    fn roundtrip_and_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let e = Entry::create(body(), &[3; 32], &key).unwrap();
        let p = Entry::from_bytes(e.as_bytes()).unwrap();
        assert_eq!(p, e);
        assert_eq!(p.body(), &body());
        assert_eq!(p.log_id(), &[3; 32]);
        p.verify(&key.verifying_key()).unwrap();
        assert!(p.verify(&other.verifying_key()).is_err());
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
    }

    #[test]
    fn every_kind_round_trips_by_code_and_name() {
        let all = [
            JobKind::Psi,
            JobKind::Train,
            JobKind::RiskIngest,
            JobKind::RiskQuery,
            JobKind::Admin,
            JobKind::Predict,
        ];
        let key = SigningKey::from_bytes(&[7; 32]);
        for k in all {
            assert_eq!(JobKind::from_code(k.code()), Some(k));
            let mut b = body();
            b.kind = k;
            let e = Entry::create(b, &[3; 32], &key).unwrap();
            assert_eq!(Entry::from_bytes(e.as_bytes()).unwrap().body().kind, k);
        }
        assert_eq!(JobKind::Predict.as_str(), "predict");
        assert_ne!(JobKind::Predict.code(), JobKind::Train.code());
    }

    #[test]
    fn every_byte_matters() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let e = Entry::create(body(), &[3; 32], &key).unwrap();
        for i in 0..e.as_bytes().len() {
            let mut b = e.as_bytes().to_vec();
            b[i] ^= 0x01;
            if let Ok(p) = Entry::from_bytes(&b) {
                assert!(p.verify(&key.verifying_key()).is_err(), "byte {i}");
            }
        }
        assert!(Entry::from_bytes(&e.as_bytes()[..e.as_bytes().len() - 1]).is_err());
        let mut long = e.as_bytes().to_vec();
        long.push(0);
        assert!(Entry::from_bytes(&long).is_err());
    }

    #[test]
    fn rejects_bad_bodies() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut b = body();
        b.job_id = "has space".into();
        assert!(Entry::create(b, &[0; 32], &key).is_err());
        let mut b = body();
        b.member = "x".repeat(65);
        assert!(Entry::create(b, &[0; 32], &key).is_err());
        let mut b = body();
        b.served_by = vec!["p".into(); 33];
        assert!(Entry::create(b, &[0; 32], &key).is_err());
    }

    #[test]
    fn fingerprint_binds_every_part() {
        let f = fingerprint(b"s", b"ab", b"c");
        assert_ne!(f, fingerprint(b"s", b"a", b"bc"));
        assert_ne!(f, fingerprint(b"t", b"ab", b"c"));
        assert_ne!(f, fingerprint(b"s", b"ab", b"d"));
        assert_eq!(f, fingerprint(b"s", b"ab", b"c"));
        let r = JobRequest {
            kind: JobKind::Train,
            parties: vec!["a".into(), "b".into()],
            dataset_hashes: vec![[1; 32]],
            parameters: b"{}".to_vec(),
        };
        let mut r2 = r.clone();
        r2.parties = vec!["ab".into()];
        assert_ne!(r.to_bytes(), r2.to_bytes());
        assert_ne!(new_salt(), new_salt());
    }
}
