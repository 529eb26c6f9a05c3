//! `idserver`: one node of the identity service. Parses flags, starts the server, shuts it
//! down cleanly on SIGINT or SIGTERM, and reads its credentials again on SIGHUP.

use idserver::address::{self, AddressFlags, HostAddresses};
use idserver::config::{
    ClusterConfig, Replication, ServerConfig, DEFAULT_CLUSTER, DEFAULT_NUMPORT,
};
use idserver::core::CoreConfig;
use idserver::logs::{FilterSource, LogFormat as Format, Logs};
use idserver::node::server::RunningServer;
use idserver::security::{CredentialFiles, Credentials, Security, TlsFiles};
use idserver::systemd;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Many small allocations per request (frames, events, Redis commands): under load perf showed
/// about an eighth of the coordinator's CPU in the system allocator's malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status when the server could not start (bad flags are 2, from clap).
const EXIT_START_FAILED: u8 = 1;

/// Identity server: maps login names to UUIDs, keeping its data in Redis.
///
/// Without --redis it runs its own redis-server (on a private unix socket, data and
/// append-only file in --data-dir), which stops with it, even if it is killed.
///
/// Credentials are required: --tls-cert, --tls-key and --tls-ca (mutual TLS between nodes, TLS
/// to clients) and --cluster-key-file (signs cluster datagrams); SIGHUP reads them again, for
/// a rollover without downtime; `idkeys` makes them all. --insecure-plaintext runs without any: then anyone who
/// reaches the port can take the cluster over.
#[derive(Debug, clap::Parser)]
#[command(version, about, long_about)]
struct Args {
    /// A TOML file of settings: each flag's long name as a key (`numport = 5151`,
    /// `data-dir = "/var/lib/idserver"`, `peers = ["10.0.0.1:5151"]`, `verbose = true`).
    /// Flags and environment variables override it; it overrides the defaults.
    #[arg(long, value_name = "FILE", env = "IDSERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Print every setting's effective value and where it came from (flag, environment, file,
    /// default), then exit.
    #[arg(long)]
    print_config: bool,
    /// Restore the backup FILE (`idclient --backup`) into this node's empty data directory
    /// (or empty --redis), check it (checksum, cluster, clock, accounts counted), give the
    /// node a fresh id, and exit; then start the node as usual. Refuses a damaged file, a
    /// backup of another --cluster, and a node that holds data.
    #[arg(long, value_name = "FILE")]
    restore: Option<PathBuf>,
    /// This node's certificate chain (PEM), signed by the cluster CA; it must name the address
    /// peers and clients reach the node at (an IP address SAN).
    #[arg(
        long,
        value_name = "FILE",
        env = "IDSERVER_TLS_CERT",
        required_unless_present_any = ["insecure_plaintext", "restore", "print_config"]
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "IDSERVER_TLS_KEY",
        required_unless_present_any = ["insecure_plaintext", "restore", "print_config"]
    )]
    tls_key: Option<PathBuf>,
    /// The cluster CA's certificate(s) (PEM): peers must present a certificate it signed.
    #[arg(
        long,
        value_name = "FILE",
        env = "IDSERVER_TLS_CA",
        required_unless_present_any = ["insecure_plaintext", "restore", "print_config"]
    )]
    tls_ca: Option<PathBuf>,
    /// The cluster key: hex, one key per line (the first signs; a second is accepted during
    /// a rollover). Make one with `openssl rand -hex 32`.
    #[arg(
        long,
        value_name = "FILE",
        env = "IDSERVER_CLUSTER_KEY_FILE",
        required_unless_present_any = ["insecure_plaintext", "restore", "print_config"]
    )]
    cluster_key_file: Option<PathBuf>,
    /// No TLS and no datagram authentication: anyone who reaches this node's port can act as a
    /// member and take the cluster over, and anyone on the path reads password digests. For a
    /// trusted, closed network only.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca", "cluster_key_file"], env = "IDSERVER_INSECURE_PLAINTEXT")]
    insecure_plaintext: bool,
    /// TCP port to serve clients on (0 picks a free one; the chosen address is printed).
    #[arg(short = 'n', long, default_value_t = DEFAULT_NUMPORT, env = "IDSERVER_NUMPORT")]
    numport: u16,
    /// Address to listen on (TCP for requests, UDP on the same port for cluster datagrams).
    #[arg(long, default_value = "0.0.0.0", env = "IDSERVER_LISTEN")]
    listen: IpAddr,
    /// Log every request and storage step (else: start, stop and errors only).
    #[arg(short, long, env = "IDSERVER_VERBOSE")]
    verbose: bool,
    /// Which log lines to write, as a tracing filter (`info`, `warn`, `idserver=debug,info`);
    /// overrides --verbose. A SIGHUP reads it (and `verbose`) from --config again.
    #[arg(long, value_name = "FILTER", env = "IDSERVER_LOG_FILTER")]
    log_filter: Option<String>,
    /// `text` (for people) or `json` (one object per line: timestamp, level, target, fields).
    #[arg(long, value_enum, default_value = "text", env = "IDSERVER_LOG_FORMAT")]
    log_format: LogFormat,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` over plain HTTP at this address,
    /// e.g. 127.0.0.1:9151 (off by default; it shows cluster state, not the directory).
    #[arg(long, value_name = "ADDR:PORT", env = "IDSERVER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Name of the cluster this node belongs to; a Redis of another cluster is refused.
    #[arg(long, default_value = DEFAULT_CLUSTER, env = "IDSERVER_CLUSTER")]
    cluster: String,
    /// Directory for the node's own Redis (socket, append-only file, log, pid file).
    #[arg(long, default_value = "idserver-data", env = "IDSERVER_DATA_DIR")]
    data_dir: PathBuf,
    /// Use this Redis instead of starting one, e.g. redis://127.0.0.1:6379/0 or unix:///run/redis.sock.
    #[arg(long, env = "IDSERVER_REDIS")]
    redis: Option<String>,
    /// The redis-server binary to start.
    #[arg(long, default_value = "redis-server", env = "IDSERVER_REDIS_SERVER")]
    redis_server: String,
    /// Threads serving requests and the cluster (default: one per CPU). Where the node shares
    /// a few cores with other nodes or their Redis (several nodes on one small host), 1 keeps
    /// its threads from contending with the others for the same cores.
    #[arg(long, env = "IDSERVER_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// fsync policy of the own Redis's append-only file.
    #[arg(long, default_value = "everysec", value_parser = ["always", "everysec", "no"], env = "IDSERVER_APPENDFSYNC")]
    appendfsync: String,
    /// Every member's HOST:PORT, comma-separated, this node included: its own entry is the
    /// one with its port at one of this host's addresses (so several nodes on one host differ
    /// by port), and is the address it advertises. Members not running yet are fine.
    #[arg(long, value_delimiter = ',', env = "IDSERVER_PEERS")]
    peers: Vec<String>,
    /// Multicast group for discovery and elections, e.g. 239.255.51.51:5151 (needs --mcast-if).
    #[arg(long, value_name = "GROUP:PORT", env = "IDSERVER_MCAST")]
    mcast: Option<SocketAddrV4>,
    /// Address of the interface to multicast on; without it nothing is multicast.
    #[arg(long, value_name = "ADDR", env = "IDSERVER_MCAST_IF")]
    mcast_if: Option<Ipv4Addr>,
    /// Address peers and clients reach this node at (default: --listen if not 0.0.0.0, else
    /// this node's own --peers entry, else --mcast-if, else the address the kernel routes
    /// from towards the peers, else 127.0.0.1).
    #[arg(long, env = "IDSERVER_ADVERTISE")]
    advertise: Option<IpAddr>,
    /// Interval of the coordinator's GETRANK heartbeat.
    #[arg(long, default_value_t = CoreConfig::default().heartbeat_ms, env = "IDSERVER_HEARTBEAT_MS")]
    heartbeat_ms: u64,
    /// Silent heartbeats before a follower suspects the coordinator (then asks the others).
    #[arg(long, default_value_t = CoreConfig::default().suspect_misses, env = "IDSERVER_SUSPECT_MISSES")]
    suspect_misses: u32,
    /// Silent heartbeats before the coordinator declares a member dead and frees its rank.
    #[arg(long, default_value_t = CoreConfig::default().dead_misses, env = "IDSERVER_DEAD_MISSES")]
    dead_misses: u32,
    /// Extra suspicion delay per rank above 1 (staggers elections).
    #[arg(long, default_value_t = CoreConfig::default().stagger_ms, env = "IDSERVER_STAGGER_MS")]
    stagger_ms: u64,
    /// How long a starting node collects RANK replies before taking a rank.
    #[arg(long, default_value_t = CoreConfig::default().join_window_ms, env = "IDSERVER_JOIN_WINDOW_MS")]
    join_window_ms: u64,
    /// How long a candidate collects RANK replies (ends early once all known members answered).
    #[arg(long, default_value_t = CoreConfig::default().election_window_ms, env = "IDSERVER_ELECTION_WINDOW_MS")]
    election_window_ms: u64,
    /// Other nodes that must have applied a write before the client hears success (fewer if
    /// fewer members are known; a node alone answers at once).
    #[arg(long, default_value_t = Replication::default().min_acks, env = "IDSERVER_MIN_ACKS")]
    min_acks: usize,
    /// `whitepaper`: acks from --min-acks replicas, any node can coordinate alone. `strict`:
    /// votes and acks from a majority of --cluster-size, and a coordinator without a majority
    /// steps down within its lease.
    #[arg(long, value_enum, default_value = "whitepaper", env = "IDSERVER_MODE")]
    mode: Mode,
    /// Strict mode's cluster size N (default: the other members --peers lists, plus this node;
    /// a warning is logged if this node's own entry is not among them).
    #[arg(long, env = "IDSERVER_CLUSTER_SIZE")]
    cluster_size: Option<usize>,
    /// Where a SIGHUP reads the log filter again (not a flag).
    #[arg(skip)]
    log_source: Option<FilterSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Whitepaper,
    Strict,
}

/// The command line, with `--config`'s settings where no flag or variable set them.
fn parse_args() -> Result<Args, ExitCode> {
    use clap::{CommandFactory, FromArgMatches};
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = Args::command();
    let lenient = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&raw)
        .ok();
    let config = lenient
        .as_ref()
        .and_then(|m| m.get_one::<PathBuf>("config").cloned());
    let merged = match (config, &lenient) {
        (Some(path), Some(lenient)) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| {
                eprintln!("idserver: failed to read --config {shown}: {e}");
                ExitCode::from(EXIT_START_FAILED)
            })?;
            Some(
                idserver::config_file::merge(&command, lenient, raw.clone(), &shown, &text)
                    .map_err(|e| {
                        eprintln!("idserver: {e}");
                        ExitCode::from(2)
                    })?,
            )
        }
        _ => None,
    };
    let args = merged.as_ref().map_or(raw, |m| m.args.clone());
    let matches = match command.clone().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => match merged.as_ref().and_then(|m| m.locate(&e.to_string())) {
            Some(located) => {
                eprintln!("idserver: {}", located.trim_end());
                return Err(ExitCode::from(2));
            }
            None => e.exit(),
        },
    };
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let from_file = merged.map(|m| m.from_file).unwrap_or_default();
    let fixed = ["log-filter", "verbose"].iter().any(|long| {
        let id = long.replace('-', "_");
        !from_file.iter().any(|f| f == long)
            && matches!(
                matches.value_source(&id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            )
    });
    args.log_source = Some(match (&args.config, fixed) {
        (_, true) => FilterSource::Fixed,
        (Some(path), false) => FilterSource::File(path.clone()),
        (None, false) => FilterSource::Default,
    });
    if args.print_config {
        print!(
            "{}",
            idserver::config_file::describe(&command, &matches, &from_file)
        );
        return Err(ExitCode::SUCCESS);
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    fail_stop_on_panic();
    raise_open_files_limit();
    if let Some(file) = &args.restore {
        return restore(file, &args);
    }
    let logs = match init_logs(&args) {
        Ok(logs) => logs,
        Err(message) => {
            eprintln!("idserver: {message}");
            return ExitCode::from(2);
        }
    };
    let peers = match resolve_peers(&args.peers) {
        Ok(peers) => peers,
        Err(message) => {
            eprintln!("idserver: {message}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    // Strict mode's N: --cluster-size, else the other members listed in --peers and this node
    // (its own entry found by port and local address: it listens on 0.0.0.0 by default).
    let strict_cluster_size = match args.mode {
        Mode::Whitepaper => None,
        Mode::Strict => Some(args.cluster_size.unwrap_or_else(|| {
            let flags = AddressFlags {
                listen: SocketAddr::new(args.listen, args.numport),
                advertise: args.advertise,
                mcast_if: args.mcast_if,
                peers: &peers,
            };
            address::cluster_size(flags, &HostAddresses::probe(&peers))
        })),
    };
    let cluster_net = ClusterConfig {
        peers,
        mcast: args.mcast,
        mcast_if: args.mcast_if,
        advertise: args.advertise,
        core: CoreConfig {
            heartbeat_ms: args.heartbeat_ms,
            suspect_misses: args.suspect_misses,
            dead_misses: args.dead_misses,
            stagger_ms: args.stagger_ms,
            join_window_ms: args.join_window_ms,
            election_window_ms: args.election_window_ms,
            strict_cluster_size,
            ..CoreConfig::default()
        },
    };
    let security = match security(&args) {
        Ok(security) => security,
        Err(err) => {
            eprintln!("idserver: {err}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    let config = ServerConfig {
        security,
        listen: SocketAddr::new(args.listen, args.numport),
        cluster: args.cluster,
        data_dir: args.data_dir,
        redis_url: args.redis,
        redis_bin: args.redis_server,
        appendfsync: args.appendfsync,
        cluster_net,
        replication: Replication {
            min_acks: args.min_acks,
            strict_cluster_size,
        },
        metrics_listen: args.metrics_listen,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime.build().expect("failed to start the async runtime");
    match runtime.block_on(run(config, logs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("idserver: {err}");
            ExitCode::from(EXIT_START_FAILED)
        }
    }
}

/// `--restore FILE`: restores, reports, exits.
fn restore(file: &std::path::Path, args: &Args) -> ExitCode {
    let target = idserver::backup::RestoreTarget {
        cluster: args.cluster.clone(),
        data_dir: args.data_dir.clone(),
        redis_url: args.redis.clone(),
        redis_bin: args.redis_server.clone(),
        appendfsync: args.appendfsync.clone(),
    };
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("failed to start the async runtime");
    match runtime.block_on(idserver::backup::restore(file, &target)) {
        Ok((info, node_id)) => {
            println!(
                "restored {} accounts at clock {} (epoch {}, from node {}) into {}; this node's \
                 id is {node_id}; took {:.1} s",
                info.accounts,
                info.clock,
                info.epoch,
                info.node_id,
                match &args.redis {
                    Some(url) => idserver::store::redact_url(url),
                    None => args.data_dir.display().to_string(),
                },
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("idserver: --restore {}: {err}", file.display());
            ExitCode::from(EXIT_START_FAILED)
        }
    }
}

/// Installs the log the flags ask for (`RUST_LOG` stands in for a missing --log-filter).
fn init_logs(args: &Args) -> Result<Logs, String> {
    let format = match args.log_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|_| args.log_filter.is_none());
    let (filter, source) = match from_env {
        Some(filter) => (filter, FilterSource::Fixed),
        None => (
            idserver::logs::filter_for(args.verbose, args.log_filter.as_deref()),
            args.log_source.clone().unwrap_or(FilterSource::Default),
        ),
    };
    idserver::logs::init(format, &filter, source)
}

/// The credentials the flags name, loaded (or plaintext, if asked for).
fn security(args: &Args) -> idserver::Result<Security> {
    if args.insecure_plaintext {
        return Ok(Security::InsecurePlaintext);
    }
    let (Some(cert), Some(key), Some(ca), Some(cluster_key)) = (
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.tls_ca.clone(),
        args.cluster_key_file.clone(),
    ) else {
        unreachable!("clap requires every credential flag without --insecure-plaintext");
    };
    let files = CredentialFiles {
        tls: TlsFiles { cert, key, ca },
        cluster_key,
    };
    Ok(Security::Authenticated(Arc::new(Credentials::load(
        files,
        &args.cluster,
    )?)))
}

async fn run(config: ServerConfig, logs: Logs) -> idserver::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let security = config.security.clone();
    if matches!(security, Security::InsecurePlaintext) {
        tracing::warn!(
            "--insecure-plaintext: no TLS, no datagram authentication; anyone who reaches this \
             node's port can act as a cluster member"
        );
    }
    let server = RunningServer::start(config).await?;
    println!("listening on {}", server.local_addr());
    if let Some(metrics) = server.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    systemd::ready(server.local_addr());
    let watchdog = systemd::watchdog();
    let name = loop {
        tokio::select! {
            _ = interrupt.recv() => break "SIGINT",
            _ = terminate.recv() => break "SIGTERM",
            _ = hangup.recv() => {
                systemd::reloading();
                logs.reload();
                reload(&security);
                systemd::ready(server.local_addr());
            }
        }
    };
    tracing::info!(signal = name, "shutting down");
    systemd::stopping();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: the credential files are read again; on any error the ones in use stay.
fn reload(security: &Security) {
    match security {
        Security::InsecurePlaintext => {
            tracing::warn!("SIGHUP: no credentials to reload (--insecure-plaintext)")
        }
        Security::Authenticated(credentials) => match credentials.reload() {
            Ok(()) => tracing::info!("SIGHUP: credentials reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "SIGHUP: failed to reload credentials; the ones in use stay")
            }
        },
    }
}

fn resolve_peers(peers: &[String]) -> Result<Vec<SocketAddr>, String> {
    peers
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|peer| {
            peer.trim()
                .to_socket_addrs()
                .map_err(|e| format!("--peers: cannot resolve {peer:?}: {e}"))?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| format!("--peers: {peer:?} has no IPv4 address"))
        })
        .collect()
}

fn signal_error(e: std::io::Error) -> idserver::Error {
    idserver::Error::io("failed to install signal handlers", e)
}

/// Every connection is a file descriptor: the soft limit (often 1,024) is raised to the hard
/// one, so that many idle clients (see `limits::CLIENT_CONNECTIONS_MAX`) exhaust budgets that
/// refuse them cleanly before they exhaust descriptors.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// A broken invariant (the code asserts the cheap ones: clocks consecutive on apply, epochs
/// never going down) stops the whole process, not one task of it:
/// a node that lost its writer or its cluster task would go on answering half-alive. Stopped,
/// it is restarted on its store and rejoins as any crashed node does.
fn fail_stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(%info, "an invariant broke: stopping the node");
        std::process::abort();
    }));
}
