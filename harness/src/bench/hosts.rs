//! The lab shape every compared system other than idserver runs in: a host per node and a
//! client host, the system's processes started in the hosts' namespaces and killed with it.

use crate::cluster::HostRuntime;
use crate::error::{Error, Result};
use netns::{Host, Lab};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// Where scratch directories of bench systems go besides the temporary directory (etcd's).
const SCRATCH_ROOTS: [&str; 1] = ["/dev/shm"];
/// Scratch directories' names begin with this.
const SCRATCH_PREFIX: &str = "idlab-bench-";

/// `idlab clean`: removes the scratch directories of bench runs whose process is gone (their
/// names end in the lab's id, `idl-<pid>-<n>`). Returns what it removed.
pub fn remove_dead_scratch() -> Vec<String> {
    SCRATCH_ROOTS
        .iter()
        .map(PathBuf::from)
        .chain([std::env::temp_dir()])
        .flat_map(|root| {
            crate::leftovers::remove_dead(&root, "bench scratch", |name| {
                let (_, lab) = name.strip_prefix(SCRATCH_PREFIX)?.rsplit_once("-idl-")?;
                crate::leftovers::lab_pid(&format!("idl-{lab}"))
            })
        })
        .collect()
}

/// One of a system's processes: how to start it again, and the running one.
struct Process {
    host: usize,
    program: String,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

/// Hosts `n1`…`nN` and `client` in a lab of their own, with the processes started on them and
/// a scratch directory. Dropping it kills the processes, removes the directory and the lab.
pub struct BenchHosts {
    processes: Vec<Process>,
    dir: PathBuf,
    client: HostRuntime,
    hosts: Vec<Host>,
    // Dropped last: the namespaces go once every process and runtime in them is gone.
    _lab: Lab,
}

impl BenchHosts {
    /// A lab with `nodes` hosts and a client host (two runtime workers); the scratch directory
    /// is under `scratch` (`system` names it).
    pub fn create(nodes: u32, system: &str, scratch: &Path) -> Result<BenchHosts> {
        let mut lab = Lab::create()?;
        let mut hosts = Vec::new();
        for i in 1..=nodes {
            hosts.push(lab.add_host(&format!("n{i}"))?);
        }
        let client = HostRuntime::start(&lab.add_host("client")?, 2)?;
        let dir = scratch.join(format!("{SCRATCH_PREFIX}{system}-{}", lab.id()));
        Ok(BenchHosts {
            processes: Vec::new(),
            dir,
            client,
            hosts,
            _lab: lab,
        })
    }

    /// The node hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `host`'s own directory (created).
    pub fn data_dir(&self, host: &Host) -> Result<PathBuf> {
        let data = self.dir.join(host.name());
        std::fs::create_dir_all(&data)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", data.display())))?;
        Ok(data)
    }

    /// Starts `program` with `args` on host `host` (one of the system's processes), its output
    /// into `log`.
    pub fn spawn<A: Into<OsString>>(
        &mut self,
        host: usize,
        program: &str,
        args: impl IntoIterator<Item = A>,
        log: &Path,
    ) -> Result<()> {
        let mut process = Process {
            host,
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
            log: log.to_path_buf(),
            child: None,
        };
        self.launch(&mut process)?;
        self.processes.push(process);
        Ok(())
    }

    fn launch(&self, process: &mut Process) -> Result<()> {
        let log = &process.log;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::Setup(format!("failed to open {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::Setup(format!("failed to open {}: {e}", log.display())))?;
        let child = self.hosts[process.host]
            .command(&process.program)
            .args(&process.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Setup(format!("failed to start {}: {e}", process.program)))?;
        process.child = Some(child);
        Ok(())
    }

    /// SIGKILL to every process of host `host` (the host crashes).
    pub fn kill(&mut self, host: usize) {
        for process in self.processes.iter_mut().filter(|p| p.host == host) {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts again every process of host `host` that is not running, as first started.
    pub fn restart(&mut self, host: usize) -> Result<()> {
        let mut processes = std::mem::take(&mut self.processes);
        let started = processes
            .iter_mut()
            .filter(|p| p.host == host && p.child.is_none())
            .try_for_each(|p| self.launch(p));
        self.processes = processes;
        started
    }

    /// The lab the hosts are in.
    pub fn lab(&self) -> &Lab {
        &self._lab
    }

    /// The ids of the running processes.
    pub fn pids(&self) -> Vec<u32> {
        self.processes
            .iter()
            .filter_map(|p| Some(p.child.as_ref()?.id()))
            .collect()
    }

    /// The client host's runtime.
    pub fn client(&self) -> &tokio::runtime::Handle {
        self.client.handle()
    }
}

impl Drop for BenchHosts {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().filter_map(|p| p.child.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_of_dead_runs_is_removed_and_of_live_ones_kept() {
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let tmp = std::env::temp_dir();
        let dead_dir = tmp.join(format!("{SCRATCH_PREFIX}test-idl-{dead}-0"));
        let live_dir = tmp.join(format!("{SCRATCH_PREFIX}test-idl-{}-0", std::process::id()));
        std::fs::create_dir_all(dead_dir.join("n1")).unwrap();
        std::fs::create_dir_all(&live_dir).unwrap();
        let removed = remove_dead_scratch();
        assert!(!dead_dir.exists(), "{removed:?}");
        assert!(live_dir.exists());
        std::fs::remove_dir_all(&live_dir).unwrap();
    }
}
