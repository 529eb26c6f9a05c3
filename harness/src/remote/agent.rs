//! `idlab agent`: what runs on each remote host for the length of a run, started by the
//! controller over SSH in the run's directory on that host. It reads [`Envelope`]s on stdin
//! and answers on stdout ([`super::protocol`]); it starts, signals and stops the node (whose
//! Redis the node starts itself), applies link faults to the host's cluster interface
//! (iptables chains of its own hooked into INPUT and OUTPUT, `tc netem` where the kernel has
//! it, else the NFQUEUE delayer), and reads node logs back.
//!
//! When its input ends (the run is over, or the SSH session dropped), on `bye`, or on SIGTERM,
//! SIGHUP or SIGINT, it removes everything it set up: the node and its Redis, its chains and
//! their hooks, its queueing discipline, and the run's directory. The node also dies with the
//! agent if the agent is killed outright (a parent-death signal).

use super::protocol::{Envelope, FromAgent, HostFaults, Reply, Request, Target, VERSION};
use netns::delayer::{Delayer, PortDelay};
use netns::{LinkConditions, PartitionMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The node's data directory, inside the agent's directory.
pub const NODE_DATA: &str = "data";
/// The node's credentials, inside the agent's directory.
pub const CREDENTIALS: &str = "creds";
/// The node's log, inside the agent's directory.
pub const NODE_LOG: &str = "node.log";
/// The NFQUEUE number the agent's delayer listens on.
const QUEUE_NUM: u16 = 4317;
/// How often the agent looks at the node and at signals while no request comes.
const TICK: Duration = Duration::from_millis(20);

static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOPPING.store(true, Ordering::Release);
}

struct Agent {
    dir: PathBuf,
    interface: String,
    chain_in: String,
    chain_out: String,
    hooked: bool,
    netem: bool,
    shaped: bool,
    delayer: Option<Delayer>,
    node: Option<Child>,
    /// The SSH session's (client address, server port), whose packets faults never touch.
    ssh: Option<(String, String)>,
}

/// Runs the agent in `dir` for the cluster interface `interface` until its input ends.
pub fn run(dir: &Path, interface: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir.join(NODE_DATA))
        .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    let handler = nix::sys::signal::SigHandler::Handler(on_signal);
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { nix::sys::signal::signal(signal, handler) }
            .map_err(|e| format!("failed to handle {signal}: {e}"))?;
    }
    // A write to a closed stdout must be an error, not a death: cleaning up comes first.
    // SAFETY: ignoring a signal.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
    let pid = std::process::id();
    let mut agent = Agent {
        dir: dir.to_path_buf(),
        interface: interface.to_string(),
        chain_in: format!("idlab-{pid}-in"),
        chain_out: format!("idlab-{pid}-out"),
        hooked: false,
        netem: netns::capability::netem_available(),
        shaped: false,
        delayer: None,
        node: None,
        ssh: std::env::var("SSH_CONNECTION").ok().and_then(|c| {
            let parts: Vec<&str> = c.split_whitespace().collect();
            (parts.len() == 4).then(|| (parts[0].to_string(), parts[3].to_string()))
        }),
    };
    let outcome = agent.serve();
    agent.clean_up();
    outcome
}

impl Agent {
    fn serve(&mut self) -> Result<(), String> {
        let (lines_tx, lines) = mpsc::channel::<Option<String>>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) => {
                        if lines_tx.send(Some(line)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = lines_tx.send(None);
        });
        loop {
            if STOPPING.load(Ordering::Acquire) {
                return Ok(());
            }
            self.watch_node()?;
            let line = match lines.recv_timeout(TICK) {
                Ok(Some(line)) => line,
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
            };
            let envelope: Envelope = match serde_json::from_str(&line) {
                Ok(e) => e,
                Err(e) => {
                    // Not the controller speaking: say so and go on.
                    let _ = say(&FromAgent::Reply {
                        id: 0,
                        reply: Reply::Failed {
                            error: format!("not a request: {e}"),
                        },
                    });
                    continue;
                }
            };
            if matches!(envelope.request, Request::Bye) {
                self.clean_up();
                say(&FromAgent::Reply {
                    id: envelope.id,
                    reply: Reply::Done,
                })?;
                return Ok(());
            }
            let reply = self
                .handle(envelope.request)
                .unwrap_or_else(|error| Reply::Failed { error });
            say(&FromAgent::Reply {
                id: envelope.id,
                reply,
            })?;
        }
    }

    fn handle(&mut self, request: Request) -> Result<Reply, String> {
        match request {
            Request::Hello => Ok(Reply::Hello {
                version: VERSION,
                pid: std::process::id(),
                netem: self.netem,
            }),
            Request::Clock => Ok(Reply::Clock {
                unix_ns: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| e.to_string())?
                    .as_nanos() as u64,
            }),
            Request::StartNode { program, args, log } => self.start_node(&program, &args, &log),
            Request::Signal { target, signal } => {
                let pid = match target {
                    Target::Node => self.node_pid()?,
                    Target::Redis => self.redis_pid()?,
                };
                kill(Pid::from_raw(pid as i32), signal.to_nix())
                    .map_err(|e| format!("failed to send {:?} to {target:?}: {e}", signal))?;
                Ok(Reply::Done)
            }
            Request::KillNode => {
                self.node_pid()?;
                self.end_node(Duration::ZERO);
                Ok(Reply::Done)
            }
            Request::StopNode { wait_ms } => {
                let pid = self.node_pid()?;
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                self.end_node(Duration::from_millis(wait_ms));
                Ok(Reply::Done)
            }
            Request::Faults { faults } => {
                self.apply(&faults)?;
                Ok(Reply::Done)
            }
            Request::Read { path, max_bytes } => {
                if Path::new(&path)
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    return Err(format!("{path}: only paths inside the run's directory"));
                }
                let bytes = std::fs::read(self.dir.join(&path))
                    .map_err(|e| format!("failed to read {path}: {e}"))?;
                let from = bytes.len().saturating_sub(max_bytes as usize);
                Ok(Reply::Text {
                    text: String::from_utf8_lossy(&bytes[from..]).into_owned(),
                })
            }
            Request::WriteCredential { name, text } => {
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    return Err(format!("{name:?} is not a credential's file name"));
                }
                let dir = self.dir.join(CREDENTIALS);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
                let path = dir.join(&name);
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
                Ok(Reply::Written {
                    path: path.display().to_string(),
                })
            }
            Request::Reset => {
                self.end_node(Duration::ZERO);
                self.kill_redis();
                self.apply(&HostFaults::default())?;
                for path in [NODE_DATA, CREDENTIALS, NODE_LOG] {
                    let path = self.dir.join(path);
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    if let Err(e) = removed {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            return Err(format!("failed to remove {}: {e}", path.display()));
                        }
                    }
                }
                std::fs::create_dir_all(self.dir.join(NODE_DATA))
                    .map_err(|e| format!("failed to create the data directory: {e}"))?;
                Ok(Reply::Done)
            }
            Request::Bye => Ok(Reply::Done),
        }
    }

    fn start_node(&mut self, program: &str, args: &[String], log: &str) -> Result<Reply, String> {
        if self.node.is_some() {
            return Err("the node is already running".into());
        }
        let log_path = self.dir.join(log);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("failed to open {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: between fork and exec only prctl, async-signal-safe, is called.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("failed to start {program}: {e}"))?;
        let pid = child.id();
        self.node = Some(child);
        Ok(Reply::Started { pid })
    }

    fn node_pid(&self) -> Result<u32, String> {
        self.node
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| "the node is not running".to_string())
    }

    fn redis_pid(&self) -> Result<u32, String> {
        std::fs::read_to_string(self.dir.join(NODE_DATA).join("redis.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| "the node has no running Redis".to_string())
    }

    /// Waits up to `grace` for the node to exit, then kills it; says it exited.
    fn end_node(&mut self, grace: Duration) {
        let Some(mut child) = self.node.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
        let _ = child.kill();
        let status = child.wait().map_or("unknown".into(), |s| s.to_string());
        let _ = say(&FromAgent::Exited {
            pid: child.id(),
            status,
        });
    }

    /// Says so when the node exited on its own.
    fn watch_node(&mut self) -> Result<(), String> {
        if let Some(child) = &mut self.node {
            if let Ok(Some(status)) = child.try_wait() {
                let pid = child.id();
                self.node = None;
                say(&FromAgent::Exited {
                    pid,
                    status: status.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// Replaces the faults on the cluster interface.
    fn apply(&mut self, faults: &HostFaults) -> Result<(), String> {
        self.hook()?;
        let delays = |c: &LinkConditions| c.latency_ms > 0 || c.jitter_ms > 0;
        // With netem, what the host sends is shaped by a qdisc; what it receives always goes
        // through the delayer (an ingress qdisc would need an ifb device).
        let delay_out = delays(&faults.from_host) && !self.netem;
        let delay_in = delays(&faults.to_host);
        let (cin, cout) = (&self.chain_in, &self.chain_out);
        let mut rules = format!("*filter\n:{cin} - [0:0]\n:{cout} - [0:0]\n-F {cin}\n-F {cout}\n");
        if let Some((client, port)) = &self.ssh {
            rules += &format!("-A {cin} -p tcp -s {client} --dport {port} -j RETURN\n");
            rules += &format!("-A {cout} -p tcp -d {client} --sport {port} -j RETURN\n");
        }
        if faults.from_host.down || faults.to_host.down {
            rules += &format!("-A {cin} -j DROP\n-A {cout} -j DROP\n");
        }
        for (addr, mode) in &faults.cut_from {
            match mode {
                PartitionMode::Drop => rules += &format!("-A {cin} -s {addr} -j DROP\n"),
                PartitionMode::Reject => {
                    rules +=
                        &format!("-A {cin} -p tcp -s {addr} -j REJECT --reject-with tcp-reset\n");
                    rules += &format!(
                        "-A {cin} -s {addr} -j REJECT --reject-with icmp-port-unreachable\n"
                    );
                }
            }
        }
        if faults.to_host.loss_pct > 0.0 {
            let p = faults.to_host.loss_pct / 100.0;
            rules += &format!("-A {cin} -m statistic --mode random --probability {p:.6} -j DROP\n");
        }
        if faults.from_host.loss_pct > 0.0 && !self.netem {
            let p = faults.from_host.loss_pct / 100.0;
            rules +=
                &format!("-A {cout} -m statistic --mode random --probability {p:.6} -j DROP\n");
        }
        if delay_in || delay_out {
            if self.delayer.is_none() {
                self.delayer = Some(
                    Delayer::start_here(QUEUE_NUM)
                        .map_err(|e| format!("failed to start the delayer: {e}"))?,
                );
            }
            let index = self.ifindex()?;
            let delayer = self.delayer.as_ref().expect("started above");
            delayer.set(
                [(
                    index,
                    PortDelay {
                        from_host: if delay_out {
                            (faults.from_host.latency_ms, faults.from_host.jitter_ms)
                        } else {
                            (0, 0)
                        },
                        to_host: (faults.to_host.latency_ms, faults.to_host.jitter_ms),
                    },
                )]
                .into(),
            );
        }
        for (chain, wanted) in [(cin, delay_in), (cout, delay_out)] {
            if wanted {
                rules += &format!("-A {chain} -j NFQUEUE --queue-num {QUEUE_NUM} --queue-bypass\n");
            }
        }
        rules += "COMMIT\n";
        netns::cmd::run_with_input(
            "replace the agent's firewall rules",
            "iptables-restore",
            &["--noflush"],
            Some(&rules),
        )
        .map_err(|e| e.to_string())?;
        self.shape(&faults.from_host)
    }

    /// What the host sends: a netem qdisc (where the kernel has it), a tbf for a rate, or none.
    fn shape(&mut self, c: &LinkConditions) -> Result<(), String> {
        let dev = self.interface.clone();
        let args = netns::faults::apply::qdisc(c, self.netem);
        if args.is_empty() {
            if self.shaped {
                let _ = netns::cmd::run(
                    "remove the agent's qdisc",
                    "tc",
                    &["qdisc", "del", "dev", &dev, "root"],
                );
                self.shaped = false;
            }
            return Ok(());
        }
        let mut full = vec!["qdisc", "replace", "dev", dev.as_str(), "root"];
        full.extend(args.iter().map(String::as_str));
        netns::cmd::run("shape the cluster interface", "tc", &full).map_err(|e| e.to_string())?;
        self.shaped = true;
        Ok(())
    }

    fn ifindex(&self) -> Result<u32, String> {
        let path = format!("/sys/class/net/{}/ifindex", self.interface);
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("no interface {} ({path})", self.interface))
    }

    /// Makes the agent's chains and hooks them into INPUT and OUTPUT for the interface.
    fn hook(&mut self) -> Result<(), String> {
        if self.hooked {
            return Ok(());
        }
        self.ifindex()?;
        let iptables = |action: &str, args: &[&str]| {
            netns::cmd::run(action, "iptables", args).map_err(|e| e.to_string())
        };
        iptables("create the agent's chain", &["-N", &self.chain_in])?;
        iptables("create the agent's chain", &["-N", &self.chain_out])?;
        self.hooked = true;
        iptables(
            "hook the agent's chain",
            &["-I", "INPUT", "-i", &self.interface, "-j", &self.chain_in],
        )?;
        iptables(
            "hook the agent's chain",
            &["-I", "OUTPUT", "-o", &self.interface, "-j", &self.chain_out],
        )?;
        Ok(())
    }

    /// SIGKILL to the node's Redis, if one runs (it outlives a node killed a moment ago for a
    /// moment).
    fn kill_redis(&self) {
        if let Ok(pid) = self.redis_pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Removes everything the agent set up (safe to call twice).
    fn clean_up(&mut self) {
        self.end_node(Duration::ZERO);
        self.kill_redis();
        if self.hooked {
            let quiet = |args: &[&str]| {
                let _ = Command::new("iptables")
                    .args(args)
                    .stderr(Stdio::null())
                    .status();
            };
            quiet(&["-D", "INPUT", "-i", &self.interface, "-j", &self.chain_in]);
            quiet(&["-D", "OUTPUT", "-o", &self.interface, "-j", &self.chain_out]);
            for chain in [&self.chain_in, &self.chain_out] {
                quiet(&["-F", chain]);
                quiet(&["-X", chain]);
            }
            self.hooked = false;
        }
        if self.shaped {
            let _ = Command::new("tc")
                .args(["qdisc", "del", "dev", &self.interface, "root"])
                .stderr(Stdio::null())
                .status();
            self.shaped = false;
        }
        self.delayer = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line to the controller.
fn say(message: &FromAgent) -> Result<(), String> {
    let mut line = serde_json::to_string(message).map_err(|e| e.to_string())?;
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("the controller is gone: {e}"))
}
