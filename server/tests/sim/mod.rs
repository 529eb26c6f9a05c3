//! The deterministic simulator: the server's real core (membership, elections, replication) on
//! a seeded in-memory network. [`cores`]: the cluster cores and the network; [`data`]: the
//! data plane (writer, replication links, replicas) over modelled stores and connections.

#![allow(dead_code)]

pub mod cores;
pub mod data;

pub use cores::*;
