//! `party.toml`: one file per party (identity, listen address, certificates, peers,
//! datasets and their policy). Relative paths are resolved against the file's directory.
//!
//! Environment overrides (for containers): `CONFIDE_LISTEN` replaces `party.listen`,
//! `CONFIDE_DATA_DIR` replaces `party.data_dir`, and `CONFIDE_PEERS="bob=bob:7100,carol=carol:7100"`
//! replaces peers' addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::kind::PolicyKind;

pub use crate::base::dataset::DatasetSection;

/// Job kinds a dataset policy can allow, as written in `allow`.
const POLICY_KINDS: [PolicyKind; 3] = [PolicyKind::Psi, PolicyKind::Train, PolicyKind::Risk];

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// The whole `party.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyConfig {
    pub party: PartySection,
    pub tls: TlsSection,
    #[serde(default)]
    pub alliance: AllianceSection,
    #[serde(default)]
    pub peers: BTreeMap<String, PeerSection>,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetSection>,
    /// The file this was read from (not part of the TOML).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartySection {
    /// This party's name; must equal the name in its certificate.
    pub name: String,
    /// Address the daemon listens on (gRPC over mutual TLS).
    pub listen: String,
    /// Where the daemon keeps its state (audit log, risk index, job work files).
    pub data_dir: PathBuf,
    /// Optional plain-HTTP Prometheus endpoint, e.g. "127.0.0.1:9100".
    #[serde(default)]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The alliance CA certificate (PEM).
    pub ca: PathBuf,
    /// This party's certificate (PEM).
    pub cert: PathBuf,
    /// This party's private key (PEM).
    pub key: PathBuf,
    /// This party's Ed25519 audit signing key (hex seed file).
    #[serde(default)]
    pub audit_key: Option<PathBuf>,
    /// The alliance's certificate revocation list (PEM CRL signed by the CA, written by
    /// `confide ca revoke`). Re-read on every request and new connection: replacing the
    /// file revokes without a restart.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllianceSection {
    /// The audit-chain genesis file.
    #[serde(default)]
    pub genesis: Option<PathBuf>,
    /// The two risk compute nodes.
    #[serde(default)]
    pub compute: Vec<String>,
    /// The party that deals correlated randomness for training.
    #[serde(default)]
    pub dealer: Option<String>,
    /// Whether the risk compute nodes may also ingest (hold data) or query. Off by default:
    /// a node that holds data learns who else holds its customers and who asked about them
    /// (see SECURITY.md). Both nodes and the member itself check it.
    #[serde(default)]
    pub compute_nodes_may_hold_data: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// host:port of the peer's daemon.
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Risk queries a member may make per minute (each ID of a batch counts).
    #[serde(default = "default_rate")]
    pub risk_queries_per_minute: u32,
    /// Seconds without progress from a peer before a job fails.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout_secs: u64,
    /// Default job deadline in seconds.
    #[serde(default = "default_job_timeout")]
    pub job_timeout_secs: u64,
}

fn default_rate() -> u32 {
    1000
}
fn default_peer_timeout() -> u64 {
    15
}
fn default_job_timeout() -> u64 {
    6 * 3600
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            risk_queries_per_minute: default_rate(),
            peer_timeout_secs: default_peer_timeout(),
            job_timeout_secs: default_job_timeout(),
        }
    }
}

impl PartyConfig {
    /// Reads, parses and validates `path`, applying environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, |k| std::env::var(k).ok())
    }

    /// Parses `text` as if read from `path`; `env` looks up overrides.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut cfg: PartyConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: one_line(&e),
        })?;
        cfg.source = path.to_path_buf();
        if let Some(v) = env("CONFIDE_LISTEN") {
            cfg.party.listen = v;
        }
        if let Some(v) = env("CONFIDE_DATA_DIR") {
            cfg.party.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("CONFIDE_PEERS") {
            for item in v.split(',').filter(|s| !s.trim().is_empty()) {
                let (name, addr) = item.split_once('=').ok_or_else(|| {
                    cfg.invalid("CONFIDE_PEERS", format!("`{item}` is not NAME=HOST:PORT"))
                })?;
                cfg.peers.insert(
                    name.trim().to_string(),
                    PeerSection {
                        address: addr.trim().to_string(),
                    },
                );
            }
        }
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.party.data_dir);
        abs(&mut cfg.tls.ca);
        abs(&mut cfg.tls.cert);
        abs(&mut cfg.tls.key);
        if let Some(k) = cfg.tls.audit_key.as_mut() {
            abs(k);
        }
        if let Some(k) = cfg.tls.crl.as_mut() {
            abs(k);
        }
        if let Some(g) = cfg.alliance.genesis.as_mut() {
            abs(g);
        }
        for ds in cfg.datasets.values_mut() {
            abs(&mut ds.path);
        }
        cfg.validate()?;
        for ds in cfg.datasets.values_mut() {
            ds.problem = ds.file_problem();
            ds.allowed = ds
                .allow
                .iter()
                .filter_map(|(k, who)| {
                    POLICY_KINDS
                        .into_iter()
                        .find(|p| p.as_str() == k)
                        .map(|p| (p, who.iter().cloned().collect()))
                })
                .collect();
        }
        Ok(cfg)
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        valid_name(&self.party.name).map_err(|m| self.invalid("party.name", m))?;
        self.listen_addr()?;
        for (field, p) in [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !p.is_file() {
                return Err(self.invalid(field, format!("{} does not exist", p.display())));
            }
        }
        if let Some(p) = &self.tls.crl
            && !p.is_file()
        {
            return Err(self.invalid("tls.crl", format!("{} does not exist", p.display())));
        }
        if let Some(g) = &self.alliance.genesis
            && !g.is_file()
        {
            return Err(self.invalid(
                "alliance.genesis",
                format!("{} does not exist", g.display()),
            ));
        }
        for (name, peer) in &self.peers {
            valid_name(name).map_err(|m| self.invalid(&format!("peers.{name}"), m))?;
            if name == &self.party.name {
                return Err(
                    self.invalid(&format!("peers.{name}"), "a party cannot be its own peer")
                );
            }
            if peer
                .address
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(self.invalid(
                    &format!("peers.{name}.address"),
                    format!("`{}` is not HOST:PORT", peer.address),
                ));
            }
        }
        for c in &self.alliance.compute {
            if c != &self.party.name && !self.peers.contains_key(c) {
                return Err(self.invalid("alliance.compute", format!("`{c}` is not a known party")));
            }
        }
        if self.alliance.compute.len() > 2 {
            return Err(self.invalid("alliance.compute", "names exactly two compute nodes"));
        }
        for (name, ds) in &self.datasets {
            if ds.id_column.trim().is_empty() {
                return Err(self.invalid(&format!("datasets.{name}.id_column"), "is empty"));
            }
            for (kind, who) in &ds.allow {
                if !POLICY_KINDS.iter().any(|p| p.as_str() == kind) {
                    return Err(self.invalid(
                        &format!("datasets.{name}.allow.{kind}"),
                        format!(
                            "unknown job kind (expected one of {})",
                            POLICY_KINDS.map(PolicyKind::as_str).join(", ")
                        ),
                    ));
                }
                for p in who {
                    if !self.peers.contains_key(p) && p != &self.party.name {
                        return Err(self.invalid(
                            &format!("datasets.{name}.allow.{kind}"),
                            format!("`{p}` is not a known party"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        use std::net::ToSocketAddrs;
        self.party
            .listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                self.invalid(
                    "party.listen",
                    format!("`{}` is not a HOST:PORT address", self.party.listen),
                )
            })
    }

    /// Is `peer` allowed to run `kind` on `dataset`? The reason if not.
    pub fn check_policy(
        &self,
        dataset: &str,
        kind: PolicyKind,
        peer: &str,
    ) -> Result<&DatasetSection, String> {
        let ds = self
            .datasets
            .get(dataset)
            .ok_or_else(|| format!("party `{}` has no dataset `{dataset}`", self.party.name))?;
        if let Some(problem) = &ds.problem {
            // A peer hears that the dataset is unusable, not where its file is.
            return Err(if peer == self.party.name {
                format!("dataset `{dataset}` is disabled: {problem}")
            } else {
                format!(
                    "dataset `{dataset}` of party `{}` is disabled (its file is unusable)",
                    self.party.name
                )
            });
        }
        if peer == self.party.name {
            return Ok(ds);
        }
        if ds.allows(kind, peer) {
            Ok(ds)
        } else {
            Err(format!(
                "party `{}` does not allow `{peer}` to run `{kind}` on dataset `{dataset}`",
                self.party.name
            ))
        }
    }

    /// Every party of the alliance this party knows (itself and its peers), sorted.
    pub fn all_parties(&self) -> Vec<String> {
        let mut v: Vec<String> = self.peers.keys().cloned().collect();
        v.push(self.party.name.clone());
        v.sort();
        v
    }
}

/// Party names are DNS labels: they are also certificate names and host names.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid party name (lowercase letters, digits and '-', at most 63)"
        ))
    }
}

fn one_line(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "alice.pem", "alice.key", "data.csv"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let p = dir.path().join("party.toml");
        (dir, p)
    }

    const GOOD: &str = r#"
[party]
name = "alice"
listen = "127.0.0.1:7100"
data_dir = "data"
[tls]
ca = "ca.pem"
cert = "alice.pem"
key = "alice.key"
[peers.bob]
address = "127.0.0.1:7101"
[datasets.customers]
path = "data.csv"
id_column = "phone"
allow = { psi = ["bob"] }
"#;

    fn parse(text: &str, p: &Path) -> Result<PartyConfig, ConfigError> {
        PartyConfig::parse(text, p, |_| None)
    }

    #[test]
    fn good_config_parses_and_resolves_paths() {
        let (dir, p) = fixture();
        let cfg = parse(GOOD, &p).unwrap();
        assert_eq!(cfg.datasets["customers"].path, dir.path().join("data.csv"));
        assert!(
            cfg.check_policy("customers", PolicyKind::Psi, "bob")
                .is_ok()
        );
        let refused = cfg
            .check_policy("customers", PolicyKind::Train, "bob")
            .unwrap_err();
        assert!(
            refused.contains("does not allow `bob` to run `train`"),
            "{refused}"
        );
        assert!(
            cfg.check_policy("nope", PolicyKind::Psi, "bob")
                .unwrap_err()
                .contains("no dataset `nope`")
        );
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = PartyConfig::load(Path::new("/nonexistent/party.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config file /nonexistent/party.toml:"),
            "{err}"
        );
    }

    #[test]
    fn bad_toml_is_one_line_naming_the_file() {
        let (_d, p) = fixture();
        let err = parse("[party\nname=", &p).unwrap_err().to_string();
        assert!(err.contains("party.toml"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn unknown_field_is_named() {
        let (_d, p) = fixture();
        let text = GOOD.replace("id_column = \"phone\"", "id_column = \"phone\"\ncolour = 1");
        let err = parse(&text, &p).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let (_d, p) = fixture();
        let text = GOOD.replace("id_column = \"phone\"\n", "");
        let err = parse(&text, &p).unwrap_err().to_string();
        assert!(err.contains("missing field `id_column`"), "{err}");
    }

    #[test]
    fn an_unusable_dataset_file_disables_that_dataset_only() {
        let (d, p) = fixture();
        std::fs::create_dir(d.path().join("folder.csv")).unwrap();
        let text = GOOD.replace("data.csv", "missing.csv").replace(
            "[datasets.customers]",
            "[datasets.folder]\npath = \"folder.csv\"\nid_column = \"id\"\n\n[datasets.customers]",
        );
        let cfg = parse(&text, &p).unwrap();
        let missing = cfg.datasets["customers"].problem.clone().unwrap();
        assert!(missing.contains("missing.csv does not exist"), "{missing}");
        let folder = cfg.datasets["folder"].problem.clone().unwrap();
        assert!(folder.contains("folder.csv is a directory"), "{folder}");
        let own = cfg
            .check_policy("folder", PolicyKind::Psi, "alice")
            .unwrap_err();
        assert!(
            own.contains("`folder` is disabled") && own.contains("directory"),
            "{own}"
        );
        let peer = cfg
            .check_policy("customers", PolicyKind::Psi, "bob")
            .unwrap_err();
        assert!(peer.contains("is disabled"), "{peer}");
        assert!(
            !peer.contains("missing.csv"),
            "a peer learns no path: {peer}"
        );
        let good = parse(GOOD, &p).unwrap();
        assert!(good.datasets["customers"].problem.is_none());
        assert!(
            good.check_policy("customers", PolicyKind::Psi, "bob")
                .is_ok()
        );
    }

    #[test]
    fn bad_listen_address_and_unknown_policy_peer() {
        let (_d, p) = fixture();
        let err = parse(&GOOD.replace("127.0.0.1:7100", "nowhere"), &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("party.listen"), "{err}");
        let err = parse(&GOOD.replace("psi = [\"bob\"]", "psi = [\"mallory\"]"), &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`mallory` is not a known party"), "{err}");
        let err = parse(&GOOD.replace("psi = [\"bob\"]", "sing = [\"bob\"]"), &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown job kind"), "{err}");
    }

    #[test]
    fn env_overrides_apply() {
        let (_d, p) = fixture();
        let cfg = PartyConfig::parse(GOOD, &p, |k| match k {
            "CONFIDE_LISTEN" => Some("0.0.0.0:7100".into()),
            "CONFIDE_PEERS" => Some("bob=bob:7100".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.party.listen, "0.0.0.0:7100");
        assert_eq!(cfg.peers["bob"].address, "bob:7100");
    }
}
