//! The controller's side of one agent: the SSH session that runs `idlab agent` on a host,
//! requests and their replies matched by id (each bounded in time), the node's exits the agent
//! reports, and the host's clock offset.

use super::protocol::{Envelope, FromAgent, Reply, Request, VERSION};
use super::ssh::{quote, Ssh};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest an agent may take to answer a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Round-trip probes of a host's clock.
const CLOCK_PROBES: usize = 16;

/// A host's clock against the controller's, as NTP estimates it: from the probe with the
/// shortest round trip, the host's clock read at the midpoint of the round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ClockOffset {
    /// Host clock minus controller clock (ms).
    pub offset_ms: f64,
    /// The offset is within ± this (half the shortest round trip, ms).
    pub uncertainty_ms: f64,
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::Sender<Reply>>>>;

/// A running agent on one host.
#[derive(Debug)]
pub struct AgentSession {
    /// The host's name.
    pub name: String,
    ssh: Ssh,
    child: Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
    /// Set when the agent says the node's process ended (its pid).
    exited: Arc<Mutex<Vec<u32>>>,
    gone: Arc<AtomicBool>,
    /// Whether link faults use netem on the host.
    pub netem: bool,
    clock: Mutex<ClockOffset>,
}

impl AgentSession {
    /// Starts `idlab agent` (installed at `agent`) on the host in `dir`, for the cluster
    /// interface `interface`; its stderr goes to `log`. Checks the protocol's version and
    /// measures the clock.
    pub fn start(ssh: &Ssh, agent: &str, dir: &str, interface: &str, log: &Path) -> Result<Self> {
        let stderr = std::fs::File::create(log)
            .map(Stdio::from)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", log.display())))?;
        let mut child = ssh.spawn(
            &format!(
                "exec {} agent --dir {} --interface {}",
                quote(agent),
                quote(dir),
                quote(interface)
            ),
            stderr,
        )?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let exited = Arc::new(Mutex::new(Vec::new()));
        let gone = Arc::new(AtomicBool::new(false));
        {
            let (pending, exited, gone) = (pending.clone(), exited.clone(), gone.clone());
            std::thread::Builder::new()
                .name(format!("agent-{}", ssh.name))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        match serde_json::from_str::<FromAgent>(&line) {
                            Ok(FromAgent::Reply { id, reply }) => {
                                if let Some(tx) = pending.lock().expect("pending lock").remove(&id)
                                {
                                    let _ = tx.send(reply);
                                }
                            }
                            Ok(FromAgent::Exited { pid, .. }) => {
                                exited.lock().expect("exited lock").push(pid)
                            }
                            Err(_) => {}
                        }
                    }
                    gone.store(true, Ordering::Release);
                    // Every waiting request hears that the session is gone.
                    pending.lock().expect("pending lock").clear();
                })
                .map_err(|e| Error::Setup(format!("failed to start a thread: {e}")))?;
        }
        let mut session = AgentSession {
            name: ssh.name.clone(),
            ssh: ssh.clone(),
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
            exited,
            gone,
            netem: false,
            clock: Mutex::new(ClockOffset::default()),
        };
        match session.request(Request::Hello)? {
            Reply::Hello { version, netem, .. } if version == VERSION => session.netem = netem,
            Reply::Hello { version, .. } => {
                return Err(Error::Setup(format!(
                    "{}: the agent speaks protocol {version}, this idlab {VERSION}",
                    session.name
                )))
            }
            other => {
                return Err(Error::Setup(format!(
                    "{}: the agent answered hello with {other:?}",
                    session.name
                )))
            }
        }
        session.measure_clock()?;
        Ok(session)
    }

    /// Sends `request` and waits for its reply (an error if the agent failed it, or did not
    /// answer within [`REQUEST_TIMEOUT`]).
    pub fn request(&self, request: Request) -> Result<Reply> {
        let what = format!("{request:?}");
        let fail = |why: String| Error::Step(format!("{}: agent request {what}: {why}", self.name));
        if self.gone.load(Ordering::Acquire) {
            return Err(fail("the SSH session is gone".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let mut line =
            serde_json::to_string(&Envelope { id, request }).map_err(|e| fail(e.to_string()))?;
        line.push('\n');
        {
            let mut stdin = self.stdin.lock().expect("stdin lock");
            stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .map_err(|e| fail(format!("the SSH session is gone: {e}")))?;
        }
        match rx.recv_timeout(REQUEST_TIMEOUT) {
            Ok(Reply::Failed { error }) => Err(fail(error)),
            Ok(reply) => Ok(reply),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.pending.lock().expect("pending lock").remove(&id);
                Err(fail(format!("no answer within {REQUEST_TIMEOUT:?}")))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(fail("the SSH session ended".into())),
        }
    }

    /// Whether the agent said that the node with `pid` exited (and forgets it).
    pub fn take_exit(&self, pid: u32) -> bool {
        let mut exited = self.exited.lock().expect("exited lock");
        let before = exited.len();
        exited.retain(|p| *p != pid);
        exited.len() != before
    }

    /// Forgets every exit the agent reported (the hosts were reset).
    pub fn forget_exits(&self) {
        self.exited.lock().expect("exited lock").clear();
    }

    /// Whether the SSH session ended.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// The host's clock as last measured.
    pub fn clock(&self) -> ClockOffset {
        *self.clock.lock().expect("clock lock")
    }

    /// Measures the host's clock again (16 round trips over the agent's channel).
    pub fn measure_clock(&self) -> Result<ClockOffset> {
        let now_ns = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()) as f64
        };
        let mut best: Option<(f64, f64)> = None;
        for _ in 0..CLOCK_PROBES {
            let (sent, started) = (now_ns(), Instant::now());
            let Reply::Clock { unix_ns } = self.request(Request::Clock)? else {
                return Err(Error::Setup(format!(
                    "{}: a clock probe went wrong",
                    self.name
                )));
            };
            let rtt = started.elapsed().as_secs_f64() * 1e9;
            let offset = unix_ns as f64 - (sent + rtt / 2.0);
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, offset));
            }
        }
        let (rtt, offset) = best.expect("probed at least once");
        let clock = ClockOffset {
            offset_ms: offset / 1e6,
            uncertainty_ms: rtt / 2.0 / 1e6,
        };
        *self.clock.lock().expect("clock lock") = clock;
        Ok(clock)
    }

    /// Ends the agent: `bye` (it removes everything), then the SSH session.
    pub fn close(&self) {
        if !self.is_gone() {
            let _ = self.request(Request::Bye);
        }
        let mut child = self.child.lock().expect("child lock");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The host's SSH transport.
    pub fn ssh(&self) -> &Ssh {
        &self.ssh
    }
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        self.close();
    }
}
