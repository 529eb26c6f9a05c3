//! What `idlab` and `idlab agent` say to each other over the SSH channel: one JSON object per
//! line each way. The controller sends [`Envelope`]s; the agent answers each with a
//! [`FromAgent::Reply`] carrying the same id, and says [`FromAgent::Exited`] on its own when
//! the node's process ends.

use netns::{LinkConditions, PartitionMode};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The protocol's version: an agent of another version is refused at `hello`.
pub const VERSION: u32 = 1;

/// A request with the id its reply will carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per session.
    pub id: u64,
    /// What to do.
    pub request: Request,
}

/// What the controller asks of an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Who are you: answered by [`Reply::Hello`].
    Hello,
    /// The agent's clock: answered by [`Reply::Clock`].
    Clock,
    /// Start the node: `program` (a path on the host) with `args`, stderr appended to `log`
    /// (relative to the agent's directory). Answered by [`Reply::Started`].
    StartNode {
        /// The binary.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its log file, in the agent's directory.
        log: String,
    },
    /// A signal to the node, or to its Redis (found by the pid file in the node's data
    /// directory).
    Signal {
        /// Which process.
        target: Target,
        /// Which signal.
        signal: Sig,
    },
    /// SIGKILL to the node, waiting for it to be gone.
    KillNode,
    /// SIGTERM to the node, SIGKILL after `wait_ms`.
    StopNode {
        /// How long to let it exit.
        wait_ms: u64,
    },
    /// Replace the link faults in force on this host.
    Faults {
        /// What to apply.
        faults: HostFaults,
    },
    /// A file of the agent's directory (a node log), up to `max_bytes` from its end.
    Read {
        /// Relative to the agent's directory.
        path: String,
        /// The most to send.
        max_bytes: u64,
    },
    /// Write a text file of the node's credentials (`creds/<name>`, readable by its owner
    /// only); answered by [`Reply::Written`] with its path.
    WriteCredential {
        /// The file's name.
        name: String,
        /// Its text.
        text: String,
    },
    /// Back to a fresh host for the next scenario: the node and its Redis killed, no faults,
    /// the node's data directory, log and credentials removed (the binaries stay).
    Reset,
    /// Remove everything and exit (as on the end of input).
    Bye,
}

/// Which process a signal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The `idserver` the agent started.
    Node,
    /// The node's `redis-server`.
    Redis,
}

/// The signals the lab sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Sig {
    /// Pause.
    Stop,
    /// Resume.
    Cont,
    /// Crash.
    Kill,
    /// Ask to exit.
    Term,
}

impl Sig {
    /// As `nix` names it.
    pub fn to_nix(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        match self {
            Sig::Stop => Signal::SIGSTOP,
            Sig::Cont => Signal::SIGCONT,
            Sig::Kill => Signal::SIGKILL,
            Sig::Term => Signal::SIGTERM,
        }
    }
}

/// The faults one host applies to its own interface: cuts of what other hosts send it, and
/// the conditions of what it sends and receives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFaults {
    /// Hosts whose packets this host refuses, and how.
    pub cut_from: Vec<(Ipv4Addr, PartitionMode)>,
    /// What the host sends.
    pub from_host: LinkConditions,
    /// What the host receives.
    pub to_host: LinkConditions,
}

/// What the agent says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FromAgent {
    /// The answer to request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
    /// The node's process ended (killed by the lab or on its own).
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended (`exit status: 1`, `signal: 9 (SIGKILL)`).
        status: String,
    },
}

/// An answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// To [`Request::Hello`].
    Hello {
        /// [`VERSION`].
        version: u32,
        /// The agent's pid.
        pid: u32,
        /// Whether link faults use `tc netem` here.
        netem: bool,
    },
    /// To [`Request::Clock`]: ns since the Unix epoch.
    Clock {
        /// The host's clock.
        unix_ns: u64,
    },
    /// To [`Request::StartNode`].
    Started {
        /// The node's pid.
        pid: u32,
    },
    /// To [`Request::WriteCredential`]: the file's path on the host.
    Written {
        /// Where it is.
        path: String,
    },
    /// To [`Request::Read`].
    Text {
        /// The file's (end of its) text.
        text: String,
    },
    /// Done.
    Done,
    /// The request failed.
    Failed {
        /// Why.
        error: String,
    },
}
