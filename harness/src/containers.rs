//! Redis in containers (issue 19, first part): the Docker engine the lab uses and the Redis
//! image it builds locally, with no registry.
//!
//! **The engine**: `DOCKER_HOST` if set, else the default socket if a daemon answers there,
//! else a private `dockerd` for the run: started inside a network namespace of its own with
//! `nsenter --net=…` (`ip netns exec` would hide the cgroup mounts), with no bridge and no
//! iptables rules of its own (containers get the network the lab gives them), its data and
//! socket under a directory of the run; stopped, and its namespace removed, when dropped.
//!
//! **Nodes' Redis** ([`RedisContainers`]): one container per node, started and removed with
//! testcontainers (never pulling: the image is local), on no network of the engine's: the lab
//! names the container's network namespace as a host of its own (`n1-redis`) on the lab
//! bridge, so link faults and partitions reach the node's Redis traffic. Its `/data` is the
//! node's data directory, so a container killed and started again loads its append-only file.
//!
//! **The image** (`idlab image build`): a root filesystem holding the host's `redis-server` and
//! the libraries it links (as `ldd` lists them), imported with `docker import`, tagged
//! `idlab-redis:<redis version>-<first 12 hex digits of the rootfs's SHA-256>`: the same binary
//! gives the same tag, and an image already there is not built again.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The image's repository name.
pub const IMAGE_REPOSITORY: &str = "idlab-redis";
/// The label every container the lab starts carries, with the run's id as its value.
pub const RUN_LABEL: &str = "idlab.run";
/// Longest a private `dockerd` may take to answer.
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a private `dockerd` may take to stop before it is killed.
const DOCKERD_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a Redis container may take to accept connections.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The port Redis listens on inside its container.
pub const REDIS_PORT: u16 = 6379;

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
    find_on_path(program).is_some()
}

/// Where `program` is on PATH, if it is.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The host's `redis-server` (on PATH), which the image is built from.
pub fn host_redis_server() -> Result<PathBuf> {
    find_on_path("redis-server").ok_or_else(|| {
        Error::Setup("redis-server is not on PATH (apt-get install redis-server)".into())
    })
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
        if let Some(engine) = Engine::running() {
            return Ok(engine);
        }
        match engine_choice() {
            EngineChoice::DockerHost(_) | EngineChoice::DefaultSocket => {
                unreachable!("Engine::running connects to these")
            }
            EngineChoice::Private { installed: false } => Err(Error::Setup(
                "no Docker engine runs and dockerd is not installed (apt-get install docker.io, \
                 or set DOCKER_HOST)"
                    .into(),
            )),
            EngineChoice::Private { installed: true } => Engine::start_private(work_dir),
        }
    }

    /// The engine that runs already (`DOCKER_HOST` or the default socket), if any.
    pub fn running() -> Option<Engine> {
        let host = match engine_choice() {
            EngineChoice::DockerHost(host) => host,
            EngineChoice::DefaultSocket => "unix:///var/run/docker.sock".into(),
            EngineChoice::Private { .. } => return None,
        };
        Some(Engine {
            host,
            private: None,
        })
    }

    fn start_private(work_dir: &Path) -> Result<Engine> {
        let namespace = format!("idlab-dockerd-{}", std::process::id());
        let dir = work_dir.join(format!("dockerd-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", dir.display())))?;
        // dockerd wants absolute paths.
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::Setup(format!("failed to resolve {}: {e}", dir.display())))?;
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
        let mut command = Command::new("nsenter");
        command
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
            .stderr(log);
        // SAFETY: between fork and exec only prctl, async-signal-safe, is called.
        unsafe {
            use std::os::unix::process::CommandExt;
            // A run killed outright takes its engine (and so its containers) with it.
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
                Ok(())
            });
        }
        let spawned = command.spawn();
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
                // The log goes with the engine's directory: its end goes into the error.
                let log = engine.private.as_ref().map_or(String::new(), |p| {
                    std::fs::read_to_string(p.dir.join("dockerd.log")).unwrap_or_default()
                });
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(Error::Setup(format!(
                    "the private dockerd did not answer within {DOCKERD_START_TIMEOUT:?}; its \
                     log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
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

/// What a run needs to give its nodes Redis in containers: the engine and the image.
#[derive(Debug)]
pub struct RedisContainers {
    engine: Engine,
    image: String,
}

/// A node's Redis container: the testcontainers handle (removal) and its id (the faults, by
/// the `docker` client).
pub struct RedisContainer {
    handle: Option<ContainerAsync<GenericImage>>,
    id: String,
}

impl std::fmt::Debug for RedisContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisContainer")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for RedisContainer {
    fn drop(&mut self) {
        // testcontainers removes a container it drops from inside a tokio runtime only; the
        // lab removes its containers by label ([`RedisContainers::remove_run`]) in any case.
        if let Some(handle) = self.handle.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                drop(handle);
            } else {
                std::mem::forget(handle);
            }
        }
    }
}

impl RedisContainers {
    /// The engine (started if none runs) and the image built from `redis_server`;
    /// testcontainers is pointed at the engine (`DOCKER_HOST`). Call before any other thread
    /// reads the environment.
    pub fn prepare(work_dir: &Path, redis_server: &Path) -> Result<RedisContainers> {
        let engine = Engine::connect_or_start(work_dir)?;
        let image = engine.build_redis_image(redis_server)?;
        std::env::set_var("DOCKER_HOST", engine.host());
        Ok(RedisContainers { engine, image })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The image's `repository:tag`.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Starts a Redis container called `name`, labelled with `run`, its `/data` the host
    /// directory `data` (created), configured as `idserver` configures the Redis it starts
    /// itself but listening on TCP, and waits until it accepts connections.
    pub async fn start(&self, run: &str, name: &str, data: &Path) -> Result<RedisContainer> {
        self.start_listening(run, name, data, redis_args(Listen::Tcp))
            .await
    }

    /// Starts a Redis container as [`RedisContainers::start`] does, but listening on a unix
    /// socket only, `data/redis.sock` on this host (its `/data` is `data`): reachable from
    /// outside any namespace with no network at all. Returns the container and the socket's
    /// URL (`unix://…`).
    pub async fn start_on_socket(
        &self,
        run: &str,
        name: &str,
        data: &Path,
    ) -> Result<(RedisContainer, String)> {
        let data = data
            .canonicalize()
            .map_err(|e| Error::Setup(format!("failed to resolve {}: {e}", data.display())))?;
        let container = self
            .start_listening(run, name, &data, redis_args(Listen::Socket))
            .await?;
        Ok((
            container,
            format!("unix://{}", data.join("redis.sock").display()),
        ))
    }

    async fn start_listening(
        &self,
        run: &str,
        name: &str,
        data: &Path,
        args: Vec<String>,
    ) -> Result<RedisContainer> {
        std::fs::create_dir_all(data)
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", data.display())))?;
        let (repository, tag) = self
            .image
            .split_once(':')
            .expect("the image's name has a tag");
        let handle = GenericImage::new(repository, tag)
            // "Ready to accept connections" (TCP), "…now ready to accept connections at
            // <socket>" (Redis 7.0, a unix socket), "Ready to accept connections unix" (7.2).
            .with_wait_for(WaitFor::message_on_stdout("eady to accept connections"))
            .with_network("none")
            .with_container_name(name)
            .with_label(RUN_LABEL, run)
            .with_mount(Mount::bind_mount(data.to_string_lossy(), "/data"))
            .with_startup_timeout(REDIS_START_TIMEOUT)
            .with_cmd(args)
            .start()
            .await
            .map_err(|e| Error::Setup(format!("failed to start Redis container {name}: {e}")))?;
        let id = handle.id().to_string();
        Ok(RedisContainer {
            handle: Some(handle),
            id,
        })
    }

    /// Removes `container` through testcontainers.
    pub async fn remove(&self, mut container: RedisContainer) -> Result<()> {
        if let Some(handle) = container.handle.take() {
            handle.rm().await.map_err(|e| {
                Error::Setup(format!("failed to remove container {}: {e}", container.id))
            })?;
        }
        Ok(())
    }

    /// The pid of the container's Redis (its network namespace is the lab host's).
    pub fn pid(&self, container: &RedisContainer) -> Result<u32> {
        self.engine.pid_of(&container.id)
    }

    /// `kill-redis`: SIGKILL to the container's Redis (`docker kill`), then the container
    /// started again on its data, as an orchestrator restarts a store that died; the new
    /// process's pid (its namespace is a new one: the lab host must be moved into it).
    pub fn kill_and_restart(&self, container: &RedisContainer) -> Result<u32> {
        self.engine.docker(&["kill", &container.id])?;
        self.engine.docker(&["start", &container.id])?;
        self.pid(container)
    }

    /// `pause-redis`: the container frozen by the cgroup freezer (`docker pause`).
    pub fn pause(&self, container: &RedisContainer) -> Result<()> {
        self.engine.docker(&["pause", &container.id]).map(drop)
    }

    /// `resume-redis`: thawed (`docker unpause`).
    pub fn unpause(&self, container: &RedisContainer) -> Result<()> {
        self.engine.docker(&["unpause", &container.id]).map(drop)
    }

    /// What the container's Redis logged (`docker logs`).
    pub fn logs(&self, container: &RedisContainer) -> Result<String> {
        let out = Command::new("docker")
            .env("DOCKER_HOST", self.engine.host())
            .args(["logs", &container.id])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Setup(format!("failed to run docker: {e}")))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Removes every container labelled with `run` (the lab's clean-up whatever happened).
    pub fn remove_run(&self, run: &str) -> Result<usize> {
        remove_labelled(&self.engine, &format!("{RUN_LABEL}={run}"))
    }
}

fn remove_labelled(engine: &Engine, label: &str) -> Result<usize> {
    let ids = engine.containers_labelled(label)?;
    if !ids.is_empty() {
        let args: Vec<&str> = ["rm", "-f", "-v"]
            .into_iter()
            .chain(ids.iter().map(String::as_str))
            .collect();
        engine.docker(&args)?;
    }
    Ok(ids.len())
}

/// Where a container's Redis listens.
enum Listen {
    /// TCP port [`REDIS_PORT`] on every address of the container (the lab's link).
    Tcp,
    /// The unix socket `/data/redis.sock` only (a directory of the host).
    Socket,
}

/// `redis-server`'s arguments in a node's container: as `idserver` starts its own Redis
/// (append-only file, `everysec`, and its tuning).
fn redis_args(listen: Listen) -> Vec<String> {
    let port = REDIS_PORT.to_string();
    let listen: &[&str] = match listen {
        // The lab's link is the only way in; the node connects from another address.
        Listen::Tcp => &[
            "--port",
            &port,
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
        ],
        Listen::Socket => &[
            "--port",
            "0",
            "--unixsocket",
            "/data/redis.sock",
            "--unixsocketperm",
            "770",
        ],
    };
    let stored = [
        "--dir",
        "/data",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ];
    listen
        .iter()
        .chain(&stored)
        .map(|a| a.to_string())
        .chain(idserver::store::tuning_args())
        .collect()
}

/// `idlab clean`: removes the containers of lab runs whose process is gone, on the engine
/// that runs (a private engine dies with its run). Returns what it removed.
pub fn remove_dead_runs() -> Vec<String> {
    let Some(engine) = Engine::running() else {
        return Vec::new();
    };
    let Ok(listed) = engine.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={RUN_LABEL}"),
        "--format",
        &format!("{{{{.ID}}}} {{{{.Label \"{RUN_LABEL}\"}}}}"),
    ]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in listed.lines() {
        let Some((id, run)) = line.split_once(' ') else {
            continue;
        };
        if run_is_alive(run) {
            continue;
        }
        if engine.docker(&["rm", "-f", "-v", id]).is_ok() {
            removed.push(format!("container {id} (run {run})"));
        }
    }
    removed
}

/// Whether the process that made lab `run` (`idl-<pid>-<n>`) still runs.
fn run_is_alive(run: &str) -> bool {
    run.strip_prefix(netns::lab::NAME_PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// `idlab clean`: the namespaces and directories of private engines whose run is gone
/// (the engine itself died with its run).
pub fn remove_dead_private_engines(work_dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let listed = netns::cmd::run("list namespaces", "ip", &["netns", "list"]).unwrap_or_default();
    for ns in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = ns
            .strip_prefix("idlab-dockerd-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
            continue;
        }
        netns::cleanup::remove_namespace(ns);
        let dir = work_dir.join(format!("dockerd-{pid}"));
        let _ = netns::cmd::run(
            "unmount dockerd's leftovers",
            "umount",
            &["-R", "-l", &dir.to_string_lossy()],
        );
        let _ = std::fs::remove_dir_all(&dir);
        removed.push(format!("namespace {ns} (a private Docker engine's)"));
    }
    removed
}
