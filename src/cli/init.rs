//! `confide init`: writes a whole alliance (CA, party keys and certificates, party.toml
//! files, the audit-chain genesis and a docker-compose file) — for demos and tests only:
//! whoever runs it holds every member's private keys. A real deployment generates each
//! member's keys at the member (`confide keygen`, `ca sign`, `join`: see [`super::keys`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::base::config::valid_name;
use crate::base::error::DaemonError;
use crate::base::tls::Ca;

/// What `confide init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub parties: Vec<String>,
    pub base_port: u16,
    pub compute: Vec<String>,
    pub dealer: Option<String>,
    pub host: String,
    pub valid_days: i64,
    /// Port of the first party's Prometheus endpoint (0: none).
    pub metrics_base_port: u16,
}

/// Writes a file; secrets are created 0600 from the start (never chmod after writing).
fn write(path: &Path, data: &[u8], secret: bool) -> Result<(), DaemonError> {
    crate::base::files::write_atomic(path, data, secret)
}

/// Validates the options and writes the alliance.
pub fn run(opts: &InitOptions) -> Result<(), DaemonError> {
    if opts.parties.len() < 2 {
        return Err(DaemonError::InvalidRequest(
            "--parties needs at least two names".into(),
        ));
    }
    for p in &opts.parties {
        valid_name(p).map_err(|m| DaemonError::InvalidRequest(format!("--parties: {m}")))?;
    }
    let mut sorted = opts.parties.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != opts.parties.len() {
        return Err(DaemonError::InvalidRequest(
            "--parties: a name appears twice".into(),
        ));
    }
    // Default compute nodes: the last two parties when there are four or more (dedicated
    // nodes: members that neither ingest nor query), else the first two (which then cannot
    // ingest or query unless `compute_nodes_may_hold_data` is set).
    let compute = if opts.compute.is_empty() {
        let n = opts.parties.len();
        let skip = if n >= 4 { n - 2 } else { 0 };
        opts.parties.iter().skip(skip).take(2).cloned().collect()
    } else {
        opts.compute.clone()
    };
    if compute.len() != 2 || compute[0] == compute[1] {
        return Err(DaemonError::InvalidRequest(
            "--compute names exactly two different parties".into(),
        ));
    }
    for c in &compute {
        if !opts.parties.contains(c) {
            return Err(DaemonError::InvalidRequest(format!(
                "--compute: `{c}` is not in --parties"
            )));
        }
    }
    let dealer = match &opts.dealer {
        Some(d) if !opts.parties.contains(d) => {
            return Err(DaemonError::InvalidRequest(format!(
                "--dealer: `{d}` is not in --parties"
            )));
        }
        Some(d) => Some(d.clone()),
        None => opts.parties.get(2).cloned(),
    };
    let last_port = opts.base_port as usize + opts.parties.len();
    if last_port > u16::MAX as usize {
        return Err(DaemonError::InvalidRequest(
            "--base-port too high for that many parties".into(),
        ));
    }
    if opts.dir.join("ca.pem").exists() {
        return Err(DaemonError::InvalidRequest(format!(
            "{} already holds an alliance (ca.pem exists); choose an empty directory",
            opts.dir.display()
        )));
    }
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| DaemonError::io(format!("creating {}", opts.dir.display()), e))?;

    let tls_err = |e: rcgen::Error| DaemonError::Internal(format!("certificate generation: {e}"));
    let ca = Ca::generate("Confide alliance CA", opts.valid_days * 2).map_err(tls_err)?;
    write(&opts.dir.join("ca.pem"), ca.cert_pem.as_bytes(), false)?;

    let mut members = Vec::new();
    for (i, name) in opts.parties.iter().enumerate() {
        let pdir = opts.dir.join(name);
        std::fs::create_dir_all(pdir.join("data"))
            .map_err(|e| DaemonError::io(format!("creating {}", pdir.display()), e))?;
        let issued = ca.issue(name, opts.valid_days).map_err(tls_err)?;
        write(
            &pdir.join(format!("{name}.pem")),
            issued.cert_pem.as_bytes(),
            false,
        )?;
        write(
            &pdir.join(format!("{name}.key")),
            issued.key_pem.as_bytes(),
            true,
        )?;
        let seed = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let seed_hex = zeroize::Zeroizing::new(hex::encode(*seed));
        write(&pdir.join("audit.key"), seed_hex.as_bytes(), true)?;
        members.push(confide_audit::Member::new(
            name.clone(),
            &signing.verifying_key(),
        ));

        let mut toml = String::new();
        let port = opts.base_port as usize + i;
        let _ = writeln!(
            toml,
            "# Confide party configuration for `{name}`, written by `confide init`."
        );
        let _ = writeln!(
            toml,
            "[party]\nname = \"{name}\"\nlisten = \"{}:{port}\"\ndata_dir = \"data\"",
            opts.host
        );
        if opts.metrics_base_port != 0 {
            let _ = writeln!(
                toml,
                "metrics_listen = \"{}:{}\"",
                opts.host,
                opts.metrics_base_port as usize + i
            );
        }
        let _ = writeln!(
            toml,
            "\n[tls]\nca = \"../ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\naudit_key = \"audit.key\""
        );
        let _ = writeln!(toml, "\n[alliance]\ngenesis = \"../genesis.json\"");
        let _ = writeln!(toml, "compute = {}", toml_names(&compute));
        let _ = writeln!(
            toml,
            "# The compute nodes may not ingest or query (they would learn who else holds their\n\
             # customers and who asked about them) unless this is true (SECURITY.md):\n\
             compute_nodes_may_hold_data = false"
        );
        if let Some(d) = &dealer {
            let _ = writeln!(toml, "dealer = \"{d}\"");
        }
        let _ = writeln!(
            toml,
            "\n[policy]\nrisk_queries_per_minute = 1000\npeer_timeout_secs = 15"
        );
        for (j, peer) in opts.parties.iter().enumerate() {
            if peer != name {
                let _ = writeln!(
                    toml,
                    "\n[peers.{peer}]\naddress = \"{}:{}\"",
                    opts.host,
                    opts.base_port as usize + j
                );
            }
        }
        let _ = writeln!(
            toml,
            "\n# Datasets: append tables like this one.\n# [datasets.customers]\n# path = \"/data/customers.csv\"\n# id_column = \"phone\"\n# allow = {{ psi = [\"bob\"], train = [], risk = [] }}"
        );
        write(&pdir.join("party.toml"), toml.as_bytes(), false)?;
    }
    // compute and dealer are recorded in every party.toml; genesis holds the members.
    let _ = (&compute, &dealer);
    let genesis = confide_audit::Genesis::new(members, opts.parties[0].clone())
        .map_err(|e| DaemonError::Internal(format!("genesis: {e}")))?;
    write(
        &opts.dir.join("genesis.json"),
        genesis.to_json().as_bytes(),
        false,
    )?;
    write(
        &opts.dir.join("docker-compose.yml"),
        compose_file(opts).as_bytes(),
        false,
    )?;
    Ok(())
}

/// Party names as a TOML array of strings: `["alice", "bob"]`.
pub fn toml_names(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|c| format!("\"{c}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A docker-compose file running this alliance from the `confide:local` image, each party
/// in its own container, with the alliance directory mounted at /alliance.
pub fn compose_file(opts: &InitOptions) -> String {
    let mut s = String::from(
        "# Written by `confide init`. Build the image first: scripts/build-image.sh\nservices:\n",
    );
    let peers_env = |me: &str| {
        opts.parties
            .iter()
            .filter(|p| *p != me)
            .map(|p| format!("{p}={p}:7100"))
            .collect::<Vec<_>>()
            .join(",")
    };
    for (i, p) in opts.parties.iter().enumerate() {
        let _ = write!(
            s,
            "  {p}:\n    image: confide:local\n    hostname: {p}\n    command: [\"/confide\", \"serve\", \"--config\", \"/alliance/{p}/party.toml\"]\n    environment:\n      CONFIDE_LISTEN: \"0.0.0.0:7100\"\n      CONFIDE_PEERS: \"{}\"\n    volumes:\n      - ./:/alliance\n    ports:\n      - \"127.0.0.1:{}:7100\"\n    healthcheck:\n      test: [\"CMD\", \"/confide\", \"status\", \"--self-only\", \"--config\", \"/alliance/{p}/party.toml\"]\n      interval: 2s\n      timeout: 5s\n      retries: 30\n",
            peers_env(p),
            opts.base_port as usize + i
        );
    }
    s
}
