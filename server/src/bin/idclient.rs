//! `idclient`: one identity operation per run, printed for people or (`--json`) for scripts.
//! Each error has its own exit code (see the table in `docs/idclient.md`).

use clap::{ArgGroup, Parser, ValueEnum};
use idserver::account::{parse_uuid, AccountView};
use idserver::client::{Client, ClientConfig};
use idserver::config::{DEFAULT_CLUSTER, DEFAULT_NUMPORT};
use idserver::connection::Transport;
use idserver::discovery::Discovery;
use idserver::wire::StatusView;
use idserver::ErrorCode;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Version of the `--json` output's shape; bumped when a field changes meaning or goes away.
const JSON_SCHEMA: u32 = 1;

/// Client of the identity server: one operation per run.
#[derive(Debug, Parser)]
#[command(version, about, group(ArgGroup::new("op").required(true).args(
    ["create", "lookup", "reverse_lookup", "modify", "delete", "get", "status", "events",
     "step_down", "backup"])),
    group(ArgGroup::new("transport").required(true).args(["tls_ca", "insecure_plaintext"])))]
struct Args {
    /// The cluster CA's certificate (PEM): the server must present a certificate it signed
    /// that names the address connected to (or --tls-server-name).
    #[arg(long, value_name = "FILE", env = "IDCLIENT_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// An operator's certificate (PEM), signed by the cluster CA (a node's, or one `idkeys`
    /// made for the operator): --step-down and --backup need it.
    #[arg(
        long,
        value_name = "FILE",
        env = "IDCLIENT_TLS_CERT",
        requires_all = ["tls_ca", "tls_key"]
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "IDCLIENT_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry, instead of the address connected to.
    #[arg(
        long,
        value_name = "NAME",
        env = "IDCLIENT_TLS_SERVER_NAME",
        requires = "tls_ca"
    )]
    tls_server_name: Option<String>,
    /// Plain TCP, no TLS: anyone on the path reads the password digest (and can replay it)
    /// and can answer in the server's place. For servers run with --insecure-plaintext.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Server host name or address (default: discover with --peers or --mcast, else localhost).
    #[arg(short, long, env = "IDCLIENT_SERVER")]
    server: Option<String>,
    /// Server port.
    #[arg(short, long, default_value_t = DEFAULT_NUMPORT, env = "IDCLIENT_NUMPORT")]
    numport: u16,
    /// Servers to discover the cluster from (HOST:PORT, comma-separated): GETMASTER, then
    /// GETRANK; the fastest to answer is used, the others are failovers.
    #[arg(
        long,
        value_delimiter = ',',
        env = "IDCLIENT_PEERS",
        conflicts_with = "server"
    )]
    peers: Vec<String>,
    /// Multicast group to discover the cluster on (needs --mcast-if).
    #[arg(
        long,
        value_name = "GROUP:PORT",
        env = "IDCLIENT_MCAST",
        requires = "mcast_if",
        conflicts_with = "server"
    )]
    mcast: Option<SocketAddrV4>,
    /// Address of the interface to multicast on.
    #[arg(
        long,
        value_name = "ADDR",
        env = "IDCLIENT_MCAST_IF",
        requires = "mcast"
    )]
    mcast_if: Option<Ipv4Addr>,
    /// Cluster the server must belong to.
    #[arg(long, default_value = DEFAULT_CLUSTER, env = "IDCLIENT_CLUSTER")]
    cluster: String,
    /// Create an account; the real name defaults to the OS user running the client. Prints the UUID.
    #[arg(short, long, num_args = 1..=2, value_names = ["LOGIN", "REAL_NAME"])]
    create: Option<Vec<String>>,
    /// Show an account (everything but its password).
    #[arg(short, long, value_name = "LOGIN")]
    lookup: Option<String>,
    /// Show the account with this UUID.
    #[arg(short, long, value_name = "UUID")]
    reverse_lookup: Option<String>,
    /// Rename an account; its UUID stays.
    #[arg(short, long, num_args = 2, value_names = ["OLD", "NEW"])]
    modify: Option<Vec<String>>,
    /// Delete an account (with --password if it has one).
    #[arg(short, long, value_name = "LOGIN")]
    delete: Option<String>,
    /// List login names, UUIDs, or all accounts with their details.
    #[arg(short, long, value_enum, value_name = "WHAT")]
    get: Option<GetWhat>,
    /// Show the server's status.
    #[arg(long)]
    status: bool,
    /// List the events the server applied (its bounded log), in clock order: create, rename,
    /// delete, and in strict mode open (each coordinator's first event of its epoch).
    #[arg(long)]
    events: bool,
    /// Make the coordinator hand over to its most caught-up follower without an election
    /// timeout (before maintenance of its host). Asks --server (or the discovered servers)
    /// who coordinates, then asks it; needs --tls-cert and --tls-key (a certificate of the
    /// cluster CA), or --insecure-plaintext.
    #[arg(long)]
    step_down: bool,
    /// Write a consistent backup of the directory of --server (any node; writes to it wait
    /// for the instant its Redis forks) to FILE, for `idserver --restore`. Needs --tls-cert
    /// and --tls-key, or --insecure-plaintext. Written to FILE.partial, renamed when checked.
    #[arg(long, value_name = "FILE")]
    backup: Option<std::path::PathBuf>,
    /// With --events: only events with a higher clock.
    #[arg(long, value_name = "CLOCK", default_value_t = 0, requires = "events")]
    since: u64,
    /// With --events: at most this many.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "events")]
    limit: u32,
    /// Password for --create, --modify and --delete (only its SHA-512 digest is sent).
    #[arg(
        short,
        long,
        value_name = "PW",
        env = "IDCLIENT_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Print one JSON object (with a "schema" version) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GetWhat {
    Users,
    Uuids,
    All,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("failed to start the async runtime");
    let json = args.json;
    match runtime.block_on(run(args)) {
        Ok((value, text)) => {
            if json {
                let mut value = value;
                value["schema"] = json!(JSON_SCHEMA);
                value["ok"] = json!(true);
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let code = err.code();
            if json {
                let value = json!({
                    "schema": JSON_SCHEMA,
                    "ok": false,
                    "error": { "code": code.as_str(), "message": err.to_string(), "exit_code": code.exit_code() },
                });
                println!("{value}");
            } else {
                eprintln!("idclient: {}: {err}", code.summary());
            }
            ExitCode::from(code.exit_code() as u8)
        }
    }
}

/// Runs the operation; returns its JSON value and its text form.
async fn run(args: Args) -> idserver::Result<(Value, String)> {
    let mut client = connect(&args).await?;
    let password = args.password.as_deref();
    if let Some(create) = args.create {
        let real_name = match create.get(1) {
            Some(name) => name.clone(),
            None => os_user_name(),
        };
        let uuid = client.create(&create[0], &real_name, password).await?;
        return Ok((json!({"op": "create", "uuid": uuid}), uuid.to_string()));
    }
    if let Some(login) = args.lookup {
        return Ok(account_output("lookup", client.lookup(&login).await?));
    }
    if let Some(raw) = args.reverse_lookup {
        let uuid = parse_uuid(&raw)?;
        return Ok(account_output(
            "reverse_lookup",
            client.reverse_lookup(uuid).await?,
        ));
    }
    if let Some(names) = args.modify {
        let uuid = client.modify(&names[0], &names[1], password).await?;
        return Ok((json!({"op": "modify", "uuid": uuid}), uuid.to_string()));
    }
    if let Some(login) = args.delete {
        let uuid = client.delete(&login, password).await?;
        return Ok((json!({"op": "delete", "uuid": uuid}), uuid.to_string()));
    }
    if let Some(what) = args.get {
        return Ok(match what {
            GetWhat::Users => {
                let users = client.users().await?;
                (json!({"op": "get", "users": users}), users.join("\n"))
            }
            GetWhat::Uuids => {
                let uuids = client.uuids().await?;
                let text = uuids
                    .iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join("\n");
                (json!({"op": "get", "uuids": uuids}), text)
            }
            GetWhat::All => {
                let accounts = client.all().await?;
                let text = accounts
                    .iter()
                    .map(account_line)
                    .collect::<Vec<_>>()
                    .join("\n");
                (json!({"op": "get", "accounts": accounts}), text)
            }
        });
    }
    if let Some(out) = &args.backup {
        let server = client.servers().first().cloned().ok_or_else(|| {
            idserver::Error::refused(ErrorCode::Unreachable, "no server to back up")
        })?;
        let started = std::time::Instant::now();
        let info = idserver::backup::fetch(&server, &args.cluster, &transport(&args)?, out).await?;
        let seconds = started.elapsed().as_secs_f64();
        return Ok((
            json!({"op": "backup", "file": out, "server": server, "cluster": info.cluster,
                   "node_id": info.node_id, "clock": info.clock, "epoch": info.epoch,
                   "accounts": info.accounts, "bytes": info.bytes,
                   "sha256": hex::encode(&info.sha256), "seconds": seconds}),
            format!(
                "backed up {} accounts (clock {}, {} bytes) from {server} to {} in {seconds:.1} s",
                info.accounts,
                info.clock,
                info.bytes,
                out.display()
            ),
        ));
    }
    if args.step_down {
        let coordinator = client.status().await?.coordinator_addr.ok_or_else(|| {
            idserver::Error::refused(ErrorCode::Unavailable, "no coordinator is known")
        })?;
        let mut at_coordinator = Client::new(ClientConfig {
            servers: vec![coordinator.clone()],
            cluster: args.cluster.clone(),
            transport: transport(&args)?,
            ..ClientConfig::default()
        });
        let (successor, clock) = at_coordinator.step_down().await?;
        return Ok((
            json!({"op": "step_down", "from": coordinator, "successor": successor, "clock": clock}),
            format!("{coordinator} handed over to {successor} at clock {clock}"),
        ));
    }
    if args.events {
        let events = client.events(args.since, args.limit).await?;
        let text = events
            .iter()
            .map(|e| {
                let change = &e.event.change;
                let login = match change {
                    idserver::event::Change::Create { login, .. }
                    | idserver::event::Change::Delete { login, .. } => login.clone(),
                    idserver::event::Change::Rename { old, new, .. } => format!("{old} -> {new}"),
                    idserver::event::Change::Open => "-".into(),
                };
                format!(
                    "{}\tepoch {}\trank {}\t{}\t{}\t{}\tapplied {}",
                    e.event.clock,
                    e.event.epoch,
                    e.event.origin_rank,
                    change.kind(),
                    login,
                    change.uuid().map_or("-".into(), |u| u.to_string()),
                    time_text(e.applied_ms)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let events: Vec<Value> = events.iter().map(event_json).collect();
        return Ok((json!({"op": "events", "events": events}), text));
    }
    let status = client.status().await?;
    Ok((
        json!({"op": "status", "status": status}),
        status_text(&status),
    ))
}

/// A client for `--server`, or for the servers discovered from `--peers` / `--mcast`.
async fn connect(args: &Args) -> idserver::Result<Client> {
    let peers = args
        .peers
        .iter()
        .map(|peer| {
            peer.to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
                .ok_or_else(|| {
                    idserver::Error::refused(
                        ErrorCode::InvalidInput,
                        format!("--peers: cannot resolve {peer:?}"),
                    )
                })
        })
        .collect::<idserver::Result<Vec<_>>>()?;
    let mcast = args.mcast.zip(args.mcast_if);
    let transport = transport(args)?;
    if args.server.is_none() && (!peers.is_empty() || mcast.is_some()) {
        return Client::discover(&Discovery { peers, mcast }, &args.cluster, transport).await;
    }
    let host = args.server.as_deref().unwrap_or("localhost");
    Ok(Client::new(ClientConfig {
        servers: vec![format!("{host}:{}", args.numport)],
        cluster: args.cluster.clone(),
        transport,
        ..ClientConfig::default()
    }))
}

/// TLS with `--tls-ca`, or plain TCP with `--insecure-plaintext` (clap requires one).
fn transport(args: &Args) -> idserver::Result<Transport> {
    let Some(ca) = &args.tls_ca else {
        return Ok(Transport::InsecurePlaintext);
    };
    let server_name = args
        .tls_server_name
        .as_deref()
        .map(idserver::security::tls::server_name_of)
        .transpose()
        .map_err(|e| idserver::Error::refused(ErrorCode::InvalidInput, e.to_string()))?;
    let invalid =
        |e: idserver::Error| idserver::Error::refused(ErrorCode::InvalidInput, e.to_string());
    let connector = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = idserver::security::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            };
            idserver::security::NodeTls::load(&files)
                .map_err(invalid)?
                .connector
        }
        _ => idserver::security::tls::client_connector(ca).map_err(invalid)?,
    };
    Ok(Transport::Tls {
        connector,
        server_name,
    })
}

/// An event for `--json`, without its password hash.
fn event_json(logged: &idserver::event::LoggedEvent) -> Value {
    let mut value = serde_json::to_value(logged).unwrap_or_default();
    if let Some(change) = value.get_mut("change").and_then(Value::as_object_mut) {
        change.remove("password_hash");
    }
    value
}

fn account_output(op: &str, account: AccountView) -> (Value, String) {
    let text = format!(
        "login:       {}\nuuid:        {}\nreal name:   {}\ncreated by:  {}\ncreated:     {}\nchanged:     {}\npassword:    {}",
        account.login,
        account.uuid,
        account.real_name,
        account.client_addr,
        time_text(account.created_ms),
        time_text(account.changed_ms),
        if account.has_password { "yes" } else { "no" },
    );
    (json!({"op": op, "account": account}), text)
}

fn account_line(account: &AccountView) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        account.login,
        account.uuid,
        account.real_name,
        account.client_addr,
        time_text(account.created_ms)
    )
}

fn status_text(status: &StatusView) -> String {
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let mut text = format!(
        "node:        {}\ncluster:     {}\naddress:     {}\nrank:        {}\nrole:        {}\nepoch:       {}\ncoordinator: {} (rank {})\nclock:       {}\naccounts:    {}\nelections:   {} started, {} failed rounds in a row (last: {}), rtt {} ms\nsecurity:    {}; rejected {} datagrams, {} connections, {} requests; ignored {} datagrams\nmembers:",
        status.node_id,
        status.cluster,
        status.addr,
        or_none(status.rank.map(|r| r.to_string())),
        status.role.as_str(),
        status.epoch,
        or_none(status.coordinator_addr.clone()),
        or_none(status.coordinator_rank.map(|r| r.to_string())),
        status.clock,
        status.accounts,
        status.elections_started,
        status.failed_rounds,
        or_none(status.last_failure.clone()),
        status.rtt_ms,
        if status.authenticated {
            "TLS and sealed datagrams"
        } else {
            "insecure plaintext"
        },
        status.rejected_datagrams,
        status.rejected_connections,
        status.rejected_requests,
        status.ignored_datagrams,
    );
    for m in &status.members {
        text += &format!(
            "\n  rank {:<3} {:<22} seen {} ms ago",
            m.rank, m.addr, m.last_seen_ms_ago
        );
    }
    text
}

fn time_text(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The OS user's full name (from the password database), or their login name.
fn os_user_name() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let full_name = user.as_ref().and_then(|u| {
        let gecos = u.gecos.to_string_lossy();
        let name = gecos.split(',').next().unwrap_or("").trim().to_string();
        (!name.is_empty()).then_some(name)
    });
    full_name
        .or_else(|| user.map(|u| u.name))
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}
