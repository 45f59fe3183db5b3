//! Mutual TLS at the daemon: an expired certificate, one from another CA, or none is
//! refused; a valid one is accepted; a peer may not drive another party's daemon.

use std::time::Duration;

use confide::base::tls::{Ca, TlsMaterial};
use confide_proto::control_client::ControlClient;
use confide_proto::peer_client::PeerClient;
use confide_proto::{PingRequest, StatusRequest};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

struct Setup {
    _dir: tempfile::TempDir,
    addr: String,
    ca_pem: String,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn start(ca: &Ca) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let alice = ca.issue("alice", 30).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("alice.pem"), &alice.cert_pem).unwrap();
    std::fs::write(dir.path().join("alice.key"), &alice.key_pem).unwrap();
    let toml = format!(
        "[party]\nname = \"alice\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n[tls]\nca = \"ca.pem\"\ncert = \"alice.pem\"\nkey = \"alice.key\"\n[peers.bob]\naddress = \"127.0.0.1:1\"\n"
    );
    let path = dir.path().join("party.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = confide::base::config::PartyConfig::load(&path).unwrap();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let listener = confide::daemon::bind(&cfg).await.unwrap();
    tokio::spawn(async move {
        confide::daemon::serve(listener, cfg, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    Setup {
        _dir: dir,
        addr: format!("127.0.0.1:{port}"),
        ca_pem: ca.cert_pem.clone(),
        stop,
    }
}

fn material(ca_pem: &str, cert: &confide::base::tls::IssuedCert) -> TlsMaterial {
    TlsMaterial {
        ca_pem: ca_pem.as_bytes().to_vec(),
        cert_pem: cert.cert_pem.as_bytes().to_vec(),
        key_pem: cert.key_pem.as_bytes().to_vec(),
        crl: None,
    }
}

async fn ping(addr: &str, tls: ClientTlsConfig) -> Result<String, String> {
    let ep = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3));
    let ch = ep.connect().await.map_err(|e| format!("{e:?}"))?;
    PeerClient::new(ch)
        .ping(PingRequest {})
        .await
        .map(|r| r.into_inner().party)
        .map_err(|s| s.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_checked_both_ways() {
    let ca = Ca::generate("test CA", 30).unwrap();
    let s = start(&ca).await;

    // A valid bob certificate from the alliance CA: accepted, and alice answers as alice.
    let bob = ca.issue("bob", 30).unwrap();
    assert_eq!(
        ping(&s.addr, material(&s.ca_pem, &bob).client("alice"))
            .await
            .unwrap(),
        "alice"
    );

    // An expired one: refused.
    let expired = ca
        .issue_with_validity("bob", -10 * 86_400, -86_400)
        .unwrap();
    assert!(
        ping(&s.addr, material(&s.ca_pem, &expired).client("alice"))
            .await
            .is_err()
    );

    // One from another CA: refused.
    let other = Ca::generate("other CA", 30).unwrap();
    let foreign = other.issue("bob", 30).unwrap();
    let mut m = material(&other.cert_pem, &foreign);
    m.ca_pem = s.ca_pem.as_bytes().to_vec(); // it trusts alice's CA, but presents a foreign cert
    assert!(ping(&s.addr, m.client("alice")).await.is_err());

    // None at all: refused.
    let no_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&s.ca_pem))
        .domain_name("alice");
    assert!(ping(&s.addr, no_cert).await.is_err());

    // A member that is not one of alice's peers: refused by name.
    let mallory = ca.issue("mallory", 30).unwrap();
    let err = ping(&s.addr, material(&s.ca_pem, &mallory).client("alice"))
        .await
        .unwrap_err();
    assert!(err.contains("not a peer"), "{err}");

    // bob may not use alice's Control service.
    let ep = Endpoint::from_shared(format!("https://{}", s.addr))
        .unwrap()
        .tls_config(material(&s.ca_pem, &bob).client("alice"))
        .unwrap();
    let err = ControlClient::new(ep.connect().await.unwrap())
        .status(StatusRequest { self_only: true })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let _ = s.stop.send(true);
}
