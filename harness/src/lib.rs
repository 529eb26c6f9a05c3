//! harness: `idlab`, the fault lab that runs idserver clusters in network namespaces, drives
//! declarative scenarios against them and judges the record.
//!
//! Map of the crate (a run flows top to bottom):
//! - [`scenario`]: the TOML scenario format, parsed and checked (errors carry file:line:col).
//! - [`cluster`]: a lab of host namespaces, one `idserver` (with its own `redis-server`) per
//!   node, a client host; start, signal, query.
//! - [`faults`]: partitions, link conditions and the seeded random fault schedule.
//! - [`workload`]: client sessions, single operations and generated loads.
//! - [`rogue`]: the `rogue` host without credentials and its attacks (forged datagrams and
//!   peer requests, replays of captured datagrams, garbage).
//! - [`conditions`]: `await` / `assert` conditions judged on node statuses; [`describe`]:
//!   steps and conditions in words.
//! - [`executor`]: runs one scenario's steps, recovers, collects logs, runs the checkers, and
//!   emits typed [`executor::RunEvent`]s.
//! - [`checkers`]: judges of the history and logs (order, acks, window, loss, uniqueness,
//!   sessions, linearizability).
//! - [`report`]: reporters that consume the events and results: terminal, JSON, JUnit,
//!   HTML timeline.
//! - [`containers`]: the Docker engine (the host's, or a private `dockerd`) and the Redis
//!   image built locally, for Redis in containers.
//! - [`remote`]: the lab across real hosts over SSH (hosts file, transport, `idlab agent`);
//!   [`network`]: faults on either backend.
//! - [`history`]: what a run records; [`limits`]: every bound; [`error`]: the error type.

pub mod bench;
pub mod checkers;
pub mod cluster;
pub mod conditions;
pub mod containers;
pub mod describe;
pub mod error;
pub mod executor;
pub mod faults;
pub mod history;
pub mod leftovers;
pub mod limits;
pub mod network;
pub mod remote;
pub mod report;
pub mod rogue;
pub mod scenario;
pub mod workload;

pub use error::{Error, Result};
