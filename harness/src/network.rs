//! Faults on the cluster's network, whichever backend holds it: the local lab's switch
//! ([`netns::Lab`]) or the hosts of an SSH run ([`crate::remote::RemoteHosts`]), each host
//! faulting its own interface. Hosts are named as scenarios name them (`n1`, …).

use crate::error::Result;
use crate::remote::RemoteHosts;
use netns::{Direction, Lab, LinkConditions, PartitionMode};

/// The network of a run.
#[derive(Clone, Copy)]
pub enum Net<'a> {
    /// Namespaces on this machine.
    Lab(&'a Lab),
    /// Hosts over SSH.
    Remote(&'a RemoteHosts),
}

impl Net<'_> {
    /// Sets the conditions of one direction (or both) of `host`'s link.
    pub fn set_link(&self, host: &str, direction: Direction, c: LinkConditions) -> Result<()> {
        match self {
            Net::Lab(lab) => Ok(lab.set_link(host, direction, c)?),
            Net::Remote(hosts) => hosts.set_link(host, direction, c),
        }
    }

    /// Clears every link's conditions.
    pub fn clear_links(&self) -> Result<()> {
        match self {
            Net::Lab(lab) => Ok(lab.clear_links()?),
            Net::Remote(hosts) => hosts.clear_links(),
        }
    }

    /// Cuts `host` off from every other host, both ways.
    pub fn isolate(&self, host: &str, mode: PartitionMode) -> Result<()> {
        match self {
            Net::Lab(lab) => Ok(lab.isolate(host, mode)?),
            Net::Remote(hosts) => hosts.isolate(host, mode),
        }
    }

    /// Splits the hosts into sides that cannot reach each other.
    pub fn split(&self, sides: &[Vec<String>], mode: PartitionMode) -> Result<()> {
        match self {
            Net::Lab(lab) => Ok(lab.split(sides, mode)?),
            Net::Remote(hosts) => hosts.split(sides, mode),
        }
    }

    /// `from` can no longer reach `to`.
    pub fn cut(&self, from: &str, to: &str, mode: PartitionMode) -> Result<()> {
        match self {
            Net::Lab(lab) => Ok(lab.cut(from, to, mode)?),
            Net::Remote(hosts) => hosts.cut(from, to, mode),
        }
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<()> {
        match self {
            Net::Lab(lab) => Ok(lab.heal()?),
            Net::Remote(hosts) => hosts.heal(),
        }
    }

    /// Whether a cut separates `a` and `b`, either way.
    pub fn is_cut(&self, a: &str, b: &str) -> bool {
        match self {
            Net::Lab(lab) => lab.is_cut(a, b),
            Net::Remote(hosts) => hosts.is_cut(a, b),
        }
    }
}
