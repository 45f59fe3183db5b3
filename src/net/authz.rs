//! Who may call what: the one place where a gRPC caller's identity (the common name of
//! its mutual-TLS certificate) is read and checked.
//!
//! * [`only_self`]: the Control service, local risk and audit reads — only the party itself,
//!   holding its own certificate.
//! * [`known_peer`]: the Peer service — only members named in `[peers]`.
//! * [`not_revoked`]: every request of every service — the caller's certificate is
//!   checked against the alliance's current CRL (`[tls] crl`, re-read per request).

use std::collections::BTreeMap;

use crate::base::config::PeerSection;
use crate::base::tls::{TlsMaterial, common_name_der};

/// The authenticated name of the caller of a gRPC request (mutual TLS).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<String, tonic::Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
    let first = certs
        .first()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
    common_name_der(first.as_ref()).map_err(tonic::Status::unauthenticated)
}

/// Refuses anyone but `me` (logged), saying what only `me` may do.
pub fn only_self<T>(me: &str, req: &tonic::Request<T>, what: &str) -> Result<(), tonic::Status> {
    let who = caller(req)?;
    if who == me {
        Ok(())
    } else {
        tracing::warn!(caller = %who, what, "refused a call that only the party itself may make");
        Err(tonic::Status::permission_denied(format!(
            "only `{me}` may {what}; `{who}` may not"
        )))
    }
}

/// Refuses a caller that is not one of this party's peers (logged).
pub fn known_peer(
    me: &str,
    peers: &BTreeMap<String, PeerSection>,
    name: &str,
) -> Result<(), tonic::Status> {
    if peers.contains_key(name) {
        Ok(())
    } else {
        tracing::warn!(peer = name, "refused: not a peer of this party");
        Err(tonic::Status::permission_denied(format!(
            "`{name}` is not a peer of `{me}`"
        )))
    }
}

/// A request interceptor (for the whole server) refusing any caller whose certificate the
/// alliance's current CRL revokes, on every request: a revocation applies to connections
/// that are already open, without a restart.
pub fn not_revoked(
    tls: TlsMaterial,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        let certs = req
            .peer_certs()
            .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
        let first = certs
            .first()
            .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
        if let Err(reason) = tls.check_not_revoked(first) {
            let who = common_name_der(first.as_ref()).unwrap_or_else(|_| "?".into());
            tracing::warn!(caller = %who, %reason, "refused a revoked or unverifiable certificate");
            return Err(tonic::Status::permission_denied(format!(
                "the certificate of `{who}` is refused: {reason}"
            )));
        }
        Ok(req)
    }
}
