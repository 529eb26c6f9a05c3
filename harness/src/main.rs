//! `idlab`: the lab's command line (the dispatcher). It finds scenario files and the
//! `idserver` binary, runs scenarios through the executor, hands events and results to the
//! reporters, and maps the outcome to a documented exit status.

use clap::{Parser, Subcommand};
use harness::cluster::{LabCluster, NodeConfig};
use harness::containers::RedisContainers;
use harness::executor::{self, RunOptions, ScenarioResult, ScenarioVerdict};
use harness::history::now_ms;
use harness::report;
use harness::scenario::{self, Mode, RedisMode, Scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Every scenario passed (or the command succeeded).
const EXIT_PASSED: u8 = 0;
/// Some scenario failed.
const EXIT_FAILED: u8 = 1;
/// Nothing could be judged: a bad scenario file, no `idserver`, or a lab that cannot be set
/// up (not root, no iptables or bridge netfilter).
const EXIT_SETUP: u8 = 2;

/// Where `idlab up` records its hosts for `idlab exec`.
const UP_DIR: &str = "/run/idlab";

/// Fault lab for idserver clusters in Linux network namespaces.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Fault lab for idserver clusters in Linux network namespaces: runs scenario files \
             against real clusters and judges the runs (needs root)",
    after_help = "Exit status: 0 all scenarios passed (or the command succeeded), 1 some \
                  scenario failed, 2 setup error (an invalid scenario file, no idserver, or a \
                  machine that cannot host a lab).\n\nScenario format: scenarios/README.md"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario files or directories of `*.toml` files.
    paths: Vec<PathBuf>,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Seed for every scenario (overrides the files' seeds); replays a run exactly as far
    /// as the harness decides (loads, random fault schedules).
    #[arg(long)]
    seed: Option<u64>,
    /// Also run the long tier (scenarios with `long = true`).
    #[arg(long)]
    long: bool,
    /// Keep each node's data directory (Redis files) in the evidence.
    #[arg(long)]
    keep: bool,
    /// The idserver binary (default: beside idlab, else on PATH).
    #[arg(long)]
    idserver: Option<PathBuf>,
    /// The previous release's idserver, which scenarios with `build = "previous"` start
    /// their nodes from (`upgrade` steps move them to --idserver). `scripts/lab` builds it.
    #[arg(long, env = "IDLAB_PREVIOUS_IDSERVER")]
    previous_idserver: Option<PathBuf>,
    /// Where run folders go.
    #[arg(long, default_value = "target/idlab/runs")]
    out: PathBuf,
    /// Where each node's Redis runs, whatever the scenarios say: `process` (idserver starts
    /// its own redis-server) or `container` (one container per node from the image built
    /// locally, a host of its own on the lab network; see `idlab image build`).
    #[arg(long, value_parser = ["process", "container"])]
    redis: Option<String>,
    /// The redis-server binary the container image is built from.
    #[arg(long, default_value = "/usr/bin/redis-server")]
    redis_server: PathBuf,
    /// Where a private dockerd (started when no Docker engine runs) keeps its data.
    #[arg(long, default_value = "target/idlab/docker")]
    docker_work: PathBuf,
    /// Run the nodes on the hosts this file names, over SSH (docs/remote.md), instead of in
    /// the local lab's namespaces. Clients and checks run here.
    #[arg(long)]
    hosts: Option<PathBuf>,
}

/// `idlab bench`'s arguments.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Systems, comma-separated: idserver (whitepaper mode, acknowledged after one replica),
    /// idserver-strict (acknowledged by a majority), etcd (Debian's etcd-server, default
    /// timings, data on a tmpfs; a create-if-absent transaction), etcd-tuned (heartbeat
    /// 10 ms, election 100 ms), sentinel (a Redis primary, two replicas and three
    /// Sentinels; SET then WAIT 1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idserver,idserver-strict,etcd,sentinel"
    )]
    systems: Vec<String>,
    /// Concurrent clients, comma-separated: one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<u32>,
    /// Seconds each measurement writes for.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rounds; each starts every system afresh, in a rotated order.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Leader crashes per system (spread over the rounds), each under 4 writers: the
    /// leader's host is killed (SIGKILL), the time to the first acknowledged write and to
    /// the survivors' agreement measured, the acknowledged writes read back; then it
    /// restarts. 0: none.
    #[arg(long, default_value_t = 20)]
    failovers: u32,
    /// The conditions of every link in the lab while systems are measured: plain, delay
    /// (10 ± 2 ms per link, one way) or loss (5% of packets per link).
    #[arg(long, default_value = "plain")]
    profile: String,
    /// A reduced run: 1 and 64 clients, 2 s each, one round, 2 failovers.
    #[arg(long)]
    quick: bool,
    /// The idserver binary (default: beside idlab, else on PATH).
    #[arg(long)]
    idserver: Option<PathBuf>,
    /// Where run folders go.
    #[arg(long, default_value = "target/idlab/bench")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ImageAction {
    /// Build it from this host's `redis-server` and the libraries it links (`docker import`,
    /// no registry), on the engine `doctor` names, unless an image of the same content is
    /// there; prints its tag (`idlab-redis:<version>-<content hash>`). Runs in container mode
    /// build it themselves.
    Build {
        /// The redis-server binary to put in the image.
        #[arg(long, default_value = "/usr/bin/redis-server")]
        redis_server: PathBuf,
        /// Where a private dockerd keeps its data while it builds.
        #[arg(long, default_value = "target/idlab/docker")]
        work: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario files (default: the `scenarios` directory) and report. Evidence goes to
    /// `target/idlab/runs/<run-id>/` (one folder per scenario with its timeline.html, plus index.html, report.json and junit.xml).
    Run(RunArgs),
    /// Start a cluster to play with and print how to reach each host; Ctrl-C tears it down.
    Up {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// `whitepaper` or `strict`.
        #[arg(long, default_value = "whitepaper")]
        mode: String,
        /// The idserver binary (default: beside idlab, else on PATH).
        #[arg(long)]
        idserver: Option<PathBuf>,
        /// Where each node's Redis runs: `process` or `container` (as `idlab run --redis`;
        /// the containers are hosts `n1-redis`, … too).
        #[arg(long, default_value = "process", value_parser = ["process", "container"])]
        redis: String,
        /// Start no cluster: start namespaces running sshd (reachable from this machine) and
        /// write the hosts file naming them, to try `idlab run --hosts` on one machine.
        #[arg(long, requires = "hosts_out")]
        ssh: bool,
        /// Where `--ssh` writes the hosts file.
        #[arg(long)]
        hosts_out: Option<PathBuf>,
    },
    /// The agent `idlab run --hosts` starts on each remote host over SSH (not for direct
    /// use): reads requests on stdin, answers on stdout, and removes everything it set up
    /// when its input ends.
    #[command(hide = true)]
    Agent {
        /// The run's directory on this host (removed at the end).
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's interface, where link faults act.
        #[arg(long)]
        interface: String,
    },
    /// Run a command inside a host of the cluster `idlab up` started (n1, n2, …, client).
    Exec {
        /// The host.
        host: String,
        /// The pid of the `idlab up` to use, when several run.
        #[arg(long)]
        lab: Option<u32>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Report what this machine offers the lab (root, netem, iptables, nftables, bridge
    /// netfilter, a Docker engine) and how each fault kind will be emulated. Exit status 2 if a
    /// lab cannot run here.
    Doctor {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove what lab runs whose process is gone (e.g. killed with SIGKILL) left: their
    /// namespaces (and every process, link and rule in them), their Redis containers (by the
    /// `idlab.run` label), their private Docker engines' namespaces and data, the scratch
    /// directories of `idlab bench` systems and `idlab up --ssh`, and the SSH connections and
    /// control directories of runs over SSH (their remote hosts clean themselves up when the
    /// session ends).
    Clean {
        /// Where private dockerds keep their data.
        #[arg(long, default_value = "target/idlab/docker")]
        docker_work: PathBuf,
    },
    /// Measure idserver side by side with etcd and Redis with Sentinel: each a 3-node system
    /// in the lab (a host per node), the same write workload from the same client process at
    /// each number of clients, rounds in alternating order; prints a table with ratios against
    /// idserver and writes `<out>/<run-id>/bench.json` and `bench.html` (tables and SVG plots:
    /// throughput against clients, latency CDFs, failover times).
    Bench(BenchArgs),
    /// The Redis image for container mode.
    Image {
        #[command(subcommand)]
        action: ImageAction,
    },
}

fn main() -> ExitCode {
    let outcome = match Args::parse().command {
        Command::Run(args) => run(args),
        Command::Up {
            nodes,
            ssh: true,
            hosts_out,
            ..
        } => up_ssh(nodes, hosts_out.as_deref()),
        Command::Up {
            nodes,
            mode,
            idserver,
            redis,
            ..
        } => up(nodes, &mode, idserver, redis == "container"),
        Command::Agent { dir, interface } => {
            harness::remote::agent::run(&dir, &interface).map(|()| EXIT_PASSED)
        }
        Command::Exec { host, lab, command } => exec(&host, lab, &command),
        Command::Doctor { json } => doctor(json),
        Command::Image {
            action: ImageAction::Build { redis_server, work },
        } => image(&redis_server, &work),
        Command::Bench(args) => bench(args),
        Command::Clean { docker_work } => {
            let mut removed = harness::containers::remove_dead_runs();
            removed.extend(harness::containers::remove_dead_private_engines(
                &docker_work,
            ));
            removed.extend(
                netns::cleanup::remove_leftovers()
                    .into_iter()
                    .map(|ns| format!("namespace {ns}")),
            );
            removed.extend(harness::bench::remove_dead_scratch());
            removed.extend(harness::remote::remove_dead_control_dirs());
            removed.extend(harness::remote::up::remove_dead_scratch());
            removed.extend(harness::cluster::remove_dead_data_roots());
            for what in &removed {
                println!("removed {what}");
            }
            println!("{} leftover(s) removed", removed.len());
            Ok(EXIT_PASSED)
        }
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("idlab: {message}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn bench(args: BenchArgs) -> Result<u8, String> {
    use harness::bench::{self, BenchOptions, Profile, System};
    let BenchArgs {
        systems,
        clients,
        seconds,
        rounds,
        failovers,
        profile,
        quick,
        idserver,
        out,
    } = args;
    let (clients, seconds, rounds, failovers) = if quick {
        (vec![1, 64], 2.0, 1, failovers.min(2))
    } else {
        (clients, seconds, rounds, failovers)
    };
    let systems = systems
        .iter()
        .map(|s| System::parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if systems.is_empty() || clients.is_empty() || clients.contains(&0) || rounds == 0 {
        return Err("--systems, --clients (each at least 1) and --rounds must not be empty".into());
    }
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return Err("--seconds must be above 0 and at most 3600".into());
    }
    let options = BenchOptions {
        systems,
        clients,
        seconds,
        rounds,
        failovers,
        profile: Profile::parse(&profile)?,
        idserver: find_idserver(idserver)?,
    };
    let run_dir = out.join(format!("{}-{}", now_ms() / 1000, std::process::id()));
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| format!("failed to create {}: {e}", run_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start a runtime: {e}"))?;
    let measurements = options.systems.len() * options.clients.len() * options.rounds as usize;
    println!(
        "idlab bench: {measurements} measurement(s) of {seconds} s, {failovers} failover(s) per \
         system, links {}; evidence in {}",
        options.profile.as_str(),
        run_dir.display()
    );
    // Ctrl-C or SIGTERM drops the run: every system it started is torn down with it.
    let report = runtime
        .block_on(async {
            tokio::select! {
                report = bench::run(&options, &run_dir, &|line| println!("  {line}")) => Some(report),
                () = signalled() => None,
            }
        })
        .ok_or("interrupted; every system started is torn down")?
        .map_err(|e| e.to_string())?;
    let json = run_dir.join("bench.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).expect("the report serialises"),
    )
    .map_err(|e| format!("failed to write {}: {e}", json.display()))?;
    let html = run_dir.join("bench.html");
    std::fs::write(&html, bench::html::render(&report))
        .map_err(|e| format!("failed to write {}: {e}", html.display()))?;
    print!("\n{}", bench::table(&report));
    println!("report: {} (plots: {})", json.display(), html.display());
    Ok(EXIT_PASSED)
}

fn image(redis_server: &Path, work: &Path) -> Result<u8, String> {
    let engine = harness::containers::Engine::connect_or_start(work).map_err(|e| e.to_string())?;
    let tag = engine
        .build_redis_image(redis_server)
        .map_err(|e| e.to_string())?;
    println!("{tag}");
    if engine.is_private() {
        eprintln!(
            "idlab: built on a private dockerd for this command, stopped now with its data; \
             container runs build it again on theirs (a running daemon keeps its images)"
        );
    }
    Ok(EXIT_PASSED)
}

fn doctor(json: bool) -> Result<u8, String> {
    let report = netns::capability::probe();
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("the report serialises")
        );
    } else {
        print!("{}", report.to_text());
        println!(
            "containers:       {}",
            harness::containers::engine_choice().describe()
        );
    }
    Ok(if lab_possible(&report) {
        EXIT_PASSED
    } else {
        EXIT_SETUP
    })
}

fn lab_possible(report: &netns::Capabilities) -> bool {
    report.root && report.iptables && report.bridge_netfilter
}

/// The idserver to run: `--idserver`, else beside this binary, else on PATH.
fn find_idserver(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("failed to find idserver at {}", path.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("idserver")));
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("idserver"))
            .find(|p| p.is_file())
    });
    beside
        .filter(|p| p.is_file())
        .or(on_path)
        .ok_or_else(|| {
            "failed to find idserver beside idlab or on PATH (build it with `cargo build --bins`, or pass --idserver)".into()
        })
}

/// Scenario files named by `paths` (directories give their `*.toml`, sorted).
fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let defaults = [PathBuf::from("scenarios")];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("failed to read {}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("failed to find {}", path.display()));
        }
    }
    Ok(files)
}

/// Returns when the user interrupts: SIGINT (Ctrl-C) or SIGTERM.
async fn signalled() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

/// A flag that turns true when the user interrupts the run.
fn interrupt_flag(runtime: &tokio::runtime::Runtime) -> watch::Receiver<bool> {
    let (set, flag) = watch::channel(false);
    runtime.spawn(async move {
        signalled().await;
        eprintln!("idlab: interrupted; stopping the running step and tearing down");
        let _ = set.send(true);
    });
    flag
}

fn run(args: RunArgs) -> Result<u8, String> {
    let RunArgs {
        paths,
        filter,
        seed,
        long,
        keep,
        idserver,
        previous_idserver,
        out,
        redis,
        redis_server,
        docker_work,
        hosts,
    } = args;
    let hosts = hosts
        .map(|p| harness::remote::hosts_file::HostsFile::load(&p).map(Arc::new))
        .transpose()
        .map_err(|e| e.to_string())?;
    let out = out.as_path();
    let redis = redis.map(|r| match r.as_str() {
        "container" => RedisMode::Container,
        _ => RedisMode::Process,
    });
    let files = scenario_files(&paths)?;
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match scenario::load(file) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} scenario file(s) are invalid:\n{}",
            errors.len(),
            errors.join("\n")
        ));
    }
    scenarios.retain(|s| {
        (long || !s.long) && filter.as_ref().is_none_or(|f| s.name.contains(f.as_str()))
    });
    if scenarios.is_empty() {
        return Err("no scenario to run (check the paths, --filter and --long)".into());
    }
    if let Some(hosts) = &hosts {
        // Before anything starts: every scenario must fit the hosts and the backend.
        let refused: Vec<String> = scenarios
            .iter()
            .filter_map(|s| {
                let why = if s.nodes as usize > hosts.hosts.len() {
                    harness::remote::too_few(hosts, s.nodes as usize)
                } else if let Some(line) = harness::remote::client_fault(s) {
                    format!(
                        "the partition at line {line} names a client host, and clients run on \
                         the control node, which faults never reach"
                    )
                } else {
                    let lab_only = harness::remote::lab_only(
                        s.layout,
                        s.discovery,
                        redis.unwrap_or(s.redis),
                        s.rogue,
                        s.build,
                        s.client_hosts,
                    )?;
                    format!("the SSH backend does not run {lab_only}")
                };
                Some(format!("{}: {why}", s.name))
            })
            .collect();
        if !refused.is_empty() {
            return Err(format!(
                "{} scenario(s) cannot run on these hosts (run them in the local lab):\n{}",
                refused.len(),
                refused.join("\n")
            ));
        }
    }
    let idserver = find_idserver(idserver)?;
    let capabilities = netns::capability::probe();
    if hosts.is_none() && !lab_possible(&capabilities) {
        return Err(format!(
            "this machine cannot host a lab:\n{}",
            capabilities.to_text()
        ));
    }
    // The engine and the image, once for the run, before any thread reads the environment
    // (testcontainers finds the engine by DOCKER_HOST).
    let containers = if scenarios
        .iter()
        .any(|s| redis.unwrap_or(s.redis) == RedisMode::Container)
    {
        let prepared = Instant::now();
        let kit = RedisContainers::prepare(&docker_work, &redis_server)
            .map_err(|e| format!("Redis in containers: {e}"))?;
        println!(
            "idlab: Redis in containers from {} on {} (ready in {:.1} s)",
            kit.image(),
            if kit.engine().is_private() {
                "a private dockerd"
            } else {
                kit.engine().host()
            },
            prepared.elapsed().as_secs_f64()
        );
        Some(Arc::new(kit))
    } else {
        None
    };
    let start_ms = now_ms();
    let run_id = format!("{}-{}", start_ms / 1000, std::process::id());
    let run_dir = out.join(&run_id);
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| format!("failed to create {}: {e}", run_dir.display()))?;
    let latest = out.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&run_id, &latest);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start a runtime: {e}"))?;
    let interrupted = interrupt_flag(&runtime);
    // The hosts over SSH, prepared once for the whole run (binaries copied, agents started);
    // dropping them at the end ends the agents, which remove everything.
    let hosts = match &hosts {
        None => None,
        Some(file) => {
            let nodes = scenarios
                .iter()
                .map(|s| s.nodes as usize)
                .max()
                .unwrap_or(1);
            let began = Instant::now();
            let prepared = harness::remote::RemoteHosts::connect(
                file,
                nodes,
                &idserver,
                &format!("{}-{start_ms}", std::process::id()),
                &run_dir.join("agents"),
            )
            .map_err(|e| format!("failed to prepare the hosts: {e}"))?;
            println!(
                "idlab: {nodes} host(s) of {} prepared in {:.1} s",
                file.path.display(),
                began.elapsed().as_secs_f64()
            );
            Some(Arc::new(prepared))
        }
    };
    println!(
        "idlab: {} scenario(s), evidence in {}",
        scenarios.len(),
        run_dir.display()
    );
    let mut results: Vec<ScenarioResult> = Vec::new();
    for s in &scenarios {
        if *interrupted.borrow() {
            break;
        }
        let options = RunOptions {
            idserver: idserver.clone(),
            previous_idserver: previous_idserver.clone(),
            seed,
            evidence: evidence_dir(&run_dir, &s.name),
            interrupted: interrupted.clone(),
            keep_data: keep,
            redis,
            containers: containers.clone(),
            hosts: hosts.clone(),
        };
        let result = runtime.block_on(executor::run(s, &options, &|e| report::progress(&e)));
        if let Err(e) = report::write_evidence(&result) {
            eprintln!("idlab: failed to write the evidence of {}: {e}", s.name);
        }
        println!(
            "  {} {} in {:.1} s{}",
            match result.verdict {
                ScenarioVerdict::Pass => "PASS",
                ScenarioVerdict::Fail => "FAIL",
                ScenarioVerdict::Error => "ERROR",
            },
            result.name,
            result.duration_ms as f64 / 1000.0,
            result
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        results.push(result);
    }
    let run_report = report::RunReport::new(&run_id, start_ms, now_ms() - start_ms, &results);
    report::write_run(&run_dir, &run_report)
        .map_err(|e| format!("failed to write the run report: {e}"))?;
    print!("{}", report::summary_table(&results));
    println!(
        "\n{} passed, {} failed, {} errors in {:.1} s; report: {}",
        run_report.passed,
        run_report.failed,
        run_report.errors,
        run_report.duration_ms as f64 / 1000.0,
        run_dir.join("report.json").display()
    );
    Ok(if run_report.errors > 0 {
        EXIT_SETUP
    } else if run_report.failed > 0 || *interrupted.borrow() {
        EXIT_FAILED
    } else {
        EXIT_PASSED
    })
}

/// The scenario's evidence folder in the run folder (`name`, or `name-2`… when two scenario
/// files share a name).
fn evidence_dir(run_dir: &Path, name: &str) -> PathBuf {
    let mut dir = run_dir.join(name);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = run_dir.join(format!("{name}-{n}"));
    }
    dir
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UpHost {
    name: String,
    ns: String,
    addr: String,
}

fn up(nodes: u32, mode: &str, idserver: Option<PathBuf>, containers: bool) -> Result<u8, String> {
    let mode = match mode {
        "whitepaper" => Mode::Whitepaper,
        "strict" => Mode::Strict,
        other => return Err(format!("unknown mode {other} (whitepaper or strict)")),
    };
    if nodes == 0 || nodes > harness::limits::NODES_MAX {
        return Err(format!(
            "--nodes must be 1 to {}",
            harness::limits::NODES_MAX
        ));
    }
    let idserver = find_idserver(idserver)?;
    let evidence = PathBuf::from(format!("target/idlab/up-{}", std::process::id()));
    // Before the runtime's threads: testcontainers finds the engine by DOCKER_HOST.
    let kit = if containers {
        let kit = RedisContainers::prepare(
            Path::new("target/idlab/docker"),
            Path::new("/usr/bin/redis-server"),
        )
        .map_err(|e| format!("Redis in containers: {e}"))?;
        Some(Arc::new(kit))
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start a runtime: {e}"))?;
    let mut config = NodeConfig::plain(idserver, "idlab", mode, nodes);
    if kit.is_some() {
        config.redis = RedisMode::Container;
        config.containers = kit;
    }
    let mut cluster = LabCluster::create(config, &evidence)
        .map_err(|e| format!("failed to set up the lab: {e}"))?;
    runtime
        .block_on(cluster.start_stores())
        .map_err(|e| format!("failed to start the Redis containers: {e}"))?;
    for i in 0..cluster.len() {
        cluster.start(i).map_err(|e| e.to_string())?;
    }
    let mut hosts = Vec::new();
    println!("{:<8} {:<22} namespace", "host", "address");
    for i in 0..cluster.len() {
        let host = cluster.host(i).map_err(|e| e.to_string())?;
        println!(
            "{:<8} {:<22} {}",
            cluster.name(i),
            cluster.addr(i),
            host.ns()
        );
        hosts.push(UpHost {
            name: cluster.name(i),
            ns: host.ns().to_string(),
            addr: cluster.addr(i).to_string(),
        });
    }
    let client = cluster
        .lab()
        .expect("idlab up runs in the local lab")
        .host("client")
        .map_err(|e| e.to_string())?
        .clone();
    println!("{:<8} {:<22} {}", "client", client.addr(), client.ns());
    hosts.push(UpHost {
        name: "client".into(),
        ns: client.ns().to_string(),
        addr: client.addr().to_string(),
    });
    for i in 0..cluster.len() {
        if let Ok(redis) = cluster.redis_host(i) {
            let addr = format!("{}:{}", redis.addr(), harness::containers::REDIS_PORT);
            println!("{:<8} {:<22} {}", redis.name(), addr, redis.ns());
            hosts.push(UpHost {
                name: redis.name().to_string(),
                ns: redis.ns().to_string(),
                addr,
            });
        }
    }
    let record = PathBuf::from(UP_DIR).join(format!("up-{}.json", std::process::id()));
    let _ = std::fs::create_dir_all(UP_DIR);
    std::fs::write(
        &record,
        serde_json::to_string(&hosts).expect("hosts serialise"),
    )
    .map_err(|e| format!("failed to write {}: {e}", record.display()))?;
    let ca = cluster
        .credentials()
        .map(|c| c.ca().display().to_string())
        .unwrap_or_default();
    println!(
        "\nTry: idlab exec client -- idclient --tls-ca {ca} --server {} --status\nNode logs: {}/nodes/. Ctrl-C tears the cluster down.",
        cluster.addr(0).ip(),
        evidence.display()
    );
    runtime.block_on(signalled());
    let _ = std::fs::remove_file(&record);
    runtime.block_on(cluster.remove_stores());
    drop(cluster);
    println!("torn down");
    Ok(EXIT_PASSED)
}

/// `idlab up --ssh`: hosts running sshd and their hosts file, until Ctrl-C or SIGTERM.
fn up_ssh(nodes: u32, hosts_out: Option<&Path>) -> Result<u8, String> {
    if nodes == 0 || nodes > harness::remote::hosts_file::HOSTS_MAX as u32 {
        return Err(format!(
            "--nodes must be 1 to {}",
            harness::remote::hosts_file::HOSTS_MAX
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start a runtime: {e}"))?;
    let lab = harness::remote::up::SshLab::start(nodes, hosts_out)
        .map_err(|e| format!("failed to start the SSH hosts: {e}"))?;
    for (i, addr) in lab.addresses.iter().enumerate() {
        println!("n{:<7} {addr:<16} sshd on port 22", i + 1);
    }
    println!(
        "\nHosts file: {}\nTry: idlab run --hosts {} scenarios/coordinator-crash.toml\nCtrl-C \
         tears the hosts down.",
        lab.hosts_file().display(),
        lab.hosts_file().display()
    );
    runtime.block_on(signalled());
    drop(lab);
    println!("torn down");
    Ok(EXIT_PASSED)
}

fn exec(host: &str, lab: Option<u32>, command: &[String]) -> Result<u8, String> {
    let mut labs = Vec::new();
    for entry in std::fs::read_dir(UP_DIR)
        .map_err(|_| "no cluster is up (start one with `idlab up`)".to_string())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("up-")
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        if alive && lab.is_none_or(|l| l == pid) {
            labs.push((pid, entry.path()));
        }
    }
    let (pid, path) = match labs.as_slice() {
        [] => return Err("no cluster is up (start one with `idlab up`)".into()),
        [one] => one.clone(),
        many => {
            let pids: Vec<String> = many.iter().map(|(p, _)| p.to_string()).collect();
            return Err(format!(
                "several clusters are up (idlab up pids {}): pick one with --lab PID",
                pids.join(", ")
            ));
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let hosts: Vec<UpHost> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let Some(target) = hosts.iter().find(|h| h.name == host) else {
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(format!(
            "the cluster of idlab up {pid} has no host {host} (hosts: {})",
            names.join(", ")
        ));
    };
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &target.ns])
        .args(command)
        .status()
        .map_err(|e| format!("failed to run ip netns exec: {e}"))?;
    Ok(status.code().unwrap_or(1).clamp(0, 255) as u8)
}
