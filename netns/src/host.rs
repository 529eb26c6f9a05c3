//! A host: a network namespace on the lab's bridge. Run commands in it, spawn processes in it,
//! or open sockets in it from Rust (a thread enters the namespace; sockets stay in it).

use crate::error::{Error, Result};
use nix::sched::{setns, CloneFlags};
use std::net::Ipv4Addr;
use std::process::Command;

/// One host of a lab (a cheap handle: names and addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) index: u32,
    pub(crate) ns: String,
    pub(crate) addr: Ipv4Addr,
    pub(crate) port: String,
}

impl Host {
    /// The name given at [`crate::Lab::add_host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace's name (under `/run/netns`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The host's address on the lab network.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The host's interface on the lab network (inside its namespace).
    pub fn interface(&self) -> &str {
        "eth0"
    }

    /// The switch-side end of the host's link (inside the lab's switch namespace).
    pub fn switch_port(&self) -> &str {
        &self.port
    }

    /// A command that runs `program` inside this host (`ip netns exec`); spawn it to get a
    /// child whose pid you can signal.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Runs `f` on a thread inside this host's namespace and returns its result. Sockets made in
    /// `f` belong to the host (a socket keeps the namespace it was made in).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.ns);
        let ns_file =
            std::fs::File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
        let thread = std::thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || {
                setns(&ns_file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::io("enter the host's namespace", e.into()))?;
                Ok(f())
            })
            .map_err(|e| Error::io("start a thread for the host", e))?;
        thread
            .join()
            .map_err(|_| Error::Invalid("the function run in the host panicked".into()))?
    }
}
