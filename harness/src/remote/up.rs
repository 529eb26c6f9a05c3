//! Hosts to try the SSH backend on one machine: a lab whose host namespaces each run OpenSSH's
//! `sshd` (a host key of its own, logins by a key made for the run only), linked to this
//! machine's own namespace so `idlab run --hosts` reaches them, and the `hosts.toml` that
//! names them. Dropping it stops the daemons and removes the namespaces and the files.

use super::hosts_file::{HostSpec, HostsFile};
use crate::error::{Error, Result};
use netns::Lab;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's OpenSSH server is.
const SSHD: &str = "/usr/sbin/sshd";
/// Longest an sshd may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Namespaces running sshd, and their hosts file.
pub struct SshLab {
    daemons: Vec<Child>,
    dir: PathBuf,
    hosts_file: PathBuf,
    /// The addresses of the hosts, in order.
    pub addresses: Vec<std::net::Ipv4Addr>,
    // Dropped last: the namespaces go once the daemons in them are gone.
    lab: Lab,
}

impl SshLab {
    /// Makes `nodes` hosts (`n1`…) running sshd, a link from this machine to them, keys and a
    /// known-hosts file in a scratch directory, and the hosts file (at `hosts_out`, or in the
    /// scratch directory).
    pub fn start(nodes: u32, hosts_out: Option<&Path>) -> Result<SshLab> {
        if !Path::new(SSHD).exists() {
            return Err(Error::Setup(format!(
                "no OpenSSH server at {SSHD}: install openssh-server (scripts/install-deps)"
            )));
        }
        let lab = Lab::create_reachable()?;
        let dir = std::env::temp_dir().join(format!("idlab-up-{}", lab.id()));
        // From here on, dropping `ssh_lab` (also on an error) removes what was made.
        let mut ssh_lab = SshLab {
            daemons: Vec::new(),
            hosts_file: hosts_out.map_or_else(|| dir.join("hosts.toml"), Path::to_path_buf),
            dir: dir.clone(),
            addresses: Vec::new(),
            lab,
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", dir.display())))?;
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let client_key = dir.join("id_ed25519");
        keygen(&client_key)?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)
            .map_err(|e| Error::Setup(format!("failed to write {}: {e}", authorized.display())))?;
        let mut known_hosts = String::new();
        let mut specs = Vec::new();
        let mut hosts = Vec::new();
        for i in 1..=nodes {
            hosts.push(ssh_lab.lab.add_host(&format!("n{i}"))?);
        }
        ssh_lab.lab.add_control_link()?;
        for host in &hosts {
            let host_dir = dir.join(host.name());
            std::fs::create_dir_all(host_dir.join("data")).map_err(|e| {
                Error::Setup(format!("failed to create {}: {e}", host_dir.display()))
            })?;
            let host_key = host_dir.join("ssh_host_ed25519_key");
            keygen(&host_key)?;
            let public = std::fs::read_to_string(host_key.with_extension("pub"))
                .map_err(|e| Error::Setup(format!("failed to read a host key: {e}")))?;
            let mut fields = public.split_whitespace();
            let (kind, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
            known_hosts += &format!("{} {kind} {key}\n", host.addr());
            let config = host_dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port 22\nListenAddress {addr}\nHostKey {key}\nPidFile {dir}/sshd.pid\n\
                     AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPrintMotd no\nMaxSessions 64\nMaxStartups 64\n",
                    addr = host.addr(),
                    key = host_key.display(),
                    dir = host_dir.display(),
                    auth = authorized.display()
                ),
            )
            .map_err(|e| Error::Setup(format!("failed to write {}: {e}", config.display())))?;
            let daemon = host
                .command(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(host_dir.join("sshd.log"))
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .spawn()
                .map_err(|e| Error::Setup(format!("failed to start sshd: {e}")))?;
            ssh_lab.daemons.push(daemon);
            ssh_lab.addresses.push(host.addr());
            specs.push(HostSpec {
                name: host.name().to_string(),
                ssh_host: host.addr().to_string(),
                ssh_port: 22,
                user: "root".into(),
                key: Some(client_key.clone()),
                interface: host.interface().to_string(),
                address: host.addr(),
                data_dir: host_dir.join("data").display().to_string(),
            });
        }
        let known = dir.join("known_hosts");
        std::fs::write(&known, known_hosts)
            .map_err(|e| Error::Setup(format!("failed to write {}: {e}", known.display())))?;
        for addr in &ssh_lab.addresses {
            wait_listening(*addr)?;
        }
        std::fs::write(&ssh_lab.hosts_file, HostsFile::render(&known, &specs)).map_err(|e| {
            Error::Setup(format!(
                "failed to write {}: {e}",
                ssh_lab.hosts_file.display()
            ))
        })?;
        Ok(ssh_lab)
    }

    /// The hosts file naming the hosts.
    pub fn hosts_file(&self) -> &Path {
        &self.hosts_file
    }

    /// The lab (its hosts' namespaces).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The pids of the hosts' sshd, in order.
    pub fn daemon_pids(&self) -> Vec<u32> {
        self.daemons.iter().map(Child::id).collect()
    }

    /// The data directory the hosts file names for host `i` (0-based).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}", i + 1)).join("data")
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !self.hosts_file.starts_with(&self.dir) {
            let _ = std::fs::remove_file(&self.hosts_file);
        }
    }
}

/// Removes the scratch directories (`idlab-up-idl-<pid>-<n>`) of `idlab up --ssh` runs whose
/// process is gone; what it removed. (Their namespaces go with the lab's own clean-up.)
pub fn remove_dead_scratch() -> Vec<String> {
    crate::leftovers::remove_dead(&std::env::temp_dir(), "scratch directory", |name| {
        crate::leftovers::lab_pid(name.strip_prefix("idlab-up-")?)
    })
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "idlab", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Setup(format!("failed to run ssh-keygen: {e}")))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn wait_listening(addr: std::net::Ipv4Addr) -> Result<()> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while Instant::now() < deadline {
        let target = std::net::SocketAddr::from((addr, 22));
        if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::Setup(format!(
        "sshd at {addr} did not listen within {LISTEN_TIMEOUT:?}"
    )))
}
