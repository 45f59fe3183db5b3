//! The CLI's connection to its own party daemon (mutual TLS with the party's own
//! certificate: a daemon takes control calls only from itself).

use std::time::Duration;

use confide_proto::audit_client::AuditClient;
use confide_proto::control_client::ControlClient;
use tonic::transport::Channel;

use crate::base::config::PartyConfig;
use crate::base::error::{DaemonError, error_chain, status_line};
use crate::base::tls::TlsMaterial;
use crate::net::links::{MAX_MESSAGE, plain_endpoint, tls_connector};

/// The address to dial for a listen address (a wildcard listen means loopback).
pub fn dial_address(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    }
}

/// Connects to this party's daemon.
pub async fn connect(cfg: &PartyConfig) -> Result<Channel, DaemonError> {
    let tls = TlsMaterial::load(cfg)?;
    let address = dial_address(&cfg.party.listen);
    let unreachable = |message: String| DaemonError::Peer {
        peer: cfg.party.name.clone(),
        address: address.clone(),
        message,
    };
    let ep = plain_endpoint(&address).map_err(unreachable)?;
    let dial = ep.connect_with_connector(tls_connector(tls, &cfg.party.name));
    match tokio::time::timeout(Duration::from_secs(5), dial).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(unreachable(format!(
            "cannot reach the daemon (is `confide serve` running?): {}",
            error_chain(&e)
        ))),
        Err(_) => Err(unreachable("no answer within 5 s".into())),
    }
}

/// A Control client to this party's daemon.
pub async fn control(cfg: &PartyConfig) -> Result<ControlClient<Channel>, DaemonError> {
    Ok(ControlClient::new(connect(cfg).await?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// An Audit client to this party's daemon.
pub async fn audit(cfg: &PartyConfig) -> Result<AuditClient<Channel>, DaemonError> {
    Ok(AuditClient::new(connect(cfg).await?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// A status as a DaemonError naming this party's daemon.
pub fn daemon_error(cfg: &PartyConfig, s: &tonic::Status) -> DaemonError {
    DaemonError::Peer {
        peer: cfg.party.name.clone(),
        address: dial_address(&cfg.party.listen),
        message: status_line(s),
    }
}
