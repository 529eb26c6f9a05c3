//! idserver: a replicated identity server (login name <-> UUID directory) over Redis.
//!
//! Map of the crate:
//! - [`account`]: the account record and SPEC.md's input rules.
//! - [`core`]: the cluster protocol as a deterministic state machine (no I/O).
//! - [`event`]: writes as events carrying their results.
//! - [`password`]: client-side SHA-512 digest, server-side argon2id in a bounded pool.
//! - [`wire`]: frames and messages (no sockets); [`connection`]: frames over TCP.
//! - [`store`]: the node's Redis (MULTI/EXEC transactions make each batch of writes atomic),
//!   its `redis-server` child and full-sync snapshots (streamed out, fed in).
//! - [`address`]: the address a node advertises and which `--peers` entry is itself.
//! - [`cluster`]: the tokio shell running the core over UDP; [`forward`]: followers passing
//!   requests to the coordinator.
//! - [`writer`]: the coordinator's group commit; [`replication`]: pushing events (or full
//!   snapshots) to replicas and counting their acks; [`replica`]: applying them in order;
//!   [`recent`]: the latest events in memory for that hot path.
//! - [`service`]: serving one request; [`server`]: the TCP front and lifecycle;
//!   [`shared`]: what a node's parts share.
//! - [`client`]: the client library `idclient` is built on; [`discovery`]: finding servers
//!   by GETMASTER / GETRANK.
//! - [`limits`]: every bound, with its reason; [`config`]: settings and defaults.
//! - [`error`]: the one error type and the stable error codes.

pub mod account;
pub mod address;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod core;
pub mod discovery;
pub mod error;
pub mod event;
pub mod forward;
pub mod limits;
pub mod password;
pub mod recent;
pub mod replica;
pub mod replication;
pub mod server;
pub mod service;
pub mod shared;
pub mod store;
pub mod time;
pub mod wire;
pub mod writer;

pub use error::{Error, ErrorCode, Result};
