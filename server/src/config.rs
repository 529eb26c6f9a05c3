//! The server's settings, with their defaults. The `idserver` binary fills this from flags.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Port a server listens on and a client connects to when none is given.
pub const DEFAULT_NUMPORT: u16 = 5151;

/// Name of the cluster when none is given.
pub const DEFAULT_CLUSTER: &str = "idlab";

/// Everything a server needs to start.
///
/// Defaults: listen on `0.0.0.0:5151`, cluster `idlab`, data in `./idserver-data`, its own
/// `redis-server` (found on PATH) with `appendfsync everysec`.
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
        }
    }
}
