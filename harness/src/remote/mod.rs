//! The lab across real hosts: `idlab run --hosts hosts.toml` drives machines over SSH, the way
//! Jepsen drives its nodes from a control node. Each host named in the [`hosts_file`] gets the
//! run's directory, the `idserver` binary and `idlab` itself (both checksum-verified), and runs
//! `idlab agent` ([`agent`]) over an SSH session ([`ssh`], [`session`]): the agent starts,
//! signals and stops the node, applies link faults to the host's own interface, and removes
//! everything when the run ends or the session drops. Clients, status probes and checks run on
//! the control node (where idlab runs); faults never touch its traffic.
//!
//! [`up`] makes such hosts on one machine (namespaces running `sshd`) so the backend can be
//! tried and tested anywhere.

pub mod agent;
pub mod hosts_file;
pub mod protocol;
pub mod session;
pub mod ssh;
pub mod up;

use crate::error::{Error, Result};
use crate::scenario::{
    Action, Build, Discovery, Layout, PartitionShape, RedisMode, Scenario, Selector,
};
use hosts_file::{HostSpec, HostsFile};
use netns::faults::FaultState;
use netns::{Direction, LinkConditions, PartitionMode};
use protocol::{HostFaults, Request};
use session::{AgentSession, ClockOffset};
use ssh::{quote, Ssh};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Longest the preparation of one host may take (directory, copies).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);

/// The hosts of a run, each with its agent.
#[derive(Debug)]
pub struct RemoteHosts {
    specs: Vec<HostSpec>,
    agents: Vec<AgentSession>,
    dirs: Vec<String>,
    control_dir: PathBuf,
    /// The faults in force (hosts by node index), and each host's share as last sent.
    faults: Mutex<(FaultState, Vec<HostFaults>)>,
}

impl RemoteHosts {
    /// Prepares the first `nodes` hosts of `file` for run `run_id` (all at once): the run's
    /// directory, `idserver` and `idlab` copied and verified, an agent started; once for a
    /// whole `idlab run`, each scenario starting with [`RemoteHosts::reset`]. Agent logs go to
    /// `logs/`.
    pub fn connect(
        file: &HostsFile,
        nodes: usize,
        idserver: &Path,
        run_id: &str,
        logs: &Path,
    ) -> Result<RemoteHosts> {
        std::fs::create_dir_all(logs)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", logs.display())))?;
        if file.hosts.len() < nodes {
            return Err(Error::Setup(too_few(file, nodes)));
        }
        // The running binary itself, also if its file was replaced meanwhile (a rebuild).
        let idlab = PathBuf::from("/proc/self/exe");
        let control_dir = std::env::temp_dir().join(format!("{CONTROL_PREFIX}{run_id}"));
        std::fs::create_dir_all(&control_dir).map_err(|e| {
            Error::Setup(format!("failed to create {}: {e}", control_dir.display()))
        })?;
        let specs: Vec<HostSpec> = file.hosts[..nodes].to_vec();
        let started: Vec<std::thread::JoinHandle<Result<(AgentSession, String)>>> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let ssh = Ssh::new(spec, &file.known_hosts, &control_dir);
                let dir = format!("{}/idlab-{run_id}", spec.data_dir.trim_end_matches('/'));
                let (idserver, idlab) = (idserver.to_path_buf(), idlab.clone());
                let log = logs.join(format!("n{}-agent.log", i + 1));
                let interface = spec.interface.clone();
                std::thread::spawn(move || {
                    let agent = format!("{dir}/bin/idlab");
                    let prepared = ssh
                        .run(
                            &format!("mkdir -p {}", quote(&format!("{dir}/bin"))),
                            None,
                            PREPARE_TIMEOUT,
                        )
                        .and_then(|_| ssh.install(&idserver, &format!("{dir}/bin/idserver"), "755"))
                        .and_then(|()| ssh.install(&idlab, &agent, "755"))
                        .and_then(|()| AgentSession::start(&ssh, &agent, &dir, &interface, &log));
                    match prepared {
                        Ok(session) => Ok((session, dir)),
                        Err(e) => {
                            // No agent to clean up after: what was copied goes now, and the
                            // connection with it.
                            let _ =
                                ssh.run(&format!("rm -rf {}", quote(&dir)), None, PREPARE_TIMEOUT);
                            ssh.close();
                            Err(e)
                        }
                    }
                })
            })
            .collect();
        let (mut agents, mut dirs, mut first_error) = (Vec::new(), Vec::new(), None);
        for s in started {
            match s.join() {
                Ok(Ok((agent, dir))) => {
                    agents.push(agent);
                    dirs.push(dir);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::Setup("a host's preparation panicked".into()));
                }
            }
        }
        let hosts = RemoteHosts {
            faults: Mutex::new((FaultState::default(), vec![HostFaults::default(); nodes])),
            specs,
            agents,
            dirs,
            control_dir,
        };
        match first_error {
            // Dropping `hosts` ends the agents that did start (they clean their hosts).
            Some(e) => Err(e),
            None => Ok(hosts),
        }
    }

    /// This run's directory on the control node (the SSH connections' sockets).
    pub fn control_dir(&self) -> &Path {
        &self.control_dir
    }

    /// Node `i`'s agent.
    pub fn agent(&self, i: usize) -> &AgentSession {
        &self.agents[i]
    }

    /// The run's directory on node `i`'s host.
    pub fn dir(&self, i: usize) -> &str {
        &self.dirs[i]
    }

    /// Every host's clock against the control node's.
    pub fn clocks(&self) -> Vec<(String, ClockOffset)> {
        self.agents
            .iter()
            .map(|a| (a.name.clone(), a.clock()))
            .collect()
    }

    /// How many hosts are prepared.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no host is prepared.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Makes every host fresh for the next scenario (no node, no Redis, no faults, no data,
    /// no credentials, no log; the binaries stay) and measures its clock again.
    pub fn reset(&self) -> Result<()> {
        let mut state = self.faults.lock().expect("faults lock");
        for agent in &self.agents {
            agent.request(Request::Reset)?;
            agent.forget_exits();
            agent.measure_clock()?;
        }
        *state = (
            FaultState::default(),
            vec![HostFaults::default(); self.agents.len()],
        );
        Ok(())
    }

    /// Writes `files` (local text files: certificates, keys) into node `i`'s run directory
    /// through its agent (`creds/<name>`, readable by the login's user only); their paths
    /// there.
    pub fn install_credentials(&self, i: usize, files: &[(&str, &Path)]) -> Result<Vec<String>> {
        files
            .iter()
            .map(|(name, local)| {
                let text = std::fs::read_to_string(local).map_err(|e| {
                    Error::Setup(format!("failed to read {}: {e}", local.display()))
                })?;
                match self.agents[i].request(Request::WriteCredential {
                    name: name.to_string(),
                    text,
                })? {
                    protocol::Reply::Written { path } => Ok(path),
                    other => Err(Error::Setup(format!(
                        "{}: the agent answered a credential with {other:?}",
                        self.agents[i].name
                    ))),
                }
            })
            .collect()
    }

    fn index(&self, name: &str) -> Result<u32> {
        name.strip_prefix('n')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=self.specs.len() as u32).contains(n))
            .map(|n| n - 1)
            .ok_or_else(|| {
                Error::Step(format!(
                    "the SSH backend has no host {name:?}: only nodes' hosts can be faulted \
                     (clients run on the control node, which faults never reach)"
                ))
            })
    }

    /// Sets the conditions of one direction (or both) of node `name`'s interface.
    pub fn set_link(
        &self,
        name: &str,
        direction: Direction,
        conditions: LinkConditions,
    ) -> Result<()> {
        let i = self.index(name)?;
        self.change(|f| Ok(f.set_link(i, direction, conditions)?))
    }

    /// Clears every link's conditions.
    pub fn clear_links(&self) -> Result<()> {
        self.change(|f| {
            f.clear_links();
            Ok(())
        })
    }

    /// Cuts `name` off from every other host, both ways.
    pub fn isolate(&self, name: &str, mode: PartitionMode) -> Result<()> {
        let i = self.index(name)?;
        let all = 0..self.specs.len() as u32;
        self.change(|f| {
            f.isolate(i, all, mode);
            Ok(())
        })
    }

    /// Splits the hosts into sides that cannot reach each other.
    pub fn split(&self, sides: &[Vec<String>], mode: PartitionMode) -> Result<()> {
        let sides: Vec<Vec<u32>> = sides
            .iter()
            .map(|side| side.iter().map(|n| self.index(n)).collect())
            .collect::<Result<_>>()?;
        self.change(|f| {
            f.split(&sides, mode);
            Ok(())
        })
    }

    /// `from` can no longer reach `to`.
    pub fn cut(&self, from: &str, to: &str, mode: PartitionMode) -> Result<()> {
        let (from, to) = (self.index(from)?, self.index(to)?);
        self.change(|f| {
            f.cut(from, to, mode);
            Ok(())
        })
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<()> {
        self.change(|f| {
            f.heal();
            Ok(())
        })
    }

    /// Whether a cut separates `a` and `b`, either way.
    pub fn is_cut(&self, a: &str, b: &str) -> bool {
        let (Ok(a), Ok(b)) = (self.index(a), self.index(b)) else {
            return false;
        };
        self.faults.lock().expect("faults lock").0.is_cut(a, b)
    }

    /// Edits the faults and sends each host whose share changed its new share.
    fn change(&self, edit: impl FnOnce(&mut FaultState) -> Result<()>) -> Result<()> {
        let mut state = self.faults.lock().expect("faults lock");
        let mut next = state.0.clone();
        edit(&mut next)?;
        for (i, agent) in self.agents.iter().enumerate() {
            let [from_host, to_host] = next.link(i as u32);
            let share = HostFaults {
                cut_from: next
                    .cuts_to(i as u32)
                    .map(|(from, mode)| (self.specs[from as usize].address, mode))
                    .collect(),
                from_host,
                to_host,
            };
            if share != state.1[i] {
                agent.request(Request::Faults {
                    faults: share.clone(),
                })?;
                state.1[i] = share;
            }
        }
        state.0 = next;
        Ok(())
    }

    /// Node `i`'s address on the cluster network.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        self.specs[i].address
    }

    /// Ends every agent (each removes what it set up) and the SSH connections.
    pub fn close(&mut self) {
        for agent in &self.agents {
            agent.close();
        }
        for agent in self.agents.drain(..) {
            let ssh = agent.ssh().clone();
            drop(agent);
            ssh.close();
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

impl Drop for RemoteHosts {
    fn drop(&mut self) {
        self.close();
    }
}

/// The prefix of a run's directory on the control node, `idlab-ssh-<pid>-<ms>`.
const CONTROL_PREFIX: &str = "idlab-ssh-";

/// Ends the SSH connections and removes the control directories of runs whose process is
/// gone (killed outright); what they removed.
pub fn remove_dead_control_dirs() -> Vec<String> {
    let dead = crate::leftovers::dead_runs(&std::env::temp_dir(), |name| {
        name.strip_prefix(CONTROL_PREFIX)?
            .split('-')
            .next()?
            .parse()
            .ok()
    });
    let mut removed = Vec::new();
    for dir in dead {
        for socket in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if socket.path().extension().is_some_and(|e| e == "sock") {
                let _ = std::process::Command::new("ssh")
                    .arg("-o")
                    .arg(format!("ControlPath={}", socket.path().display()))
                    .args(["-O", "exit", "idlab-dead-run"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(format!("SSH control directory {}", dir.display()));
        }
    }
    removed
}

/// What of a scenario only the local lab runs, if anything.
pub fn lab_only(
    layout: Layout,
    discovery: Discovery,
    redis: RedisMode,
    rogue: bool,
    build: Build,
    client_hosts: u32,
) -> Option<&'static str> {
    [
        (
            layout == Layout::OneHost,
            "every node on one host (`layout = \"one-host\"`)",
        ),
        (discovery == Discovery::Multicast, "multicast discovery"),
        (redis == RedisMode::Container, "Redis in containers"),
        (rogue, "the `rogue` host"),
        (build == Build::Previous, "nodes of the previous build"),
        (client_hosts > 1, "more than one client host"),
    ]
    .into_iter()
    .find(|(needed, _)| *needed)
    .map(|(_, what)| what)
}

/// The line of the first step of `scenario` that faults a client host's link (which the SSH
/// backend cannot: clients run on the control node), if any.
pub fn client_fault(scenario: &Scenario) -> Option<usize> {
    let is_client = |s: &Selector| matches!(s, Selector::Client(_));
    scenario.steps.iter().find_map(|step| {
        let Action::Partition { shape, .. } = &step.action else {
            return None;
        };
        let names_client = match shape {
            PartitionShape::Isolate(s) => is_client(s),
            PartitionShape::Sides(sides) => sides.iter().flatten().any(is_client),
            PartitionShape::OneWay { from, to } => is_client(from) || is_client(to),
        };
        names_client.then_some(step.at.line)
    })
}

/// The message for a hosts file with fewer hosts than a scenario's nodes.
pub fn too_few(file: &HostsFile, nodes: usize) -> String {
    format!(
        "{} names {} host(s); this scenario needs {nodes} (one per node)",
        file.path.display(),
        file.hosts.len()
    )
}
