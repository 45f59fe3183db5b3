//! The member's side of a real deployment: `confide keygen` (keys generated where they are
//! used; the private keys never leave the member's directory), `confide join` (party.toml
//! from the member's own keys and what the operator returned) and `confide peer add` (a
//! member admitted later).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use zeroize::Zeroizing;

use crate::base::config::{PartyConfig, valid_name};
use crate::base::files::{write_atomic, write_secret};
use crate::cli::CliError;
use crate::cli::ca::{MemberList, MemberRequest};
use crate::cli::init::toml_names;

/// The audit signing key's file name in a member directory.
pub const AUDIT_KEY: &str = "audit.key";

/// The request file `keygen` writes for `name`.
pub fn request_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.req.json"))
}

/// `confide keygen`: the member's TLS key and audit key (0600 from creation), and the
/// request for the operator (name, address, audit public key, CSR). Returns its path.
pub fn keygen(dir: &Path, name: &str, address: &str) -> Result<PathBuf, CliError> {
    valid_name(name).map_err(|m| CliError::Usage(format!("--name: {m}")))?;
    if address
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(CliError::Usage(format!(
            "--address: `{address}` is not HOST:PORT"
        )));
    }
    let tls_key = dir.join(format!("{name}.key"));
    let audit_key = dir.join(AUDIT_KEY);
    for p in [&tls_key, &audit_key] {
        if p.exists() {
            return Err(CliError::Usage(format!(
                "{} exists: keys are never overwritten (choose another --dir)",
                p.display()
            )));
        }
    }
    let key = KeyPair::generate().map_err(|e| CliError::Failed(format!("TLS key: {e}")))?;
    let key_pem = Zeroizing::new(key.serialize_pem());
    write_secret(&tls_key, key_pem.as_bytes())?;

    let seed = Zeroizing::new(rand::random::<[u8; 32]>());
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let seed_hex = Zeroizing::new(hex::encode(*seed));
    write_secret(&audit_key, seed_hex.as_bytes())?;

    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| CliError::Failed(format!("certificate request: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| CliError::Failed(format!("certificate request: {e}")))?;
    let req = MemberRequest {
        name: name.to_string(),
        address: address.to_string(),
        audit_public_key: hex::encode(signing.verifying_key().as_bytes()),
        csr,
    };
    let json =
        serde_json::to_string_pretty(&req).map_err(|e| CliError::json("member request", e))?;
    let out = request_path(dir, name);
    write_atomic(&out, json.as_bytes(), false)?;
    Ok(out)
}

/// What `confide join` needs.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// The member directory `keygen` wrote.
    pub dir: PathBuf,
    /// The certificate the operator issued.
    pub cert: PathBuf,
    /// The alliance CA certificate.
    pub ca: PathBuf,
    /// The operator's member list (peers and their addresses).
    pub members: PathBuf,
    /// The audit-chain genesis (founding members).
    pub genesis: Option<PathBuf>,
    /// The alliance's revocation list.
    pub crl: Option<PathBuf>,
    /// Listen address (default: the address in the member list).
    pub listen: Option<String>,
    pub compute: Vec<String>,
    pub dealer: Option<String>,
}

fn copy_into(src: &Path, dir: &Path, name: &str) -> Result<String, CliError> {
    let bytes =
        std::fs::read(src).map_err(|e| CliError::io(format!("reading {}", src.display()), e))?;
    write_atomic(&dir.join(name), &bytes, false)?;
    Ok(name.to_string())
}

/// `confide join`: checks the issued certificate against the member's own key and writes
/// `DIR/party.toml`. Returns the member's name.
pub fn join(o: &JoinOptions) -> Result<String, CliError> {
    let cert_pem = std::fs::read(&o.cert)
        .map_err(|e| CliError::io(format!("reading {}", o.cert.display()), e))?;
    let name = crate::base::tls::common_name_pem(&cert_pem)
        .map_err(|e| CliError::Input(format!("--cert {}: {e}", o.cert.display())))?;
    valid_name(&name).map_err(|m| CliError::Input(format!("--cert: {m}")))?;
    let party_toml = o.dir.join("party.toml");
    if party_toml.exists() {
        return Err(CliError::Usage(format!(
            "{} exists; `join` does not overwrite it",
            party_toml.display()
        )));
    }
    // The certificate must carry this member's own public key.
    let key_path = o.dir.join(format!("{name}.key"));
    let key_pem = Zeroizing::new(
        std::fs::read_to_string(&key_path)
            .map_err(|e| CliError::io(format!("reading {}", key_path.display()), e))?,
    );
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| CliError::Input(format!("{}: {e}", key_path.display())))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert_pem)
        .map_err(|e| CliError::Input(format!("--cert {}: {e}", o.cert.display())))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| CliError::Input(format!("--cert {}: {e}", o.cert.display())))?;
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(CliError::Input(format!(
            "--cert {}: the certificate is not for this member's key {}",
            o.cert.display(),
            key_path.display()
        )));
    }
    let list = MemberList::read(&o.members)?;
    let me = list.active().find(|m| m.name == name).ok_or_else(|| {
        CliError::Input(format!(
            "--members {}: `{name}` is not an active member",
            o.members.display()
        ))
    })?;
    // The operator recorded this member's audit key: it must be ours.
    let seed_path = o.dir.join(AUDIT_KEY);
    let seed_hex = Zeroizing::new(
        std::fs::read_to_string(&seed_path)
            .map_err(|e| CliError::io(format!("reading {}", seed_path.display()), e))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(seed_hex.trim(), &mut *seed)
        .map_err(|_| CliError::Input(format!("{}: not a 32-byte hex key", seed_path.display())))?;
    let audit_pub = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .as_bytes(),
    );
    if audit_pub != me.audit_public_key {
        return Err(CliError::Input(format!(
            "--members {}: the audit key recorded for `{name}` is not this member's",
            o.members.display()
        )));
    }

    let cert_file = copy_into(&o.cert, &o.dir, &format!("{name}.pem"))?;
    let ca_file = copy_into(&o.ca, &o.dir, "ca.pem")?;
    let listen = o.listen.clone().unwrap_or_else(|| me.address.clone());
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Confide party configuration for `{name}`, written by `confide join`.\n# Its private keys were generated here by `confide keygen` and never left this directory."
    );
    let _ = writeln!(
        t,
        "[party]\nname = \"{name}\"\nlisten = \"{listen}\"\ndata_dir = \"data\""
    );
    let _ = write!(
        t,
        "\n[tls]\nca = \"{ca_file}\"\ncert = \"{cert_file}\"\nkey = \"{name}.key\"\naudit_key = \"{AUDIT_KEY}\"\n"
    );
    if let Some(crl) = &o.crl {
        let f = copy_into(crl, &o.dir, "crl.pem")?;
        let _ = writeln!(t, "crl = \"{f}\"");
    }
    let _ = writeln!(t, "\n[alliance]");
    if let Some(g) = &o.genesis {
        let text = std::fs::read_to_string(g)
            .map_err(|e| CliError::io(format!("reading {}", g.display()), e))?;
        let genesis = confide_audit::Genesis::from_json(&text)
            .map_err(|e| CliError::Input(format!("--genesis {}: {e}", g.display())))?;
        match genesis.members.iter().find(|m| m.name == name) {
            Some(m) if m.public_key_hex == audit_pub => {
                let f = copy_into(g, &o.dir, "genesis.json")?;
                let _ = writeln!(t, "genesis = \"{f}\"");
            }
            Some(_) => {
                return Err(CliError::Input(format!(
                    "--genesis {}: the audit key of `{name}` in it is not this member's",
                    g.display()
                )));
            }
            // A member admitted after genesis has no place in the audit chain.
            None => {
                let _ = writeln!(
                    t,
                    "# No audit chain: `{name}` joined after genesis (its members are fixed)."
                );
            }
        }
    }
    if !o.compute.is_empty() {
        let _ = writeln!(t, "compute = {}", toml_names(&o.compute));
    }
    if let Some(d) = &o.dealer {
        let _ = writeln!(t, "dealer = \"{d}\"");
    }
    for m in list.active().filter(|m| m.name != name) {
        let _ = write!(t, "{}", peer_table(&m.name, &m.address));
    }
    let _ = writeln!(
        t,
        "\n# Datasets: append tables like this one.\n# [datasets.customers]\n# path = \"/data/customers.csv\"\n# id_column = \"phone\"\n# allow = {{ psi = [], train = [], risk = [] }}"
    );
    std::fs::create_dir_all(o.dir.join("data"))
        .map_err(|e| CliError::io(format!("creating {}", o.dir.join("data").display()), e))?;
    write_atomic(&party_toml, t.as_bytes(), false)?;
    if let Err(e) = PartyConfig::load(&party_toml) {
        let _ = std::fs::remove_file(&party_toml);
        return Err(e.into());
    }
    Ok(name)
}

fn peer_table(name: &str, address: &str) -> String {
    format!("\n[peers.{name}]\naddress = \"{address}\"\n")
}

/// `confide peer add`: appends `[peers.NAME]` to a party.toml (checked by loading it;
/// the file is left as it was if the result is invalid). The daemon reads it at start.
pub fn peer_add(config: &Path, name: &str, address: &str) -> Result<(), CliError> {
    valid_name(name).map_err(|m| CliError::Usage(format!("--name: {m}")))?;
    let cfg = PartyConfig::load(config)?;
    if cfg.peers.contains_key(name) || cfg.party.name == name {
        return Err(CliError::Usage(format!(
            "--name: `{name}` is already in {}",
            config.display()
        )));
    }
    if address.contains('"') || address.contains('\n') {
        return Err(CliError::Usage(format!(
            "--address: `{address}` is not HOST:PORT"
        )));
    }
    let old = std::fs::read_to_string(config)
        .map_err(|e| CliError::io(format!("reading {}", config.display()), e))?;
    let new = format!("{old}{}", peer_table(name, address));
    write_atomic(config, new.as_bytes(), false)?;
    if let Err(e) = PartyConfig::load(config) {
        write_atomic(config, old.as_bytes(), false)?;
        return Err(e.into());
    }
    Ok(())
}
