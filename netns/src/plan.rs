//! The names and addresses every lab uses: what marks a namespace as the lab's (so that
//! [`crate::cleanup`] finds a killed run's leftovers) and the lab network's address plan.

use std::net::Ipv4Addr;

/// Prefix of every namespace a lab makes.
pub const NAME_PREFIX: &str = "idl-";
/// The lab network: 198.18.0.0/15 (reserved for benchmarking, never routed).
pub const PREFIX_LEN: u8 = 15;
/// The switch's own address on the lab network.
pub const SWITCH_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// Most hosts in one lab (addresses 198.18.0.1 to 198.18.0.250).
pub const HOSTS_MAX: u32 = 250;
/// Labs this machine reaches ([`crate::Lab::create_reachable`]) each get a /24 of their own in
/// 198.19.0.0/16, so that several can be linked to the machine at once.
pub const REACHABLE_PREFIX_LEN: u8 = 24;
