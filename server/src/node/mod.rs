//! The I/O shells of a running node, over the pure [`crate::core`]:
//! - [`server`]: the TCP front and the node's lifecycle; [`service`]: serving one request;
//!   [`shared`]: what a node's parts share.
//! - [`cluster`]: the tokio task running the cluster core over UDP; [`forward`]: followers
//!   passing requests to the coordinator.
//! - [`writer`]: the coordinator's group commit; [`replication`]: its links to the replicas
//!   and their acks; [`replica`]: applying what a coordinator sends; [`recent`]: the latest
//!   events in memory for that hot path.

pub mod cluster;
pub mod forward;
pub mod http;
pub mod recent;
pub mod replica;
pub mod replication;
pub mod server;
pub mod service;
pub mod shared;
pub mod writer;
