//! `idlab bench` as users run it (as root): idserver and Redis with Sentinel measured in the
//! lab, rounds in alternating order, a report with ratios, nothing left behind.

use std::process::Command;

const IDLAB: &str = env!("CARGO_BIN_EXE_idlab");

#[test]
fn bench_measures_idserver_and_sentinel_in_alternating_rounds() {
    let out = tempfile::tempdir().unwrap();
    let idserver = std::path::Path::new(IDLAB).with_file_name("idserver");
    let run = Command::new(IDLAB)
        .args(["bench", "--systems", "idserver,sentinel", "--clients", "2"])
        .args(["--seconds", "1", "--rounds", "2", "--idserver"])
        .arg(&idserver)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{run:?}");
    assert!(text.contains("vs idserver"), "{text}");
    let folder = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("bench.json")).unwrap()).unwrap();
    let points = report["points"].as_array().unwrap();
    let order: Vec<(&str, u64)> = points
        .iter()
        .map(|p| (p["system"].as_str().unwrap(), p["round"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("idserver", 0),
            ("sentinel", 0),
            ("sentinel", 1),
            ("idserver", 1)
        ],
        "each round starts with another system"
    );
    for p in points {
        assert!(p["acked"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(p["failed"], 0, "{p}");
        assert!(p["p50_ms"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["p99_ms"].as_f64().unwrap() >= p["p50_ms"].as_f64().unwrap());
    }
    let summary = report["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0]["system"], "idserver");
    assert_eq!(summary[0]["ratio"], 1.0);
    assert!(summary[1]["ratio"].as_f64().unwrap() > 0.0);
    // Nothing left: no lab namespace of this run, no Redis of its Sentinel system.
    let prefix = format!("idl-{}-", run_pid(&folder));
    assert!(!netns::cleanup::lab_namespaces()
        .iter()
        .any(|n| n.starts_with(&prefix)));
}

/// The pid of the `idlab bench` that made run folder `<secs>-<pid>`.
fn run_pid(folder: &std::path::Path) -> String {
    let name = folder.file_name().unwrap().to_string_lossy().into_owned();
    name.rsplit('-').next().unwrap().to_string()
}

#[test]
fn bench_refuses_an_unknown_system_with_the_known_ones() {
    let run = Command::new(IDLAB)
        .args(["bench", "--systems", "idserver,etcd-ish"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(
        text.contains(
            "unknown system `etcd-ish`, expected one of idserver, idserver-strict, sentinel"
        ),
        "{text}"
    );
}
