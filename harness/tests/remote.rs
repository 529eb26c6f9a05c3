//! The lab over SSH for real: namespaces running OpenSSH's `sshd` (what `idlab up --ssh`
//! makes) serve as the remote hosts; `idlab run --hosts` reaches them through the system's
//! `ssh`, installs `idserver` and itself, and drives each node through `idlab agent`. The core
//! scenarios pass that way, and every host is left clean: after the run, after the SSH
//! sessions are killed mid-run, and after idlab itself is killed mid-run. Needs root and
//! OpenSSH (`scripts/install-deps` installs it).

use harness::remote::up::SshLab;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IDLAB: &str = env!("CARGO_BIN_EXE_idlab");

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"))
}

/// `idlab run --hosts FILE` with the idserver beside idlab, into `out`.
fn run_command(hosts: &SshLab, out: &Path, scenarios: &[&str]) -> Command {
    let mut cmd = Command::new(IDLAB);
    cmd.arg("run")
        .arg("--hosts")
        .arg(hosts.hosts_file())
        .arg("--idserver")
        .arg(Path::new(IDLAB).with_file_name("idserver"))
        .arg("--out")
        .arg(out)
        .args(scenarios.iter().map(|s| scenario(s)));
    cmd
}

/// What a host has that a run may have left: processes besides its sshd, iptables chains of
/// an agent, a queueing discipline, files in its data directory.
fn leftovers(hosts: &SshLab) -> Vec<String> {
    let mut found = Vec::new();
    let sshd = hosts.daemon_pids();
    for (i, host) in hosts.lab().hosts().iter().enumerate() {
        let pids = Command::new("ip")
            .args(["netns", "pids", host.ns()])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let pid: u32 = pid.parse().unwrap();
            // sshd's own session processes come and go with connections; anything else is a
            // leftover.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !sshd.contains(&pid) && comm.trim() != "sshd" {
                found.push(format!("{}: process {pid} ({})", host.name(), comm.trim()));
            }
        }
        let rules = Command::new("ip")
            .args(["netns", "exec", host.ns(), "iptables", "-S"])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&rules.stdout).lines() {
            if line.contains("idlab-") {
                found.push(format!("{}: rule {line}", host.name()));
            }
        }
        let qdisc = Command::new("ip")
            .args([
                "netns",
                "exec",
                host.ns(),
                "tc",
                "qdisc",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        let qdisc = String::from_utf8_lossy(&qdisc.stdout);
        if qdisc.contains("netem") || qdisc.contains("tbf") {
            found.push(format!("{}: qdisc {}", host.name(), qdisc.trim()));
        }
        for entry in std::fs::read_dir(hosts.data_dir(i)).unwrap().flatten() {
            found.push(format!("{}: file {}", host.name(), entry.path().display()));
        }
    }
    found
}

/// Waits up to `within` for every host to be clean; the leftovers if not.
fn clean_within(hosts: &SshLab, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let found = leftovers(hosts);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until some host runs an agent that applied rules (a fault is in force).
fn wait_for_faults(hosts: &SshLab, run: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if run.try_wait().unwrap().is_some() {
            let mut said = String::new();
            if let Some(mut out) = run.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut out, &mut said);
            }
            panic!("the run ended early: {said}");
        }
        let faulted = hosts.lab().hosts().iter().any(|h| {
            let rules = Command::new("ip")
                .args(["netns", "exec", h.ns(), "iptables", "-S"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&rules.stdout)
                .lines()
                .any(|l| l.starts_with("-A idlab-") && l.contains("-s 198.19."))
        });
        if faulted {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no fault was applied on any host within a minute");
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_core_scenarios_pass_on_hosts_over_ssh_and_leave_every_host_clean() {
    let hosts = SshLab::start(4, None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let scenarios = [
        "election-at-startup",
        "coordinator-crash",
        "rank-reuse",
        "lamport-concurrent-writes",
        "one-way-cut",
        "redis-dies",
        "random-faults",
    ];
    let run = run_command(&hosts, out.path(), &scenarios)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let report = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path().join("report.json"))
        .find(|p| p.exists())
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert_eq!(report["passed"], scenarios.len(), "{report}");
    for s in report["scenarios"].as_array().unwrap() {
        // The report states the clocks' bounds: namespaces share the machine's clock, so the
        // offset measured over SSH is within its uncertainty, and both are small.
        let offset = s["figures"]["clock_offset_max_ms"][0].as_f64().unwrap();
        let uncertainty = s["figures"]["clock_uncertainty_max_ms"][0]
            .as_f64()
            .unwrap();
        assert!(uncertainty > 0.0 && uncertainty < 20.0, "{s}");
        assert!(
            offset <= uncertainty + 0.5,
            "{}: offset {offset} ms",
            s["name"]
        );
        // Node logs came back from the hosts.
        let evidence = Path::new(s["evidence"].as_str().unwrap());
        let log = std::fs::read_to_string(evidence.join("nodes/n1.log")).unwrap();
        assert!(!log.is_empty(), "{}: n1's log is empty", s["name"]);
        assert!(evidence.join("clocks.json").exists());
    }
    assert_eq!(leftovers(&hosts), Vec::<String>::new());
}

#[test]
fn killing_the_ssh_sessions_mid_run_fails_the_run_and_leaves_every_host_clean() {
    let hosts = SshLab::start(3, None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut run = run_command(&hosts, out.path(), &["one-way-cut"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_faults(&hosts, &mut run);
    // Every SSH connection of the run (the masters, and the sessions over them) goes.
    let killed = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("ControlPath=/tmp/idlab-ssh-{}-", run.id()),
        ])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = run.wait_with_output().unwrap();
    // The run cannot judge the scenario without its hosts, and says which one it lost.
    assert!(!output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("SSH session"),
        "the failure names the lost session: {said}"
    );
    let left = clean_within(&hosts, Duration::from_secs(10));
    assert!(left.is_empty(), "left on the hosts: {left:?}");
}

#[test]
fn killing_idlab_mid_run_leaves_every_host_clean() {
    let hosts = SshLab::start(3, None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut run = run_command(&hosts, out.path(), &["one-way-cut"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_faults(&hosts, &mut run);
    let pid = run.id();
    run.kill().unwrap();
    run.wait().unwrap();
    // The agents see their input end (the control node is gone) and remove everything.
    let left = clean_within(&hosts, Duration::from_secs(10));
    assert!(left.is_empty(), "left on the hosts: {left:?}");
    // What the dead run left on the control node (its SSH connections and their directory)
    // goes with `idlab clean`.
    let control = format!("idlab-ssh-{pid}-");
    let has_control = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&control))
    };
    assert!(has_control(), "the killed run had a control directory");
    let clean = Command::new(IDLAB).arg("clean").output().unwrap();
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(!has_control(), "{}", text(&clean));
    let masters = Command::new("pgrep")
        .args(["-f", &format!("ControlPath=/tmp/{control}")])
        .output()
        .unwrap();
    assert!(
        masters.stdout.is_empty(),
        "an SSH master of the dead run lives on"
    );
}

/// A hosts file naming `n` hosts that nothing listens on (a run that is refused never
/// connects).
fn unreachable_hosts(dir: &Path, n: usize) -> PathBuf {
    std::fs::write(dir.join("known_hosts"), "").unwrap();
    let mut text = String::from("known_hosts = \"known_hosts\"\n");
    for i in 1..=n {
        text += &format!(
            "\n[[host]]\nname = \"h{i}\"\nssh = \"192.0.2.{i}\"\ninterface = \"eth0\"\n\
             address = \"192.0.2.{i}\"\ndata_dir = \"/var/tmp/idlab\"\n"
        );
    }
    let path = dir.join("hosts.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn scenarios_the_hosts_cannot_run_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = unreachable_hosts(dir.path(), 3);
    let run = Command::new(IDLAB)
        .arg("run")
        .arg("--hosts")
        .arg(&hosts)
        .arg("--out")
        .arg(dir.path().join("runs"))
        .args([
            scenario("rank-reuse"),
            scenario("strict-partition-no-loss"),
            scenario("election-multicast"),
            scenario("coordinator-crash"),
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(
        said.contains("3 scenario(s) cannot run on these hosts"),
        "{said}"
    );
    assert!(
        said.contains("rank-reuse: ") && said.contains("names 3 host(s); this scenario needs 4"),
        "{said}"
    );
    assert!(
        said.contains("strict-partition-no-loss: the partition at line")
            && said.contains("names a client host"),
        "{said}"
    );
    assert!(
        said.contains("election-multicast: the SSH backend does not run multicast discovery"),
        "{said}"
    );
    // Nothing started: no run folder was made.
    assert!(!dir.path().join("runs").exists());
}

#[test]
fn a_hosts_file_with_a_typo_is_reported_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = unreachable_hosts(dir.path(), 1);
    let text = std::fs::read_to_string(&hosts)
        .unwrap()
        .replace("data_dir", "datadir");
    std::fs::write(&hosts, text).unwrap();
    let run = Command::new(IDLAB)
        .arg("run")
        .arg("--hosts")
        .arg(&hosts)
        .arg(scenario("coordinator-crash"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(
        said.contains("hosts.toml:8:1: unknown field `datadir`"),
        "{said}"
    );
}
