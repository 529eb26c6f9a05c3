//! A follower passing client requests on to the coordinator over a small pool of kept-open
//! connections. A failure here is what tells the core that the coordinator may be gone.

use crate::client::exchange;
use crate::connection::{Connection, Transport};
use crate::error::Result;
use crate::limits::{
    CLIENT_CONNECT_TIMEOUT_MS, CONNECTION_REUSE_IDLE_MAX_MS, FORWARD_CONNECTIONS_IDLE_MAX,
    FORWARD_TIMEOUT_MS, REPLY_FRAME_BYTES_MAX,
};
use crate::security::Security;
use crate::wire::{Reply, Request};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Connections to coordinators, reused across requests.
#[derive(Debug)]
pub struct Forwarder {
    cluster: String,
    security: Security,
    idle: Mutex<Vec<(SocketAddr, Connection)>>,
    seq: AtomicU64,
}

impl Forwarder {
    /// A forwarder for `cluster`, connecting as `security` says.
    pub fn new(cluster: String, security: Security) -> Self {
        Forwarder {
            cluster,
            security,
            idle: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// Sends `request` (with the client's session clock, and for a write whether the client
    /// sent its request id for the first time) to the coordinator at `to` and returns its
    /// reply and clock; errors mean the coordinator did not answer. Never sent twice.
    pub async fn forward(
        &self,
        to: SocketAddr,
        clock: u64,
        request: &Request,
        fresh: bool,
    ) -> Result<(Reply, u64)> {
        let mut conn = match self.take_idle(to) {
            Some(conn) => conn,
            None => connect(to, &self.security.peer_transport()).await?,
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
        let reply = exchange(
            &mut conn,
            &self.cluster,
            seq,
            clock,
            request,
            fresh,
            timeout,
        )
        .await?;
        self.put_idle(to, conn);
        Ok(reply)
    }

    fn take_idle(&self, to: SocketAddr) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("forwarder lock poisoned");
        // One unused for long may be one the other side is closing: open a new one instead.
        let reusable = Duration::from_millis(CONNECTION_REUSE_IDLE_MAX_MS);
        idle.retain(|(_, conn)| conn.idle_for() < reusable);
        let index = idle.iter().position(|(addr, _)| *addr == to)?;
        Some(idle.swap_remove(index).1)
    }

    fn put_idle(&self, to: SocketAddr, conn: Connection) {
        let mut idle = self.idle.lock().expect("forwarder lock poisoned");
        // Connections to an old coordinator are useless once another one is in use.
        idle.retain(|(addr, _)| *addr == to);
        if idle.len() < FORWARD_CONNECTIONS_IDLE_MAX {
            idle.push((to, conn));
        }
    }
}

/// Opens a peer connection to `to`.
pub async fn connect(to: SocketAddr, transport: &Transport) -> Result<Connection> {
    Connection::connect(
        &to.to_string(),
        CLIENT_CONNECT_TIMEOUT_MS,
        REPLY_FRAME_BYTES_MAX,
        transport,
    )
    .await
}
