//! `idserver`: one node of the identity service. Parses flags, starts the server, and shuts it
//! down cleanly on SIGINT, SIGTERM or SIGHUP.

use clap::Parser;
use idserver::config::{ServerConfig, DEFAULT_CLUSTER, DEFAULT_NUMPORT};
use idserver::server::RunningServer;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

/// Exit status when the server could not start (bad flags are 2, from clap).
const EXIT_START_FAILED: u8 = 1;

/// Identity server: maps login names to UUIDs, keeping its data in Redis.
///
/// Without --redis it runs its own redis-server (on a private unix socket, data and
/// append-only file in --data-dir), which stops with it, even if it is killed.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// TCP port to serve clients on (0 picks a free one; the chosen address is printed).
    #[arg(short = 'n', long, default_value_t = DEFAULT_NUMPORT, env = "IDSERVER_NUMPORT")]
    numport: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "IDSERVER_LISTEN")]
    listen: IpAddr,
    /// Log every request and storage step (else: start, stop and errors only).
    #[arg(short, long)]
    verbose: bool,
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
    /// fsync policy of the own Redis's append-only file.
    #[arg(long, default_value = "everysec", value_parser = ["always", "everysec", "no"])]
    appendfsync: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = if args.verbose {
        "idserver=debug,info"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = ServerConfig {
        listen: SocketAddr::new(args.listen, args.numport),
        cluster: args.cluster,
        data_dir: args.data_dir,
        redis_url: args.redis,
        redis_bin: args.redis_server,
        appendfsync: args.appendfsync,
    };
    let runtime = tokio::runtime::Runtime::new().expect("failed to start the async runtime");
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("idserver: {err}");
            ExitCode::from(EXIT_START_FAILED)
        }
    }
}

async fn run(config: ServerConfig) -> idserver::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let server = RunningServer::start(config).await?;
    println!("listening on {}", server.local_addr());
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        _ = hangup.recv() => "SIGHUP",
    };
    tracing::info!(signal = name, "shutting down");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

fn signal_error(e: std::io::Error) -> idserver::Error {
    idserver::Error::io("failed to install signal handlers", e)
}
