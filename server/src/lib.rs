//! idserver: a replicated identity server (login name <-> UUID directory) over Redis.
//! Its decisions live in a pure core; tokio shells move bytes and call the store.
//!
//! Map of the crate, by layer:
//! - [`core`], no I/O: the cluster protocol (membership, ranks, heartbeats, elections) and
//!   replication (per-replica progress, the ack quorum, a replica's acceptance, the writer's
//!   decisions) as deterministic state machines.
//! - [`node`], the I/O shells of a running node: the cluster task over UDP, the writer, the
//!   replication links and the replica side, request serving, the TCP front.
//! - [`store`]: the node's Redis (MULTI/EXEC transactions make each batch of writes atomic),
//!   its `redis-server` child and full-sync snapshots (streamed out, fed in).
//! - [`wire`]: frames and messages (no sockets); [`connection`]: frames over TCP or TLS.
//! - [`security`]: TLS (mutual between nodes), sealed datagrams with replay windows, the
//!   cluster key file, counters of what was refused.
//! - [`client`]: the client library `idclient` is built on; [`discovery`]: finding servers
//!   by GETMASTER / GETRANK.
//! - The vocabulary: [`account`] (the record and SPEC.md's input rules), [`event`] (writes as
//!   events carrying their results), [`password`] (client-side SHA-512 digest, server-side
//!   argon2id in a bounded pool), [`error`] (the one error type, stable error codes).
//! - Operations: [`metrics`] (what operators scrape, the readiness rule), [`logs`] (text or
//!   JSON, reloadable filter), [`systemd`] (the notify protocol).
//! - [`backup`]: online backups to a file and restoring one into an empty node.
//! - [`fuzz`]: every decoder of outside input as a fuzz target.
//! - Settings: [`config`] (settings and defaults), [`config_file`] (`--config` TOML), [`limits`] (every bound, with its reason),
//!   [`address`] (the address a node advertises, which `--peers` entry is itself), [`time`].

pub mod account;
pub mod address;
pub mod backup;
pub mod client;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod core;
pub mod discovery;
pub mod error;
pub mod event;
pub mod fuzz;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod password;
pub mod security;
pub mod store;
pub mod systemd;
pub mod time;
pub mod wire;

pub use error::{Error, ErrorCode, Result};
