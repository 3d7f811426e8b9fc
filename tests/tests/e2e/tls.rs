//! `https://`: the echo server behind TLS with a certificate from a private
//! CA; the pool works when the CA is trusted and refuses the server, with a
//! typed error, when it is not.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mcp_pool_echo::{serve, EchoApp, EchoConfig, ServerControl};
use mcp_pool_rmcp::{Error, McpConnector, SessionKey};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::common::{call_echo, pool_with, whoami};

/// A TCP listener that completes a TLS handshake on each connection.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // A client that refuses the certificate fails the handshake.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A private CA and a certificate it issued for 127.0.0.1: (CA DER, leaf
/// DER, leaf key).
fn certificates() -> (CertificateDer<'static>, CertificateDer<'static>, Vec<u8>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcp-pool test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (
        ca.der().clone(),
        leaf.der().clone(),
        leaf_key.serialize_der(),
    )
}

/// Serves the echo app over TLS on a loopback port; returns its URL.
async fn spawn_tls_server(leaf: CertificateDer<'static>, key: Vec<u8>) -> (String, ServerControl) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let control = ServerControl::new();
    tokio::spawn(serve(
        listener,
        EchoApp::new(&EchoConfig::default()),
        control.clone(),
    ));
    (format!("https://{addr}/mcp"), control)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_works_with_a_trusted_root_and_fails_typed_without() {
    let (ca, leaf, key) = certificates();
    let (url, control) = spawn_tls_server(leaf, key).await;
    let key = SessionKey::builder(url.as_str())
        .bearer("tls-user")
        .build()
        .unwrap();

    let trusting = McpConnector::builder()
        .add_root_certificate(ca.as_ref().to_vec())
        .build()
        .unwrap();
    let pool = pool_with(trusting, 2);
    let got = pool
        .run(&key, async |s| call_echo(s, "over tls", 0).await)
        .await
        .unwrap();
    assert_eq!(got, "over tls");
    let first = pool.run(&key, async |s| whoami(s).await).await.unwrap();
    let again = pool.run(&key, async |s| whoami(s).await).await.unwrap();
    assert_eq!(first, again, "the TLS session is reused");
    pool.shutdown().await;

    // Without the private CA the certificate is refused.
    let err = crate::common::connector().open(&key).await.unwrap_err();
    let Error::Initialize { cause, .. } = &err else {
        panic!("expected a connect failure, got {err}");
    };
    assert!(
        cause.to_lowercase().contains("certificate"),
        "the cause names the certificate: {err}"
    );
    control.kill();
}
