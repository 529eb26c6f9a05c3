//! TLS for every TCP connection (rustls, ring): nodes present certificates of the cluster CA
//! both as servers and as clients (mutual TLS between nodes); clients present none and verify
//! the server against the CA. A connection whose client certificate the CA verified is a
//! peer's; any other is a client's.
//!
//! A server's name is checked as usual: the certificate must name the host the connection was
//! made to (an IP address SAN when connecting by address, as nodes do), unless a name to check
//! instead is given (`--tls-server-name`).

use crate::error::{Error, Result};
use crate::limits::TLS_FILE_BYTES_MAX;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files a node's TLS needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM), signed by the cluster CA.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The cluster CA's certificate(s) (PEM). Two during a CA rollover.
    pub ca: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("failed to read {what} {}", path.display()), e))?
        .len();
    if len > TLS_FILE_BYTES_MAX {
        return Err(Error::Config(format!(
            "{what} {}: {len} bytes is too large for one (at most {TLS_FILE_BYTES_MAX})",
            path.display()
        )));
    }
    std::fs::read(path)
        .map_err(|e| Error::io(format!("failed to read {what} {}", path.display()), e))
}

/// The certificates in a PEM file (at least one).
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_pem_file(path, "TLS key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::Config(format!(
            "TLS key {}: no private key read ({e})",
            path.display()
        ))
    })
}

/// The CA certificates of `path` as a root store.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "TLS CA")? {
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("TLS CA {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// What a node needs: an acceptor for incoming connections and a connector for its own to
/// other nodes, both with its certificate.
#[derive(Clone)]
pub struct NodeTls {
    /// Accepts clients (no certificate) and peers (a certificate of the CA).
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Connects to other nodes, presenting this node's certificate.
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

impl NodeTls {
    /// Loads the files.
    pub fn load(files: &TlsFiles) -> Result<NodeTls> {
        let certs = load_certs(&files.cert, "TLS certificate")?;
        let key = load_key(&files.key)?;
        let roots = load_roots(&files.ca)?;
        let bad = |e: rustls::Error| {
            Error::Config(format!(
                "TLS certificate {} and key {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| Error::Config(format!("TLS CA {}: {e}", files.ca.display())))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(bad)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(bad)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(bad)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(bad)?;
        Ok(NodeTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }
}

/// A client's TLS: the CA to verify servers against, and no certificate of its own.
pub fn client_connector(ca: &Path) -> Result<tokio_rustls::TlsConnector> {
    let roots = load_roots(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a server at `addr` (`host:port`) must prove: its IP address, or its host name.
pub fn server_name_of(addr: &str) -> Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string())
        .map_err(|e| Error::Config(format!("{addr}: not a name TLS can check ({e})")))
}
