//! The `idserver` and `idclient` binaries as users run them: signals, restarts, a killed
//! server's Redis, exit codes and `--json`.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::http::{get, http, sample};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

use idserver::security::mint::{CredentialSet, NodeSpec};
const IDCLIENT: &str = env!("CARGO_BIN_EXE_idclient");

/// Credentials in `dir` for the one node `node` at 127.0.0.1 (a CA and cluster key already
/// there are kept).
fn mint(dir: &Path) -> CredentialSet {
    let node = NodeSpec::at("node", "127.0.0.1".parse().unwrap());
    CredentialSet::write(dir, "bin-test", &[node], Duration::from_secs(3600)).unwrap()
}

/// An `idserver` process, killed on drop if the test did not stop it.
struct ServerProcess {
    child: Child,
    port: u16,
    creds: CredentialSet,
    /// The rest of its standard output.
    stdout: BufReader<std::process::ChildStdout>,
    _creds_dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> ServerProcess {
        Self::start_with(data_dir, &[])
    }

    fn start_with(data_dir: &Path, args: &[&str]) -> ServerProcess {
        Self::start_env(data_dir, args, &[], Stdio::inherit())
    }

    /// With `env` set and its standard error to `stderr`.
    fn start_env(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
        stderr: Stdio,
    ) -> ServerProcess {
        let creds_dir = tempfile::tempdir().unwrap();
        let creds = mint(creds_dir.path());
        let mut child = Command::new(IDSERVER)
            .args([
                "--numport",
                "0",
                "--listen",
                "127.0.0.1",
                "--cluster",
                "bin-test",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(creds.node_args("node"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("idserver starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("idserver printed {line:?}"));
        ServerProcess {
            child,
            port,
            creds,
            stdout,
            _creds_dir: creds_dir,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn client(&self, args: &[&str]) -> (i32, Value) {
        self.client_with_ca(&self.creds.ca(), args)
    }

    /// `idclient` verifying the server against the CA in `ca`.
    fn client_with_ca(&self, ca: &Path, args: &[&str]) -> (i32, Value) {
        let out = Command::new(IDCLIENT)
            .args([
                "--server",
                "127.0.0.1",
                "--numport",
                &self.port.to_string(),
                "--cluster",
                "bin-test",
                "--json",
                "--tls-ca",
            ])
            .arg(ca)
            .args(args)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("idclient printed no JSON ({e}): {out:?}"));
        (out.status.code().unwrap(), json)
    }

    fn stop(self, signal: Signal) -> std::process::ExitStatus {
        kill(self.pid(), signal).unwrap();
        self.stop_wait()
    }

    /// Waits for the process (already signalled) to end.
    fn stop_wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_pid(data_dir: &Path) -> i32 {
    std::fs::read_to_string(data_dir.join("redis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // A zombie has an empty cmdline; it is dead for our purposes.
        let alive = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty());
        if !alive {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn each_signal_saves_and_a_restart_serves_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (status, created) = server.client(&["--create", "jane", "Jane Doe", "--password", "pw"]);
    assert_eq!(status, 0, "{created}");
    let uuid = created["uuid"].as_str().unwrap().to_string();
    let redis = redis_pid(dir.path());
    assert!(server.stop(Signal::SIGTERM).success());
    assert!(wait_gone(redis), "own redis stops with the server");

    {
        let signal = Signal::SIGINT;
        let server = ServerProcess::start(dir.path());
        let (status, found) = server.client(&["--lookup", "jane"]);
        assert_eq!(status, 0, "{found}");
        assert_eq!(found["account"]["uuid"], uuid.as_str());
        assert_eq!(found["account"]["real_name"], "Jane Doe");
        assert!(found["account"].get("password_hash").is_none());
        assert!(server.stop(signal).success(), "clean exit on {signal}");
    }
}

#[test]
fn one_worker_thread_serves_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(dir.path(), &["--worker-threads", "1"]);
    let (status, created) = server.client(&["--create", "solo", "Solo"]);
    assert_eq!(status, 0, "{created}");
    let (status, found) = server.client(&["--lookup", "solo"]);
    assert_eq!((status, &found["account"]["uuid"]), (0, &created["uuid"]));
    assert!(server.stop(Signal::SIGTERM).success());

    let out = Command::new(IDSERVER)
        .args(["--worker-threads", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--worker-threads"));
}

#[test]
fn a_killed_servers_redis_dies_with_it_and_a_stale_one_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    // The write must be in the file before the kill: with `everysec`, a Redis whose earlier
    // fsync is slow (other tests write to the same disk) holds it back for up to 2 s.
    let server = ServerProcess::start_with(dir.path(), &["--appendfsync", "always"]);
    let (status, created) = server.client(&["--create", "kim", "Kim"]);
    assert_eq!(status, 0, "{created}");
    let redis = redis_pid(dir.path());
    server.stop(Signal::SIGKILL);
    assert!(
        wait_gone(redis),
        "PDEATHSIG stops redis when the server is SIGKILLed"
    );

    // A stale redis-server in our data dir, as a crash could leave behind (the killed one's
    // pid file is still there: SIGKILL leaves no time to remove it).
    let data = dir.path().canonicalize().unwrap();
    std::fs::remove_file(data.join("redis.pid")).unwrap();
    let mut stale = Command::new("redis-server")
        .args(["--port", "0", "--daemonize", "no", "--appendonly", "yes"])
        .arg("--dir")
        .arg(&data)
        .arg("--unixsocket")
        .arg(data.join("redis.sock"))
        .arg("--pidfile")
        .arg(data.join("redis.pid"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.join("redis.pid").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let server = ServerProcess::start(dir.path());
    assert!(stale.wait().is_ok(), "the stale redis was killed");
    let (status, found) = server.client(&["--lookup", "kim"]);
    assert_eq!(
        (status, found["account"]["login"].as_str()),
        (0, Some("kim")),
        "{found}"
    );
}

#[test]
fn every_error_has_its_exit_code_and_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    assert_eq!(server.client(&["--create", "lee", "Lee", "-p", "pw"]).0, 0);
    let cases: &[(&[&str], &str, i32)] = &[
        (&["--create", "lee"], "login_exists", 3),
        (&["--lookup", "nobody"], "not_found", 4),
        (&["--delete", "lee", "-p", "nope"], "wrong_password", 5),
        (&["--delete", "lee"], "password_required", 6),
        (&["--reverse-lookup", "not-a-uuid"], "invalid_input", 10),
        (&["--lookup", "bad name"], "invalid_input", 10),
    ];
    for (args, code, exit) in cases {
        let (status, json) = server.client(args);
        assert_eq!(json["schema"], 1);
        assert_eq!(json["ok"], false);
        assert_eq!(
            (json["error"]["code"].as_str(), status),
            (Some(*code), *exit),
            "{args:?}: {json}"
        );
        assert_eq!(json["error"]["exit_code"], *exit);
    }
    assert_eq!(server.client(&["--create", "mo"]).0, 0);
    let (status, json) = server.client(&["--modify", "mo", "lee"]);
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (7, Some("new_name_taken"))
    );

    let (status, listing) = server.client(&["--get", "users"]);
    assert_eq!(
        (status, listing["users"].clone()),
        (0, serde_json::json!(["lee", "mo"]))
    );
    let port = server.port;
    drop(server);
    let out = Command::new(IDCLIENT)
        .args([
            "-s",
            "127.0.0.1",
            "-n",
            &port.to_string(),
            "--insecure-plaintext",
            "--lookup",
            "lee",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "unreachable server");
    assert!(String::from_utf8_lossy(&out.stderr).contains("server unreachable"));
}

#[test]
fn create_defaults_the_real_name_to_the_os_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    server.client(&["--create", "nia"]);
    let (_, found) = server.client(&["--lookup", "nia"]);
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap();
    let real_name = found["account"]["real_name"].as_str().unwrap().to_string();
    let gecos = user
        .gecos
        .to_string_lossy()
        .split(',')
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        real_name == user.name || real_name == gecos,
        "{real_name:?} for {}",
        user.name
    );
    assert!(!real_name.is_empty());
}

/// A stopped (SIGSTOP) server accepts connections (the kernel does) but never answers: the
/// client must give it up within the same retry deadline as a dead server, not after a reply
/// timeout meant for slow work (it took 10 s; a dead server 3 s).
#[test]
fn a_hung_server_is_given_up_as_soon_as_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    assert_eq!(server.client(&["--create", "hang", "Hang"]).0, 0);
    kill(server.pid(), Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    let (status, json) = server.client(&["--lookup", "hang"]);
    let took = started.elapsed();
    kill(server.pid(), Signal::SIGCONT).unwrap();
    assert_eq!(json["error"]["code"], "unreachable", "{json}");
    assert_eq!(status, 8);
    // CLIENT_RETRY_FOR_MS (3 s) plus one last short try; far below the old 10 s.
    assert!(
        took < std::time::Duration::from_millis(4_500),
        "gave up after {took:?}"
    );
    assert_eq!(
        server.client(&["--lookup", "hang"]).0,
        0,
        "served once resumed"
    );
}

#[test]
fn credentials_are_required_unless_plaintext_is_asked_for_by_name() {
    let out = Command::new(IDSERVER)
        .args(["--numport", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("--cluster-key-file"),
        "{stderr}"
    );
    let out = Command::new(IDCLIENT).args(["--status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-ca") && stderr.contains("--insecure-plaintext"),
        "{stderr}"
    );
    // A key file with a typo names its line.
    let dir = tempfile::tempdir().unwrap();
    let creds = mint(dir.path());
    std::fs::write(creds.cluster_key(), "# key\nnot-hex\n").unwrap();
    let out = Command::new(IDSERVER)
        .args(["--numport", "0", "--listen", "127.0.0.1", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(creds.node_args("node"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster.key:2: a key is hex digits"),
        "{stderr}"
    );
}

#[test]
fn a_client_without_the_cluster_ca_is_refused_and_plaintext_is_told_to_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    assert_eq!(server.client(&["--create", "tls", "T"]).0, 0);
    // Another CA: the handshake fails, the client says why.
    let other = tempfile::tempdir().unwrap();
    let other_ca = CredentialSet::write(
        other.path(),
        "bin-test",
        &[],
        std::time::Duration::from_secs(60),
    )
    .unwrap()
    .ca();
    let (status, json) = server.client_with_ca(&other_ca, &["--lookup", "tls"]);
    assert_eq!(status, 8, "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("TLS handshake") && message.contains("UnknownIssuer"),
        "{message}"
    );
    // Plain TCP to a TLS server: told so, not a frame size puzzle.
    let out = Command::new(IDCLIENT)
        .args([
            "-s",
            "127.0.0.1",
            "-n",
            &server.port.to_string(),
            "--cluster",
            "bin-test",
        ])
        .args(["--insecure-plaintext", "--json", "--lookup", "tls"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("speaks TLS"), "{message}");
    let (_, status) = server.client(&["--status"]);
    assert!(status["status"]["authenticated"].as_bool().unwrap());
    assert!(
        status["status"]["rejected_connections"].as_u64().unwrap() >= 2,
        "{status}"
    );
}

#[test]
fn sighup_rolls_the_credentials_over_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    assert_eq!(server.client(&["--create", "roll", "R"]).0, 0);
    let old_ca = dir.path().join("old-ca.pem");
    std::fs::copy(server.creds.ca(), &old_ca).unwrap();
    // A new CA and certificate in the same files, then SIGHUP.
    std::fs::remove_file(server.creds.dir.join("ca-key.pem")).unwrap();
    mint(&server.creds.dir);
    // SIGHUP is handled once the server has said it listens; it reloads and serves on.
    kill(server.pid(), Signal::SIGHUP).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, json) = server.client(&["--lookup", "roll"]);
        if status == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new CA never accepted: {json}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, json) = server.client_with_ca(&old_ca, &["--lookup", "roll"]);
    assert_eq!(
        status, 8,
        "the old CA no longer verifies the server: {json}"
    );
    assert!(server.stop(Signal::SIGTERM).success());
}

#[test]
fn a_config_file_sets_what_flags_and_variables_do_not_and_its_errors_name_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let creds = mint(dir.path());
    let config = dir.path().join("idserver.toml");
    std::fs::write(
        &config,
        format!(
            "# one node\ncluster = \"bin-test\"\nnumport = 0\nlisten = \"127.0.0.1\"\n\
             data-dir = {:?}\ntls-cert = {:?}\ntls-key = {:?}\ntls-ca = {:?}\n\
             cluster-key-file = {:?}\npeers = [\"127.0.0.1:1\"]\nmode = \"strict\"\n",
            dir.path().join("data"),
            creds.node("node").tls.cert,
            creds.node("node").tls.key,
            creds.ca(),
            creds.cluster_key(),
        ),
    )
    .unwrap();
    // Where each value comes from: flag > environment > file > default.
    let out = Command::new(IDSERVER)
        .arg("--config")
        .arg(&config)
        .args(["--print-config", "--mode", "whitepaper"])
        .args(["--redis", "redis://idserver:hunter2@127.0.0.1:6379"])
        .env("IDSERVER_CLUSTER", "from-env")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    for line in [
        "mode = \"whitepaper\"  # flag",
        "cluster = \"from-env\"  # environment",
        "listen = \"127.0.0.1\"  # file",
        "peers = [\"127.0.0.1:1\"]  # file",
        "appendfsync = \"everysec\"  # default",
        "redis = \"redis://idserver:***@127.0.0.1:6379\"  # flag",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} not in\n{shown}");
    }
    assert!(!shown.contains("hunter2"), "a password shown:\n{shown}");
    // A node started from the file alone serves.
    let mut child = Command::new(IDSERVER)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line}");
    // Typos and wrong values: file:line:col, exit status 2.
    for (text, expected) in [
        ("numprt = 5\n", "bad.toml:1:1: unknown setting `numprt`"),
        (
            "\nverbose = \"yes\"\n",
            "bad.toml:2:11: `verbose` takes true or false, not string",
        ),
        (
            "numport = 99999\n",
            "bad.toml:1:11: numport: invalid value '99999'",
        ),
        (
            "peers = [1.5]\n",
            "bad.toml:1:9: `peers` takes a list of strings",
        ),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(IDSERVER)
            .arg("--config")
            .arg(&bad)
            .arg("--insecure-plaintext")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

#[test]
fn metrics_health_and_readiness_are_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_with(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let mut line = String::new();
    server.stdout.read_line(&mut line).unwrap();
    let metrics = line
        .trim()
        .strip_prefix("metrics on ")
        .unwrap_or_else(|| panic!("idserver printed {line:?}"))
        .to_string();
    let base = metrics.trim_end_matches("/metrics").to_string();
    let agent = http();
    for login in ["m1", "m2", "m3"] {
        assert_eq!(server.client(&["--create", login, "M"]).0, 0);
    }
    assert_eq!(
        server.client(&["--lookup", "nobody"]).1["error"]["code"],
        "not_found"
    );
    // A lone node is ready once its claim settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&agent, &format!("{base}/readyz"));
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert_eq!(status, 503);
        assert!(body.starts_with("not ready: "), "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        get(&agent, &format!("{base}/healthz")),
        (200, "ok\n".into())
    );
    assert_eq!(get(&agent, &format!("{base}/nothing")).0, 404);
    let posted = agent.post(&metrics).send("").unwrap();
    assert_eq!(posted.status().as_u16(), 405);

    let mut response = agent.get(&metrics).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&scrape, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"))
    };
    let created = [("op", "create"), ("outcome", "ok")];
    assert_eq!(value("idserver_requests_total", &created), 3.0);
    let missing = [("op", "lookup"), ("outcome", "not_found")];
    assert_eq!(value("idserver_requests_total", &missing), 1.0);
    // Every create timed, whatever its outcome (the client retries while the lone node
    // elects itself, and those are refused as unavailable).
    let creates: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "idserver_requests_total" && s.labels.get("op") == Some("create"))
        .map(|s| {
            sample(
                &scrape,
                &s.metric,
                &[
                    ("op", "create"),
                    ("outcome", s.labels.get("outcome").unwrap()),
                ],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(
        value("idserver_request_seconds_count", &[("op", "create")]),
        creates
    );
    assert_eq!(value("idserver_role", &[("role", "coordinator")]), 1.0);
    assert_eq!(value("idserver_role", &[("role", "follower")]), 0.0);
    assert_eq!(value("idserver_accounts", &[]), 3.0);
    assert!(value("idserver_applied_clock", &[]) >= 3.0);
    assert_eq!(value("idserver_rank", &[]), 1.0);
    assert_eq!(value("idserver_redis_up", &[]), 1.0);
    assert_eq!(value("idserver_ready", &[]), 1.0);
    assert_eq!(value("idserver_elections_won_total", &[]), 1.0);
    // A lone node waits for no replica: every write's ack wait was counted.
    assert_eq!(value("idserver_ack_wait_seconds_count", &[]), 3.0);
    assert!(server.stop(Signal::SIGTERM).success());
}

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_env(
        dir.path(),
        &["--log-format", "json", "--verbose"],
        &[],
        Stdio::piped(),
    );
    let password = "correct horse battery staple";
    assert_eq!(
        server
            .client(&["--create", "logged", "L", "--password", password])
            .0,
        0
    );
    let (status, refused) = server.client(&["--delete", "logged", "--password", "wrong one"]);
    assert_eq!(refused["error"]["code"], "wrong_password", "{refused}");
    assert_ne!(status, 0);
    let key = std::fs::read_to_string(server.creds.cluster_key()).unwrap();
    let tls_key = std::fs::read_to_string(&server.creds.node("node").tls.key).unwrap();
    let mut stderr = server.child.stderr.take().unwrap();
    kill(server.pid(), Signal::SIGTERM).unwrap();
    assert!(server.child.wait().unwrap().success());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["timestamp"].is_string() && object["level"].is_string(),
            "{line}"
        );
        assert!(object["fields"]["message"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"serving\"")), "{text}");
    assert!(lines.iter().any(|l| l.contains("\"stopped\"")), "{text}");
    for secret in [
        password,
        "wrong one",
        key.trim(),
        tls_key.lines().nth(1).unwrap(),
    ] {
        assert!(
            !text.contains(secret),
            "a secret in the log: {secret:?}\n{text}"
        );
    }
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = dir.path().join("idserver.toml");
    std::fs::write(&config, "log-filter = \"info\"\n").unwrap();
    let server = ServerProcess::start_env(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", socket_path.as_os_str()),
            ("WATCHDOG_USEC", std::ffi::OsStr::new("200000")),
        ],
        Stdio::inherit(),
    );
    let mut heard = Vec::new();
    let hear_until = |wanted: &str, heard: &mut Vec<String>| loop {
        let mut buf = [0u8; 4096];
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {wanted} in {heard:?}: {e}"));
        let message = String::from_utf8_lossy(&buf[..n]).to_string();
        heard.push(message.clone());
        if message.lines().any(|l| l == wanted) {
            return message;
        }
    };
    let ready = hear_until("READY=1", &mut heard);
    assert!(
        ready.contains(&format!("STATUS=serving on 127.0.0.1:{}", server.port)),
        "{ready}"
    );
    hear_until("WATCHDOG=1", &mut heard);
    std::fs::write(&config, "log-filter = \"debug\"\n").unwrap();
    kill(server.pid(), Signal::SIGHUP).unwrap();
    let reloading = hear_until("RELOADING=1", &mut heard);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    hear_until("READY=1", &mut heard);
    kill(server.pid(), Signal::SIGTERM).unwrap();
    hear_until("STOPPING=1", &mut heard);
    assert!(server.stop_wait().success());
}

#[test]
fn a_backup_restores_into_an_empty_node_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("source"));
    for n in 0..40 {
        assert_eq!(server.client(&["--create", &format!("b{n}"), "B"]).0, 0);
    }
    assert_eq!(
        server
            .client(&["--create", "guarded", "G", "--password", "s3cret"])
            .0,
        0
    );
    let (_, before) = server.client(&["--status"]);
    let file = dir.path().join("dir.backup");
    let file_arg = file.to_str().unwrap();
    // A client certificate is not enough: a backup holds every password hash.
    let (_, refused) = server.client(&["--backup", file_arg]);
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    assert!(!file.exists());
    let node = server.creds.node("node").tls.clone();
    let operator = [
        "--tls-cert",
        node.cert.to_str().unwrap(),
        "--tls-key",
        node.key.to_str().unwrap(),
    ];
    let (status, made) = server.client(&[&operator[..], &["--backup", file_arg]].concat());
    assert_eq!(status, 0, "{made}");
    assert_eq!(made["accounts"], 41, "{made}");
    assert_eq!(made["clock"], before["status"]["clock"], "{made}");
    assert!(file.exists() && !dir.path().join("dir.backup.partial").exists());

    let restore = |file: &Path, data: &Path, cluster: &str| {
        Command::new(IDSERVER)
            .args(["--cluster", cluster, "--restore"])
            .arg(file)
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap()
    };
    let restored_dir = dir.path().join("restored");
    let out = restore(&file, &restored_dir, "bin-test");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("restored 41 accounts at clock "), "{said}");
    // Refusals, each naming its reason; nothing is written.
    let damaged = dir.path().join("damaged.backup");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let cut = dir.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..middle]).unwrap();
    for (file, data, cluster, expected) in [
        (&file, &restored_dir, "bin-test", "holds data"),
        (
            &file,
            &dir.path().join("other"),
            "another",
            "a backup of cluster \"bin-test\"",
        ),
        (
            &damaged,
            &dir.path().join("d"),
            "bin-test",
            "SHA-256 does not match",
        ),
        (
            &cut,
            &dir.path().join("c"),
            "bin-test",
            "does not end with IDBACKUP",
        ),
    ] {
        let out = restore(file, data, cluster);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(expected), "{expected:?} not in {said}");
    }
    drop(server);
    // A node started on the restored directory serves the same accounts under a new id.
    let restored = ServerProcess::start(&restored_dir);
    let (status, found) = restored.client(&["--lookup", "b39"]);
    assert_eq!(status, 0, "{found}");
    let (_, wrong) = restored.client(&["--delete", "guarded", "--password", "nope"]);
    assert_eq!(wrong["error"]["code"], "wrong_password", "{wrong}");
    let (_, after) = restored.client(&["--status"]);
    assert_eq!(after["status"]["accounts"], 41);
    assert_ne!(after["status"]["node_id"], before["status"]["node_id"]);
}
