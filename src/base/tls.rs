//! Certificates: the alliance CA and party certificates (rcgen), the mutual-TLS
//! configurations tonic uses, and the caller's identity (the common name of its
//! certificate, verified against the alliance CA by rustls before any handler runs), and
//! revocation: the alliance's CRL (`[tls] crl`), re-read on every check, so a revocation
//! takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;

/// A PEM certificate and its PEM private key.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The alliance certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA valid for `days` days.
    pub fn generate(name: &str, days: i64) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Confide alliance");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(unix_secs());
        params.not_before = now - std::time::Duration::from_secs(3600);
        params.not_after = now + std::time::Duration::from_secs(days.max(1) as u64 * 86_400);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    /// Issues a party certificate whose common name is `party`, valid from
    /// `not_before_secs` to `not_after_secs` relative to now (negative = in the past).
    pub fn issue_with_validity(
        &self,
        party: &str,
        not_before_secs: i64,
        not_after_secs: i64,
    ) -> Result<IssuedCert, rcgen::Error> {
        let mut params = member_params(party, vec![party.to_string(), "localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let at = |offset: i64| {
            let t = unix_secs() as i64 + offset;
            epoch + std::time::Duration::from_secs(t.max(0) as u64)
        };
        params.not_before = at(not_before_secs);
        params.not_after = at(not_after_secs);
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA's private key (PEM), to be stored encrypted by `confide ca init`.
    pub fn key_pem(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(self.key.serialize_pem())
    }

    /// Issues a party certificate valid for `days` days.
    pub fn issue(&self, party: &str, days: i64) -> Result<IssuedCert, rcgen::Error> {
        self.issue_with_validity(party, -3600, days.max(1) * 86_400)
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// PEM material of one party.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The alliance's certificate revocation list (PEM, signed by the CA), if configured;
    /// read anew at every check and every new connection.
    pub crl: Option<PathBuf>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Drop for TlsMaterial {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_pem);
    }
}

impl TlsMaterial {
    /// Reads the CA, certificate and key named in the config.
    pub fn load(cfg: &PartyConfig) -> Result<Self, DaemonError> {
        let read = |field: &str, p: &Path| {
            std::fs::read(p).map_err(|e| {
                DaemonError::Config(format!(
                    "config file {}: field `{field}`: cannot read {}: {e}",
                    cfg.source.display(),
                    p.display()
                ))
            })
        };
        let m = Self {
            ca_pem: read("tls.ca", &cfg.tls.ca)?,
            cert_pem: read("tls.cert", &cfg.tls.cert)?,
            key_pem: read("tls.key", &cfg.tls.key)?,
            crl: cfg.tls.crl.clone(),
        };
        let cn = common_name_pem(&m.cert_pem).map_err(|e| {
            DaemonError::Config(format!(
                "config file {}: field `tls.cert`: {e}",
                cfg.source.display()
            ))
        })?;
        if cn != cfg.party.name {
            return Err(DaemonError::Config(format!(
                "config file {}: field `tls.cert`: certificate is for `{cn}`, not `{}`",
                cfg.source.display(),
                cfg.party.name
            )));
        }
        Ok(m)
    }

    /// Server side: our identity, and client certificates required from the alliance CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
    }

    /// Client side towards `peer` (whose certificate must name it).
    pub fn client(&self, peer: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(peer.to_string())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsMaterial {
    fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let c = c.map_err(|e| format!("alliance CA: {e}"))?;
            roots.add(c).map_err(|e| format!("alliance CA: {e}"))?;
        }
        Ok(Arc::new(roots))
    }

    /// The revocation lists in the CRL file now (none if no CRL is configured). A
    /// configured file that cannot be read or holds no CRL is an error: checks fail closed.
    pub fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
        let Some(path) = &self.crl else {
            return Ok(Vec::new());
        };
        let bytes =
            std::fs::read(path).map_err(|e| format!("revocation list {}: {e}", path.display()))?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("revocation list {}: {e}", path.display()))?;
        if crls.is_empty() {
            return Err(format!(
                "revocation list {}: no X509 CRL in the file",
                path.display()
            ));
        }
        Ok(crls)
    }

    /// The CRL file's current bytes (empty without one): what a cache of connections keys on.
    pub fn crl_state(&self) -> Vec<u8> {
        self.crl
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default()
    }

    /// Checks a certificate a caller presented against the alliance CA and the current CRL
    /// (whose signature must be the CA's): `Err` says why it is refused. Without a
    /// configured CRL only the path is checked (rustls did that at the handshake already).
    pub fn check_not_revoked(&self, end_entity: &CertificateDer<'_>) -> Result<(), String> {
        let crls = self.crls()?;
        if crls.is_empty() {
            return Ok(());
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .with_crls(crls)
            .build()
            .map_err(|e| format!("revocation check: {e}"))?;
        verifier
            .verify_client_cert(end_entity, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The rustls client configuration toward a peer: our certificate, the alliance CA as
    /// the only root, HTTP/2, and the current CRL (a revoked server fails the handshake).
    pub fn rustls_client(&self) -> Result<rustls::ClientConfig, String> {
        let mut builder = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider());
        let crls = self.crls()?;
        if !crls.is_empty() {
            builder = builder.with_crls(crls);
        }
        let verifier = builder
            .build()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("own certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| format!("own private key: {e}"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("TLS configuration: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The common name of the first certificate in a PEM file.
pub fn common_name_pem(pem: &[u8]) -> Result<String, String> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    common_name_der(&p.contents)
}

/// The common name of a DER certificate.
pub fn common_name_der(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("certificate has no common name")?;
    Ok(cn.to_string())
}

/// Certificate parameters of a member: common name `party`, DNS names `names`, and the
/// usages a mutual-TLS peer needs (server and client authentication).
pub fn member_params(party: &str, names: Vec<String>) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, party);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}
