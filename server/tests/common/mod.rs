//! Test fixtures: [`server`], a real server on port 0 with its own real `redis-server` in a
//! temporary directory; [`cluster`], real `idserver` processes forming a cluster on loopback.

#![allow(dead_code)]

pub mod cluster;
pub mod server;

#[allow(unused_imports)] // not every test binary uses the single-server fixture
pub use server::*;
pub mod http;
