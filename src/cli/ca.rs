//! `confide ca`: the alliance operator's certificate authority for a real deployment.
//!
//! * `ca init` creates the CA. Its private key is stored encrypted (`ca.key.enc`: Argon2id
//!   from a passphrase, ChaCha20-Poly1305), never as plaintext PEM, and is decrypted in
//!   memory (zeroized after use) only by `ca sign` and `ca revoke`.
//! * `ca sign` turns a member's request (written by `confide keygen` at the member: name,
//!   address, audit public key, certificate signing request) into its certificate, after
//!   checking the request's signature and that its name is the member's; the member is
//!   recorded in `members.json` (name, address, audit public key, certificate serial).
//! * `ca genesis` writes the audit-chain genesis of the founding members.
//! * `ca revoke` marks a member revoked and writes a new CRL (`crl.pem`, signed by the CA)
//!   listing the serials of every revoked member's certificates.
//!
//! The operator never sees a member's private key; members never see the CA key.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rcgen::{
    CertificateRevocationListParams, CertificateSigningRequestParams, DnType, Issuer, KeyIdMethod,
    KeyPair, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::base::config::valid_name;
use crate::base::files::{write_atomic, write_secret};
use crate::base::tls::{Ca, member_params};
use crate::cli::CliError;

/// The environment variable `ca` commands read the CA passphrase from (unless
/// `--passphrase-file` is given).
pub const PASSPHRASE_ENV: &str = "CONFIDE_CA_PASSPHRASE";
const KEY_FORMAT: &str = "confide-ca-key-v1";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key.enc";
const MEMBERS: &str = "members.json";
const CRL: &str = "crl.pem";

/// What a member sends the operator (written by `confide keygen`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    pub name: String,
    /// host:port where the member's daemon is reached by the others.
    pub address: String,
    /// The member's Ed25519 audit public key, 64 hex characters.
    pub audit_public_key: String,
    /// PEM certificate signing request for the member's TLS key.
    pub csr: String,
}

/// One member as the operator records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRecord {
    pub name: String,
    pub address: String,
    pub audit_public_key: String,
    /// Serials (hex) of the certificates issued to this member.
    pub serials: Vec<String>,
    #[serde(default)]
    pub revoked: bool,
}

/// The alliance's member list (`members.json`), which `confide join` reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberList {
    pub members: Vec<MemberRecord>,
    /// Number of the last CRL written.
    #[serde(default)]
    pub crl_number: u64,
}

impl MemberList {
    pub fn read(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::json(format!("member list {}", path.display()), e))
    }

    fn write(&self, path: &Path) -> Result<(), CliError> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| CliError::json("member list", e))?;
        Ok(write_atomic(path, json.as_bytes(), false)?)
    }

    /// Members that are not revoked.
    pub fn active(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.iter().filter(|m| !m.revoked)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptedKey {
    format: String,
    kdf: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// The CA passphrase: the file's first line, or the environment variable.
pub fn passphrase(file: Option<&Path>) -> Result<Zeroizing<String>, CliError> {
    let pass = match file {
        Some(f) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(f)
                    .map_err(|e| CliError::io(format!("reading {}", f.display()), e))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or("").to_string())
        }
        None => Zeroizing::new(std::env::var(PASSPHRASE_ENV).unwrap_or_default()),
    };
    if pass.chars().count() < 8 {
        return Err(CliError::Usage(format!(
            "the CA passphrase (--passphrase-file or {PASSPHRASE_ENV}) must have at least 8 characters"
        )));
    }
    Ok(pass)
}

fn derive_key(
    pass: &str,
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, CliError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| CliError::Failed(format!("CA key derivation parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass.as_bytes(), salt, &mut *key)
        .map_err(|e| CliError::Failed(format!("CA key derivation: {e}")))?;
    Ok(key)
}

/// Encrypts the CA's private key PEM under the passphrase.
fn seal(key_pem: &str, pass: &str) -> Result<String, CliError> {
    let (m, t, p) = (
        argon2::Params::DEFAULT_M_COST,
        argon2::Params::DEFAULT_T_COST,
        argon2::Params::DEFAULT_P_COST,
    );
    let salt: [u8; 16] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let key = derive_key(pass, &salt, m, t, p)?;
    let cipher = ChaCha20Poly1305::new((&*key).into());
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: key_pem.as_bytes(),
                aad: KEY_FORMAT.as_bytes(),
            },
        )
        .map_err(|_| CliError::Failed("encrypting the CA key failed".into()))?;
    let file = EncryptedKey {
        format: KEY_FORMAT.into(),
        kdf: "argon2id".into(),
        m_cost: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    };
    serde_json::to_string_pretty(&file).map_err(|e| CliError::json("CA key", e))
}

/// Decrypts `CA/ca.key.enc`.
fn open_key(ca_dir: &Path, pass: &str) -> Result<KeyPair, CliError> {
    let path = ca_dir.join(CA_KEY);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    let bad = |what: &str| CliError::Input(format!("{}: {what}", path.display()));
    let file: EncryptedKey = serde_json::from_str(&text)
        .map_err(|e| CliError::json(format!("encrypted CA key {}", path.display()), e))?;
    if file.format != KEY_FORMAT || file.kdf != "argon2id" {
        return Err(bad("not a Confide encrypted CA key"));
    }
    let salt = hex::decode(&file.salt).map_err(|_| bad("bad salt"))?;
    let nonce: [u8; 12] = hex::decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("bad nonce"))?;
    let ciphertext = hex::decode(&file.ciphertext).map_err(|_| bad("bad ciphertext"))?;
    let key = derive_key(pass, &salt, file.m_cost, file.t_cost, file.p_cost)?;
    let cipher = ChaCha20Poly1305::new((&*key).into());
    let pem = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: KEY_FORMAT.as_bytes(),
                },
            )
            .map_err(|_| bad("wrong passphrase (or the file was altered)"))?,
    );
    let pem = std::str::from_utf8(&pem).map_err(|_| bad("decrypted key is not PEM"))?;
    KeyPair::from_pem(pem).map_err(|e| bad(&format!("decrypted key: {e}")))
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {e}"))
}

fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Signs and writes `CA/crl.pem` listing the serials of every revoked member.
fn write_crl(
    ca_dir: &Path,
    list: &mut MemberList,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(), CliError> {
    list.crl_number += 1;
    let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
    let mut revoked_certs = Vec::new();
    for m in list.members.iter().filter(|m| m.revoked) {
        for s in &m.serials {
            let bytes = hex::decode(s)
                .map_err(|_| CliError::Input(format!("member list: bad serial `{s}`")))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let params = CertificateRevocationListParams {
        this_update: now - std::time::Duration::from_secs(60),
        next_update: now + std::time::Duration::from_secs(365 * 86_400),
        crl_number: SerialNumber::from(list.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(issuer)
        .map_err(rcgen_err("signing the CRL"))?;
    let pem = crl.pem().map_err(rcgen_err("encoding the CRL"))?;
    write_atomic(&ca_dir.join(CRL), pem.as_bytes(), false)?;
    Ok(())
}

fn read_ca_cert(ca_dir: &Path) -> Result<String, CliError> {
    let p = ca_dir.join(CA_CERT);
    std::fs::read_to_string(&p).map_err(|e| CliError::io(format!("reading {}", p.display()), e))
}

/// `confide ca init`: a new CA in `dir` (ca.pem, ca.key.enc, members.json, crl.pem).
pub fn init(dir: &Path, pass: &str, valid_days: i64) -> Result<(), CliError> {
    if dir.join(CA_KEY).exists() || dir.join(CA_CERT).exists() {
        return Err(CliError::Usage(format!(
            "{} already holds a CA; choose an empty directory",
            dir.display()
        )));
    }
    let ca =
        Ca::generate("Confide alliance CA", valid_days).map_err(rcgen_err("generating the CA"))?;
    let sealed = seal(&ca.key_pem(), pass)?;
    write_secret(&dir.join(CA_KEY), sealed.as_bytes())?;
    write_atomic(&dir.join(CA_CERT), ca.cert_pem.as_bytes(), false)?;
    let key = open_key(dir, pass)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &key)
        .map_err(rcgen_err("reading the CA certificate"))?;
    let mut list = MemberList::default();
    write_crl(dir, &mut list, &issuer)?;
    list.write(&dir.join(MEMBERS))
}

/// Reads and checks a member request (its name, address, audit key and CSR signature).
pub fn read_request(
    path: &Path,
) -> Result<(MemberRequest, CertificateSigningRequestParams), CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    let req: MemberRequest = serde_json::from_str(&text)
        .map_err(|e| CliError::json(format!("member request {}", path.display()), e))?;
    let bad = |m: String| CliError::Input(format!("member request {}: {m}", path.display()));
    valid_name(&req.name).map_err(bad)?;
    if req
        .address
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(bad(format!("address `{}` is not HOST:PORT", req.address)));
    }
    let audit: [u8; 32] = hex::decode(&req.audit_public_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("audit_public_key is not 32 hex bytes".into()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&audit)
        .map_err(|_| bad("audit_public_key is not an Ed25519 public key".into()))?;
    let csr = CertificateSigningRequestParams::from_pem(&req.csr)
        .map_err(|e| bad(format!("certificate signing request: {e}")))?;
    let cn = csr
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .and_then(dn_text)
        .ok_or_else(|| bad("certificate signing request has no common name".into()))?;
    if cn != req.name {
        return Err(bad(format!(
            "the certificate signing request is for `{cn}`, not for the member `{}`",
            req.name
        )));
    }
    Ok((req, csr))
}

fn dn_text(v: &rcgen::DnValue) -> Option<String> {
    match v {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// `confide ca sign`: issues the member's certificate to `out` and records the member.
pub fn sign(
    ca_dir: &Path,
    request: &Path,
    out: &Path,
    pass: &str,
    valid_days: i64,
) -> Result<String, CliError> {
    let (req, csr) = read_request(request)?;
    let members_path = ca_dir.join(MEMBERS);
    let mut list = MemberList::read(&members_path)?;
    if let Some(m) = list.members.iter().find(|m| m.name == req.name) {
        return Err(CliError::Usage(if m.revoked {
            format!(
                "`{}` was revoked; a revoked name is not issued again",
                req.name
            )
        } else {
            format!("`{}` is already a member", req.name)
        }));
    }
    let key = open_key(ca_dir, pass)?;
    let issuer = Issuer::from_ca_cert_pem(&read_ca_cert(ca_dir)?, &key)
        .map_err(rcgen_err("reading the CA certificate"))?;
    let mut params = member_params(&req.name, vec![req.name.clone()])
        .map_err(rcgen_err("certificate parameters"))?;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // a positive INTEGER
    serial[0] |= 0x01; // of full length
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(valid_days.max(1) as u64 * 86_400);
    let cert = params
        .signed_by(&csr.public_key, &issuer)
        .map_err(rcgen_err("signing the certificate"))?;
    write_atomic(out, cert.pem().as_bytes(), false)?;
    list.members.push(MemberRecord {
        name: req.name.clone(),
        address: req.address,
        audit_public_key: req.audit_public_key,
        serials: vec![hex::encode(serial)],
        revoked: false,
    });
    list.write(&members_path)?;
    Ok(req.name)
}

/// `confide ca genesis`: the audit-chain genesis of the current (non-revoked) members.
pub fn genesis(ca_dir: &Path, out: &Path, sequencer: Option<&str>) -> Result<usize, CliError> {
    let list = MemberList::read(&ca_dir.join(MEMBERS))?;
    let mut members = Vec::new();
    for m in list.active() {
        let key: [u8; 32] = hex::decode(&m.audit_public_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| {
                CliError::Input(format!("member list: bad audit key of `{}`", m.name))
            })?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| CliError::Input(format!("member list: bad audit key of `{}`", m.name)))?;
        members.push(confide_audit::Member::new(m.name.clone(), &vk));
    }
    let first = members
        .first()
        .map(|m| m.name.clone())
        .ok_or_else(|| CliError::Usage("no members yet: `confide ca sign` them first".into()))?;
    let n = members.len();
    let g = confide_audit::Genesis::new(members, sequencer.map_or(first, str::to_string))
        .map_err(|e| CliError::Failed(format!("genesis: {e}")))?;
    write_atomic(out, g.to_json().as_bytes(), false)?;
    Ok(n)
}

/// `confide ca revoke`: marks `name` revoked and writes the new CRL; returns its path.
pub fn revoke(ca_dir: &Path, name: &str, pass: &str) -> Result<PathBuf, CliError> {
    let key = open_key(ca_dir, pass)?;
    let members_path = ca_dir.join(MEMBERS);
    let mut list = MemberList::read(&members_path)?;
    let m = list
        .members
        .iter_mut()
        .find(|m| m.name == name)
        .ok_or_else(|| CliError::Usage(format!("--name: `{name}` is not a member")))?;
    m.revoked = true;
    let issuer = Issuer::from_ca_cert_pem(&read_ca_cert(ca_dir)?, &key)
        .map_err(rcgen_err("reading the CA certificate"))?;
    write_crl(ca_dir, &mut list, &issuer)?;
    list.write(&members_path)?;
    Ok(ca_dir.join(CRL))
}
