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
    assert!(text.contains(&format!("removed {dead}")), "{text}");
    assert!(!remaining.iter().any(|n| n == dead));
    assert!(
        remaining.iter().any(|n| n == lab.switch_ns()),
        "a live run's lab is kept"
    );
}
