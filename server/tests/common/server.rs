//! One real server on port 0 with its own real `redis-server` in a temporary directory.

use idserver::client::{Client, ClientConfig};
use idserver::config::ServerConfig;
use idserver::node::server::RunningServer;
use std::path::Path;
use tempfile::TempDir;

/// A server and the directory its Redis lives in (removed on drop).
pub struct TestServer {
    pub server: RunningServer,
    pub cluster: String,
    pub dir: TempDir,
}

impl TestServer {
    /// A fresh server with its own Redis, in a cluster no other test uses.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
        let server = RunningServer::start(config(dir.path(), &cluster, None))
            .await
            .expect("server starts");
        TestServer {
            server,
            cluster,
            dir,
        }
    }

    /// A client of this server's cluster.
    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            servers: vec![self.server.local_addr().to_string()],
            cluster: self.cluster.clone(),
            ..ClientConfig::default()
        })
    }

    pub fn addr(&self) -> String {
        self.server.local_addr().to_string()
    }
}

/// Settings for a server on 127.0.0.1:0 with data in `dir`.
pub fn config(dir: &Path, cluster: &str, redis_url: Option<String>) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cluster: cluster.to_string(),
        data_dir: dir.to_path_buf(),
        redis_url,
        ..ServerConfig::default()
    }
}

/// A plain connection to the Redis at `url`.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `SET key value` in the Redis at `url`.
pub async fn redis_set(url: &str, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut redis_conn(url).await)
        .await
        .unwrap();
}

/// How many times the Redis at `url` has run `command` (lower case).
pub async fn calls_of(url: &str, command: &str) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis_conn(url).await)
        .await
        .unwrap();
    let name = format!("cmdstat_{command}:calls=");
    stats.find(&name).map_or(0, |at| {
        stats[at + name.len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
}
