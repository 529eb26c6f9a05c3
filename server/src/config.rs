//! The server's settings, with their defaults. The `idserver` binary fills this from flags.

pub use crate::core::replication::Replication;
use crate::core::CoreConfig;
use crate::security::Security;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

/// Port a server listens on and a client connects to when none is given.
pub const DEFAULT_NUMPORT: u16 = 5151;

/// Name of the cluster when none is given.
pub const DEFAULT_CLUSTER: &str = "idlab";

/// Everything a server needs to start.
///
/// Defaults: listen on `0.0.0.0:5151`, cluster `idlab`, data in `./idserver-data`, its own
/// `redis-server` (found on PATH) with `appendfsync everysec`, no peers, and (for the
/// library; the `idserver` binary asks for one or the other) no credentials.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP address to serve clients on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Cluster name; the server refuses a Redis of another cluster and frames for another one.
    pub cluster: String,
    /// Where the node's own Redis keeps its files (ignored with `redis_url`).
    pub data_dir: PathBuf,
    /// An existing Redis to use instead of starting one.
    pub redis_url: Option<String>,
    /// The `redis-server` binary to start.
    pub redis_bin: String,
    /// Append-only-file fsync policy of the node's own Redis: `always`, `everysec` or `no`.
    pub appendfsync: String,
    /// How the node finds the other members and how fast it reacts.
    pub cluster_net: ClusterConfig,
    /// How writes are acknowledged.
    pub replication: Replication,
    /// TLS and datagram authentication, or none.
    pub security: Security,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` over HTTP, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// Discovery and protocol timings.
///
/// Defaults: no peers, no multicast (a node alone is its own coordinator), the address
/// clients and peers reach us at is the listen address (127.0.0.1 if that is unspecified),
/// and [`CoreConfig`]'s default timings.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// Every member's `host:numport` (our own entry is skipped).
    pub peers: Vec<SocketAddr>,
    /// Multicast group and port for discovery and election datagrams.
    pub mcast: Option<SocketAddrV4>,
    /// The interface (by its address) multicast is sent and received on. Nothing is
    /// multicast without it.
    pub mcast_if: Option<Ipv4Addr>,
    /// The address others reach this node at, if not the listen address.
    pub advertise: Option<std::net::IpAddr>,
    /// Heartbeat, suspicion, join and election timings.
    pub core: CoreConfig,
}

impl ClusterConfig {
    /// Checks the combination of flags.
    pub fn validate(&self) -> Result<(), String> {
        match (self.mcast, self.mcast_if) {
            (Some(_), None) => Err(
                "--mcast needs --mcast-if: multicast is only sent on an interface named for it"
                    .into(),
            ),
            (None, Some(_)) => Err("--mcast-if needs --mcast GROUP:PORT".into()),
            (Some(group), Some(_)) if !group.ip().is_multicast() => Err(format!(
                "--mcast {group}: {} is not a multicast address",
                group.ip()
            )),
            _ => Ok(()),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_NUMPORT)),
            cluster: DEFAULT_CLUSTER.to_string(),
            data_dir: PathBuf::from("idserver-data"),
            redis_url: None,
            redis_bin: "redis-server".to_string(),
            appendfsync: "everysec".to_string(),
            cluster_net: ClusterConfig::default(),
            replication: Replication::default(),
            security: Security::InsecurePlaintext,
            metrics_listen: None,
        }
    }
}
