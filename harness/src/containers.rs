//! Redis in containers (issue 19, first part): the Docker engine the lab uses and the Redis
//! image it builds locally, with no registry.
//!
//! **The engine**: `DOCKER_HOST` if set, else the default socket if a daemon answers there,
//! else a private `dockerd` for the run: started inside a network namespace of its own with
//! `nsenter --net=…` (`ip netns exec` would hide the cgroup mounts), with no bridge and no
//! iptables rules of its own (containers get the network the lab gives them), its data and
//! socket under a directory of the run; stopped, and its namespace removed, when dropped.
//!
//! **The image** (`idlab image build`): a root filesystem holding the host's `redis-server` and
//! the libraries it links (as `ldd` lists them), imported with `docker import`, tagged
//! `idlab-redis:<redis version>-<first 12 hex digits of the rootfs's SHA-256>`: the same binary
//! gives the same tag, and an image already there is not built again.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image's repository name.
pub const IMAGE_REPOSITORY: &str = "idlab-redis";
/// The label every container the lab starts carries, with the run's id as its value.
pub const RUN_LABEL: &str = "idlab.run";
/// Longest a private `dockerd` may take to answer.
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a private `dockerd` may take to stop before it is killed.
const DOCKERD_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Which engine the lab would use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChoice {
    /// `DOCKER_HOST` names one.
    DockerHost(String),
    /// A daemon answers on the default socket.
    DefaultSocket,
    /// None runs: a private `dockerd` would be started (if installed).
    Private {
        /// Whether `dockerd` is on PATH.
        installed: bool,
    },
}

impl EngineChoice {
    /// What `idlab doctor` says.
    pub fn describe(&self) -> String {
        match self {
            EngineChoice::DockerHost(host) => format!("DOCKER_HOST ({host})"),
            EngineChoice::DefaultSocket => "the daemon on /var/run/docker.sock".into(),
            EngineChoice::Private { installed: true } => {
                "a private dockerd per run (none runs; dockerd is installed)".into()
            }
            EngineChoice::Private { installed: false } => {
                "none: no daemon runs and dockerd is not installed (apt-get install docker.io)"
                    .into()
            }
        }
    }
}

/// The engine the lab would use now.
pub fn engine_choice() -> EngineChoice {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if !host.is_empty() {
            return EngineChoice::DockerHost(host);
        }
    }
    if std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok() {
        return EngineChoice::DefaultSocket;
    }
    EngineChoice::Private {
        installed: on_path("dockerd"),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A Docker engine the lab talks to; a private one is stopped when this is dropped.
#[derive(Debug)]
pub struct Engine {
    /// `unix:///…` or whatever `DOCKER_HOST` said.
    host: String,
    private: Option<PrivateDaemon>,
}

#[derive(Debug)]
struct PrivateDaemon {
    child: Child,
    namespace: String,
    dir: PathBuf,
}

impl Engine {
    /// The engine [`engine_choice`] names, starting a private `dockerd` under `work_dir` if
    /// none runs.
    pub fn connect_or_start(work_dir: &Path) -> Result<Engine> {
        match engine_choice() {
            EngineChoice::DockerHost(host) => Ok(Engine {
                host,
                private: None,
            }),
            EngineChoice::DefaultSocket => Ok(Engine {
                host: "unix:///var/run/docker.sock".into(),
                private: None,
            }),
            EngineChoice::Private { installed: false } => Err(Error::Setup(
                "no Docker engine runs and dockerd is not installed (apt-get install docker.io, \
                 or set DOCKER_HOST)"
                    .into(),
            )),
            EngineChoice::Private { installed: true } => Engine::start_private(work_dir),
        }
    }

    fn start_private(work_dir: &Path) -> Result<Engine> {
        let namespace = format!("idlab-dockerd-{}", std::process::id());
        let dir = work_dir.join(format!("dockerd-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", dir.display())))?;
        let setup = |what: &str, args: &[&str]| {
            netns::cmd::run(what, "ip", args)
                .map_err(|e| Error::Setup(format!("private dockerd: {e}")))
        };
        setup("make dockerd's namespace", &["netns", "add", &namespace])?;
        setup(
            "bring its loopback up",
            &["-n", &namespace, "link", "set", "lo", "up"],
        )?;
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log"))
            .map_err(|e| Error::Setup(format!("failed to create dockerd's log: {e}")))?;
        let spawned = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{namespace}"))
            .arg("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Error::Setup(e.to_string()))?)
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                netns::cleanup::remove_namespace(&namespace);
                return Err(Error::Setup(format!("failed to start dockerd: {e}")));
            }
        };
        let engine = Engine {
            host: format!("unix://{}", socket.display()),
            private: Some(PrivateDaemon {
                child,
                namespace,
                dir,
            }),
        };
        let deadline = Instant::now() + DOCKERD_START_TIMEOUT;
        while engine
            .docker(&["version", "--format", "{{.Server.Version}}"])
            .is_err()
        {
            if Instant::now() >= deadline {
                return Err(Error::Setup(format!(
                    "the private dockerd did not answer within {DOCKERD_START_TIMEOUT:?} (its log: \
                     {})",
                    engine.private.as_ref().map_or(String::new(), |p| p
                        .dir
                        .join("dockerd.log")
                        .display()
                        .to_string())
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(engine)
    }

    /// What `DOCKER_HOST` must say to reach this engine.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether this engine is the lab's own (started for this run).
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// Runs the `docker` client against this engine; its standard output.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        self.docker_with_input(args, None)
    }

    fn docker_with_input(&self, args: &[&str], input: Option<&Path>) -> Result<String> {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", &self.host).args(args);
        match input {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| Error::Setup(format!("failed to open {}: {e}", path.display())))?;
                command.stdin(file);
            }
            None => {
                command.stdin(Stdio::null());
            }
        }
        let out = command
            .output()
            .map_err(|e| Error::Setup(format!("failed to run docker: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(Error::Setup(format!(
                "docker {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Containers carrying `label` (`key=value`), running or not.
    pub fn containers_labelled(&self, label: &str) -> Result<Vec<String>> {
        let listed = self.docker(&["ps", "-aq", "--filter", &format!("label={label}")])?;
        Ok(listed.lines().map(str::to_string).collect())
    }

    /// The pid of container `id`'s first process (its network namespace is
    /// `/proc/<pid>/ns/net`).
    pub fn pid_of(&self, id: &str) -> Result<u32> {
        self.docker(&["inspect", "--format", "{{.State.Pid}}", id])?
            .parse()
            .map_err(|e| Error::Setup(format!("docker inspect {id}: no pid: {e}")))
    }

    /// Builds the Redis image from `redis_server` (unless an image of the same content is
    /// there); returns its `repository:tag`.
    pub fn build_redis_image(&self, redis_server: &Path) -> Result<String> {
        let version = redis_version(redis_server)?;
        let scratch = tempdir("idlab-image")?;
        let rootfs = scratch.join("rootfs");
        make_rootfs(redis_server, &rootfs)?;
        let tar = scratch.join("rootfs.tar");
        // Sorted names and fixed times and owners: the same files give the same bytes.
        netns::cmd::run(
            "pack the image's root filesystem",
            "tar",
            &[
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-C",
                &rootfs.to_string_lossy(),
                "-cf",
                &tar.to_string_lossy(),
                ".",
            ],
        )
        .map_err(|e| Error::Setup(e.to_string()))?;
        let digest = netns::cmd::run("hash the image", "sha256sum", &[&tar.to_string_lossy()])
            .map_err(|e| Error::Setup(e.to_string()))?;
        let tag = format!(
            "{IMAGE_REPOSITORY}:{version}-{}",
            digest.get(..12).unwrap_or("unknown")
        );
        if self.docker(&["image", "inspect", &tag]).is_err() {
            self.docker_with_input(
                &[
                    "import",
                    "--change",
                    "ENTRYPOINT [\"/usr/bin/redis-server\"]",
                    "--change",
                    "EXPOSE 6379",
                    "--change",
                    "WORKDIR /data",
                    "-",
                    &tag,
                ],
                Some(&tar),
            )?;
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(tag)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.private.is_none() {
            return;
        }
        // Whatever the run left (it labels its containers; a private engine holds only
        // them) goes with the engine.
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.lines().collect();
            if !ids.is_empty() {
                let _ = self.docker(&[&["rm", "-f"][..], &ids].concat());
            }
        }
        let daemon = self.private.as_mut().expect("checked above");
        let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + DOCKERD_STOP_TIMEOUT;
        loop {
            match daemon.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() >= deadline => {
                    let _ = daemon.child.kill();
                    let _ = daemon.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        netns::cleanup::remove_namespace(&daemon.namespace);
        let _ = netns::cmd::run(
            "unmount dockerd's leftovers",
            "umount",
            &["-R", "-l", &daemon.dir.to_string_lossy()],
        );
        let _ = std::fs::remove_dir_all(&daemon.dir);
    }
}

/// `redis-server --version`'s `v=7.0.15`.
fn redis_version(redis_server: &Path) -> Result<String> {
    let out = netns::cmd::run(
        "ask redis-server its version",
        &redis_server.to_string_lossy(),
        &["--version"],
    )
    .map_err(|e| Error::Setup(e.to_string()))?;
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map(str::to_string)
        .ok_or_else(|| Error::Setup(format!("redis-server --version said {out:?}")))
}

/// The binary and every library `ldd` says it links, at their paths, plus `/data` and `/tmp`.
fn make_rootfs(redis_server: &Path, rootfs: &Path) -> Result<()> {
    let place = |from: &Path, to: &str| -> Result<()> {
        let target = rootfs.join(to.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Setup(format!("failed to create {}: {e}", parent.display())))?;
        }
        std::fs::copy(from, &target).map_err(|e| {
            Error::Setup(format!(
                "failed to copy {} into the image: {e}",
                from.display()
            ))
        })?;
        Ok(())
    };
    place(redis_server, "/usr/bin/redis-server")?;
    let linked = netns::cmd::run(
        "list redis-server's libraries",
        "ldd",
        &[&redis_server.to_string_lossy()],
    )
    .map_err(|e| Error::Setup(e.to_string()))?;
    for line in linked.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(str::to_string);
        if let Some(path) = path {
            // Copied, links followed, under the path the binary asks for.
            place(Path::new(&path), &path)?;
        }
    }
    for dir in ["data", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir))
            .map_err(|e| Error::Setup(format!("failed to create /{dir} in the image: {e}")))?;
    }
    Ok(())
}

fn tempdir(prefix: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Setup(format!("failed to create {}: {e}", dir.display())))?;
    Ok(dir)
}
