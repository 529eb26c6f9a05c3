//! `idlab doctor` and `idlab clean` as users run them (as root).

use std::process::Command;

const IDLAB: &str = env!("CARGO_BIN_EXE_idlab");

#[test]
fn doctor_reports_the_machine_as_json_and_text() {
    let out = Command::new(IDLAB)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["root"], true);
    assert!(report["netem"].is_boolean());
    let faults = report["faults"].as_array().unwrap();
    assert!(faults.iter().any(|f| f[0] == "loss"));
    let text = Command::new(IDLAB).arg("doctor").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("latency, jitter"));
}

#[test]
fn clean_removes_a_dead_runs_namespaces_and_nothing_else() {
    // A namespace named as a lab run whose owner (pid 4194304 is above Linux's pid limit) is gone.
    let dead = "idl-4194304-0-sw";
    assert!(Command::new("ip")
        .args(["netns", "add", dead])
        .status()
        .unwrap()
        .success());
    let lab = netns::Lab::create().unwrap();
    let out = Command::new(IDLAB).arg("clean").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let remaining = netns::cleanup::lab_namespaces();
    let _ = Command::new("ip").args(["netns", "delete", dead]).status();
    assert!(out.status.success());
    assert!(
        text.contains(&format!("removed namespace {dead}")),
        "{text}"
    );
    assert!(!remaining.iter().any(|n| n == dead));
    assert!(
        remaining.iter().any(|n| n == lab.switch_ns()),
        "a live run's lab is kept"
    );
}

/// Runs `idlab run` on one scenario written to a temporary directory; returns the output and
/// the run folder.
fn run_scenario(text: &str) -> (std::process::Output, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, text).unwrap();
    let idserver = std::path::Path::new(IDLAB).with_file_name("idserver");
    assert!(
        idserver.is_file(),
        "build idserver first (cargo build --bins, or run the workspace's tests)"
    );
    let out = Command::new(IDLAB)
        .arg("run")
        .arg(&file)
        .arg("--idserver")
        .arg(&idserver)
        .arg("--out")
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    let run = std::fs::read_dir(dir.path().join("runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| !p.ends_with("latest"))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    (out, run, dir)
}

fn no_namespaces_of(pid: u32) -> bool {
    let prefix = format!("idl-{pid}-");
    !netns::cleanup::lab_namespaces()
        .iter()
        .any(|n| n.starts_with(&prefix))
}

#[test]
fn a_typo_in_a_scenario_is_reported_with_its_place_and_nothing_runs() {
    let (out, run, _dir) = run_scenario("nodes = 3\n[[step]]\ndo = \"kil\"\nnode = \"n1\"\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.toml:3:6: unknown step `kil`"), "{err}");
    assert!(!run.join("report.json").exists(), "nothing ran");
}

#[test]
fn a_scenario_runs_end_to_end_and_leaves_its_evidence() {
    let (out, run, _dir) = run_scenario(
        r#"
nodes = 3
seed = 5
[[step]]
do = "start"
[[step]]
do = "await"
that = "agreed"
measure = "startup_ms"
[[step]]
do = "op"
op = "create"
login = "ada"
[[step]]
do = "op"
op = "create"
login = "ada"
expect = "login_exists"
[[check]]
that = "no-lost-writes"
[[check]]
that = "logs-identical"
"#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{out:?}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["verdict"], "pass");
    assert_eq!(scenario["seed"], 5);
    assert!(scenario["figures"]["startup_ms"][0].as_f64().unwrap() < 1500.0);
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(junit.contains("<testcase classname=\"scenarios\" name=\"s\""));
    assert!(!junit.contains("<failure"));
    let evidence = run.join("s");
    let history = std::fs::read_to_string(evidence.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2);
    assert!(history.contains("\"error\":\"login_exists\""));
    for node in ["n1", "n2", "n3"] {
        let log = std::fs::read_to_string(evidence.join("events").join(format!("{node}.jsonl")));
        assert!(log.unwrap().contains("\"login\":\"ada\""), "{node}");
        assert!(evidence.join("nodes").join(format!("{node}.log")).is_file());
        assert!(evidence
            .join("nodes")
            .join(format!("{node}-redis.log"))
            .is_file());
    }
    let timeline = std::fs::read_to_string(evidence.join("timeline.html")).unwrap();
    assert!(timeline.contains("<svg") && timeline.contains("coordinator"));
    assert!(no_namespaces_of(report_pid(&run)));
}

#[test]
fn a_failed_assertion_fails_the_run_and_says_why() {
    let (out, run, _dir) = run_scenario(
        r#"
nodes = 2
[[step]]
do = "start"
[[step]]
do = "await"
that = "agreed"
[[step]]
do = "assert"
that = "coordinators"
count = 2
"#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<failure message=\"2 coordinator(s) (line 8): expected to hold"),
        "{junit}"
    );
    assert!(no_namespaces_of(report_pid(&run)));
}

/// The pid of the `idlab` that made a run folder (`<secs>-<pid>`).
fn report_pid(run: &std::path::Path) -> u32 {
    let name = run.file_name().unwrap().to_string_lossy().into_owned();
    name.rsplit('-').next().unwrap().parse().unwrap()
}
