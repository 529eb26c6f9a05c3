//! The transport: the system's OpenSSH client, one master connection per host shared by every
//! command (`ControlMaster`), host keys checked against the hosts file's known-hosts file and
//! nothing else (`StrictHostKeyChecking=yes`: an unknown or changed key is refused), batch mode
//! (no prompt ever waits for a terminal). Every command is bounded in time; a failure names
//! the host and the command.

use super::hosts_file::HostSpec;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest an SSH connection may take to open.
const CONNECT_TIMEOUT_S: u32 = 5;

/// One host reached over SSH.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// The host's name in the hosts file.
    pub name: String,
    destination: String,
    port: u16,
    key: Option<PathBuf>,
    known_hosts: PathBuf,
    control: PathBuf,
}

impl Ssh {
    /// The host of `spec`, checked against `known_hosts`, its master connection's socket in
    /// `control_dir`.
    pub fn new(spec: &HostSpec, known_hosts: &Path, control_dir: &Path) -> Ssh {
        Ssh {
            name: spec.name.clone(),
            destination: format!("{}@{}", spec.user, spec.ssh_host),
            port: spec.ssh_port,
            key: spec.key.clone(),
            known_hosts: known_hosts.to_path_buf(),
            control: control_dir.join(format!("{}.sock", spec.name)),
        }
    }

    /// `ssh` with every option, ready for the remote command.
    fn command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-T", "-p", &self.port.to_string()])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "ControlMaster=auto"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            // A master left by a killed run ends on its own once its sessions are gone.
            .args(["-o", "ControlPersist=30"])
            .arg("-o")
            .arg(format!("ConnectTimeout={CONNECT_TIMEOUT_S}"))
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"])
            .args(["-o", "LogLevel=ERROR"]);
        if let Some(key) = &self.key {
            cmd.args(["-o", "IdentitiesOnly=yes"]).arg("-i").arg(key);
        }
        cmd.arg(&self.destination).arg("--");
        cmd
    }

    /// Runs `remote` (a shell command line) on the host with `input` on its stdin, for at most
    /// `timeout`; its stdout.
    pub fn run(&self, remote: &str, input: Option<&[u8]>, timeout: Duration) -> Result<String> {
        let fail = |why: String| Error::Setup(format!("{}: `{remote}` {why}", self.name));
        let mut child = self
            .command()
            .arg(remote)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("could not start ssh: {e}")))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("did not finish within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if !status.success() {
            return Err(fail(format!("failed ({status}): {}", err.trim())));
        }
        Ok(out)
    }

    /// Copies `local` to `remote` (mode `mode`) through the shared connection and checks the
    /// copy's SHA-256 against the local file's.
    pub fn install(&self, local: &Path, remote: &str, mode: &str) -> Result<()> {
        let bytes = std::fs::read(local)
            .map_err(|e| Error::Setup(format!("failed to read {}: {e}", local.display())))?;
        let want = hex(&Sha256::digest(&bytes));
        let part = format!("{remote}.part");
        self.run(
            &format!(
                "umask 077 && cat > {} && chmod {mode} {} && mv {} {} && sha256sum {}",
                quote(&part),
                quote(&part),
                quote(&part),
                quote(remote),
                quote(remote)
            ),
            Some(&bytes),
            Duration::from_secs(60),
        )
        .and_then(|out| {
            let got = out
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if got == want {
                Ok(())
            } else {
                Err(Error::Setup(format!(
                    "{}: the copy of {} at {remote} has SHA-256 {got}, not {want}",
                    self.name,
                    local.display()
                )))
            }
        })
    }

    /// Starts `remote` with its stdin and stdout piped to us (the agent's channel), its stderr
    /// to `stderr`.
    pub fn spawn(&self, remote: &str, stderr: Stdio) -> Result<Child> {
        self.command()
            .arg(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| Error::Setup(format!("{}: could not start ssh: {e}", self.name)))
    }

    /// Closes the master connection (every session over it ends).
    pub fn close(&self) {
        let _ = Command::new("ssh")
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .args(["-O", "exit", &self.destination])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `s` single-quoted for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
