//! Making credentials: a cluster CA, node certificates it signs (for both TLS roles, naming the
//! node's addresses), and cluster keys. `idkeys` is built on it, and the lab mints a fresh set
//! per run with it.

use super::{CredentialFiles, TlsFiles};
use crate::connection::Transport;
use crate::error::{Error, Result};
use password_hash::rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
}

/// A cluster CA that can sign node certificates.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority")
    }
}

fn failed(what: &str, e: rcgen::Error) -> Error {
    Error::Config(format!("failed to {what}: {e}"))
}

/// The CA's name: the cluster's and a digest of the CA's public key, so that two CAs of one
/// cluster are told apart (verifiers find an issuer by its name).
fn ca_params(name: &str, key: &KeyPair, valid_for: Duration) -> Result<CertificateParams> {
    use sha2::Digest;
    let id = hex::encode(&sha2::Sha256::digest(key.public_key_raw())[..4]);
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| failed("make CA parameters", e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} cluster CA {id}"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, valid_for);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, valid_for: Duration) {
    // An hour back: hosts whose clocks differ a little still accept a fresh certificate.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::seconds(valid_for.as_secs() as i64);
}

impl Authority {
    /// A new CA for the cluster `name`, valid for `valid_for`.
    pub fn new(name: &str, valid_for: Duration) -> Result<Authority> {
        let key = KeyPair::generate().map_err(|e| failed("make a CA key", e))?;
        let params = ca_params(name, &key, valid_for)?;
        let cert = params
            .clone()
            .self_signed(&key)
            .map_err(|e| failed("sign the CA certificate", e))?;
        Ok(Authority {
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    /// The CA of `cert_pem` (as written by [`Authority::new`] for cluster `name`) with its key,
    /// to sign more node certificates.
    pub fn load(name: &str, cert_pem: &str, key_pem: &str) -> Result<Authority> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| failed("read the CA key", e))?;
        // Signing needs the issuer's name and key only; the file keeps the original.
        let params = ca_params(name, &key, Duration::from_secs(3600))?;
        Ok(Authority {
            params,
            key,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA certificate (PEM): `--tls-ca` of every node and client.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM). Keep it off the nodes.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for node `name`, reachable at `ips` and `dns_names`, usable as TLS server
    /// and client (nodes connect to each other with it), valid for `valid_for`.
    pub fn issue(
        &self,
        name: &str,
        ips: &[IpAddr],
        dns_names: &[String],
        valid_for: Duration,
    ) -> Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| failed("make node certificate parameters", e))?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for dns in dns_names {
            let dns = dns
                .clone()
                .try_into()
                .map_err(|e| failed(&format!("use {dns:?} as a DNS name"), e))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        if params.subject_alt_names.is_empty() {
            return Err(Error::Config(format!(
                "node {name}: a certificate needs at least one address or DNS name"
            )));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, valid_for);
        let key = KeyPair::generate().map_err(|e| failed("make a node key", e))?;
        let issuer = self
            .params
            .clone()
            .self_signed(&self.key)
            .map_err(|e| failed("load the CA", e))?;
        let cert = params
            .signed_by(&key, &issuer, &self.key)
            .map_err(|e| failed("sign the node certificate", e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A directory of credentials: `ca.pem` (and `ca-key.pem`, kept with the set here; keep it off
/// the nodes in production), `cluster.key`, and `NAME.pem` / `NAME-key.pem` per node.
#[derive(Debug, Clone)]
pub struct CredentialSet {
    /// Where the files are.
    pub dir: PathBuf,
}

/// A node to issue a certificate for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its name (the file name, and the certificate's common name).
    pub name: String,
    /// The addresses it is reached at.
    pub ips: Vec<IpAddr>,
    /// The DNS names it is reached at.
    pub dns_names: Vec<String>,
}

impl NodeSpec {
    /// Node `name` reached at `ip` only.
    pub fn at(name: impl Into<String>, ip: IpAddr) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            ips: vec![ip],
            dns_names: Vec::new(),
        }
    }
}

impl CredentialSet {
    /// Writes (or completes) the set in `dir` for `cluster`: the CA and the cluster key are
    /// made once and kept; each node in `nodes` gets a new certificate.
    pub fn write(
        dir: &Path,
        cluster: &str,
        nodes: &[NodeSpec],
        valid_for: Duration,
    ) -> Result<CredentialSet> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("failed to create {}", dir.display()), e))?;
        let set = CredentialSet {
            dir: dir.to_path_buf(),
        };
        let (ca_cert, ca_key) = (set.ca(), dir.join("ca-key.pem"));
        let authority = if ca_cert.exists() && ca_key.exists() {
            Authority::load(cluster, &read(&ca_cert)?, &read(&ca_key)?)?
        } else {
            let authority = Authority::new(cluster, valid_for)?;
            write_file(&ca_key, &authority.key_pem(), true)?;
            write_file(&ca_cert, authority.cert_pem(), false)?;
            authority
        };
        if !set.cluster_key().exists() {
            write_file(&set.cluster_key(), &cluster_key(), true)?;
        }
        for node in nodes {
            let issued = authority.issue(&node.name, &node.ips, &node.dns_names, valid_for)?;
            let files = set.node(&node.name);
            write_file(&files.tls.key, &issued.key_pem, true)?;
            write_file(&files.tls.cert, &issued.cert_pem, false)?;
        }
        Ok(set)
    }

    /// The CA certificate (every node's and client's `--tls-ca`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The cluster key file.
    pub fn cluster_key(&self) -> PathBuf {
        self.dir.join("cluster.key")
    }

    /// Node `name`'s files.
    pub fn node(&self, name: &str) -> CredentialFiles {
        CredentialFiles {
            tls: TlsFiles {
                cert: self.dir.join(format!("{name}.pem")),
                key: self.dir.join(format!("{name}-key.pem")),
                ca: self.ca(),
            },
            cluster_key: self.cluster_key(),
        }
    }

    /// `idserver`'s flags for node `name`.
    pub fn node_args(&self, name: &str) -> Vec<String> {
        let files = self.node(name);
        [
            ("--tls-cert", files.tls.cert),
            ("--tls-key", files.tls.key),
            ("--tls-ca", files.tls.ca),
            ("--cluster-key-file", files.cluster_key),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }

    /// A client's transport: TLS verifying servers against the CA.
    pub fn client_transport(&self) -> Result<Transport> {
        Ok(Transport::Tls {
            connector: super::tls::client_connector(&self.ca())?,
            server_name: None,
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))
}

/// Writes `text` to `path`; secrets readable by the owner only.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| Error::io(format!("failed to write {}", path.display()), e))
}

/// A fresh cluster key file's text: one 256-bit key, hex.
pub fn cluster_key() -> String {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    format!(
        "# idlab cluster key: the first key signs, a second is accepted (rollover)\n{}\n",
        hex::encode(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::keys::KeyRing;

    #[test]
    fn a_fresh_key_file_parses_and_differs_each_time() {
        let one = cluster_key();
        assert!(KeyRing::parse(&one, "c").is_ok());
        assert_ne!(one, cluster_key());
    }
}
