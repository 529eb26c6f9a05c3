//! Who may speak for a node. With credentials (the default of `idserver`), every TCP
//! connection is TLS 1.3: nodes prove themselves to each other with certificates of the
//! cluster CA (mutual TLS) and clients verify the server against it; every cluster datagram is
//! sealed with a key derived from the cluster key file, and replays are refused. Without
//! (`--insecure-plaintext`), anyone who reaches a node's port is a peer.
//!
//! Whatever fails a check is dropped, counted ([`Rejections`], shown by `--status`) and logged
//! at most once per [`REJECTED_LOG_INTERVAL_MS`], never acted on.

pub mod keys;
pub mod mint;
pub mod seal;
pub mod tls;

pub use keys::KeyRing;
pub use tls::{NodeTls, TlsFiles};

use crate::connection::Transport;
use crate::error::Result;
use crate::limits::REJECTED_LOG_INTERVAL_MS;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How a node talks to the others and to clients.
#[derive(Debug, Clone, Default)]
pub enum Security {
    /// No TLS, no datagram authentication: anyone who reaches the port is a peer and can
    /// take the cluster over; anyone on the path reads password digests. Only behind
    /// `--insecure-plaintext`.
    #[default]
    InsecurePlaintext,
    /// Mutual TLS between nodes, TLS to clients, sealed datagrams.
    Authenticated(Arc<Credentials>),
}

impl Security {
    /// How this node connects to another.
    pub fn peer_transport(&self) -> Transport {
        match self {
            Security::InsecurePlaintext => Transport::InsecurePlaintext,
            Security::Authenticated(credentials) => Transport::Tls {
                connector: credentials.current().tls.connector.clone(),
                server_name: None,
            },
        }
    }
}

/// The files of a node's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFiles {
    /// Certificate, key and CA.
    pub tls: TlsFiles,
    /// The cluster key file (see [`keys`]).
    pub cluster_key: PathBuf,
}

/// A node's credentials as loaded now; [`Credentials::reload`] swaps them for what the files
/// hold (key or certificate rollover without a restart).
#[derive(Debug)]
pub struct Credentials {
    files: CredentialFiles,
    cluster: String,
    current: RwLock<Arc<Loaded>>,
}

/// One loading of the files.
#[derive(Debug)]
pub struct Loaded {
    /// TLS for connections.
    pub tls: NodeTls,
    /// Keys for datagrams.
    pub keys: KeyRing,
}

impl Credentials {
    /// Loads the files for `cluster`; errors name the file and what is wrong with it.
    pub fn load(files: CredentialFiles, cluster: &str) -> Result<Credentials> {
        let loaded = Credentials::read(&files, cluster)?;
        Ok(Credentials {
            files,
            cluster: cluster.to_string(),
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    fn read(files: &CredentialFiles, cluster: &str) -> Result<Loaded> {
        Ok(Loaded {
            tls: NodeTls::load(&files.tls)?,
            keys: KeyRing::load(&files.cluster_key, cluster)?,
        })
    }

    /// Reads the files again; on any error the credentials in use stay.
    pub fn reload(&self) -> Result<()> {
        let loaded = Credentials::read(&self.files, &self.cluster)?;
        *self.current.write().expect("credentials lock poisoned") = Arc::new(loaded);
        Ok(())
    }

    /// The credentials in use.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .expect("credentials lock poisoned")
            .clone()
    }
}

/// How the node is guarded.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Credentials, or none.
    pub security: Security,
    /// Counters of refused input, shared with the cluster task and the TCP front.
    pub rejections: Arc<Rejections>,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A cluster member: it presented a certificate the cluster CA verified.
    Peer,
    /// A client: TLS without a certificate. Peer-only requests are refused.
    Client,
    /// Plain TCP (`--insecure-plaintext`): nothing is known, everything is allowed.
    Unverified,
}

impl Origin {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Peer => "peer",
            Origin::Client => "client",
            Origin::Unverified => "unverified",
        }
    }
}

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A datagram: unsealed (and not a client's question), forged, replayed, unreadable.
    Datagram,
    /// A connection: a failed or timed-out TLS handshake, or over its budget.
    Connection,
    /// A peer-only request on a client's connection.
    Request,
}

/// How many of each were refused so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectionCounts {
    /// See [`Rejection::Datagram`].
    pub datagrams: u64,
    /// See [`Rejection::Connection`].
    pub connections: u64,
    /// See [`Rejection::Request`].
    pub requests: u64,
}

/// Counters of refused input, with a rate-limited warning.
#[derive(Debug, Default)]
pub struct Rejections {
    datagrams: AtomicU64,
    connections: AtomicU64,
    requests: AtomicU64,
    log: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    last_warning: Option<Instant>,
    unreported: u64,
}

impl Rejections {
    /// Counts one refusal of `kind` from `from`, and warns if none was reported lately.
    pub fn note(&self, kind: Rejection, from: SocketAddr, why: &str) {
        let counter = match kind {
            Rejection::Datagram => &self.datagrams,
            Rejection::Connection => &self.connections,
            Rejection::Request => &self.requests,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, ?kind, why, "rejected");
        let mut log = self.log.lock().expect("rejections lock poisoned");
        log.unreported += 1;
        let due = log
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(REJECTED_LOG_INTERVAL_MS));
        if due {
            let counts = self.counts();
            tracing::warn!(
                %from,
                ?kind,
                why,
                since_last_warning = log.unreported,
                datagrams = counts.datagrams,
                connections = counts.connections,
                requests = counts.requests,
                "rejected input that failed authentication or its limits"
            );
            log.last_warning = Some(Instant::now());
            log.unreported = 0;
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> RejectionCounts {
        RejectionCounts {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}
