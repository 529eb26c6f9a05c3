//! netns: the lab's network, with no knowledge of idserver.
//!
//! A [`Lab`] is a switch namespace holding a bridge; each [`Host`] is a network namespace
//! joined to the bridge by a veth pair, with an address in 198.18.0.0/15, loopback up and a
//! multicast route. Faults act on the switch side of a host's link, per direction:
//! [`LinkConditions`] (latency with jitter, loss, bandwidth, link down) and partitions
//! (isolate, sides, one-way; drop or reject).
//!
//! Map of the crate:
//! - [`lab`]: the lab, its hosts, and their teardown; [`host`]: a host (commands, sockets).
//! - [`faults`]: link conditions and partitions ([`faults::state`]), applied as netem or as
//!   iptables rules plus the userspace [`delayer`] where the kernel has no netem
//!   ([`faults::apply`]).
//! - [`capability`]: what this machine offers; [`cleanup`]: leftovers of killed runs;
//!   [`plan`]: the names and addresses every lab uses.
//! - [`cmd`]: running `ip`, `iptables`, `tc`; [`error`]: the crate's error type.

pub mod capability;
pub mod cleanup;
pub mod cmd;
pub mod delayer;
pub mod error;
pub mod faults;
pub mod host;
pub mod lab;
pub mod plan;

pub use capability::Capabilities;
pub use error::{Error, Result};
pub use faults::{Direction, LinkConditions, PartitionMode};
pub use host::Host;
pub use lab::Lab;
