//! `idlab bench` as users run it (as root): idserver, etcd and Redis with Sentinel measured in
//! the lab, rounds in alternating order, leaders crashed under load, a report with ratios,
//! nothing left behind.

use std::process::Command;

const IDLAB: &str = env!("CARGO_BIN_EXE_idlab");

#[test]
fn bench_measures_idserver_etcd_and_sentinel_in_alternating_rounds_and_failovers() {
    let run = bench(&[
        "--systems",
        "idserver,etcd,sentinel",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--rounds",
        "2",
        "--failovers",
        "1",
    ]);
    // (`run` keeps the run folder until the end.)
    let (text, folder, report) = (&run.text, &run.folder, &run.report);
    assert!(text.contains("vs idserver"), "{text}");
    let points = report["points"].as_array().unwrap();
    let order: Vec<(&str, u64)> = points
        .iter()
        .filter(|p| p["workload"] == "create")
        .map(|p| (p["system"].as_str().unwrap(), p["round"].as_u64().unwrap()))
        .collect();
    // Each system's creates are followed by its lookups of keys created before.
    assert_eq!(points.len(), 2 * order.len());
    assert!(points.iter().any(|p| p["workload"] == "lookup"));
    assert_eq!(
        order,
        [
            ("idserver", 0),
            ("etcd", 0),
            ("sentinel", 0),
            ("etcd", 1),
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
    assert_eq!(summary.len(), 6, "creates and lookups of 3 systems");
    for (i, workload) in [(0, "create"), (3, "lookup")] {
        assert_eq!(summary[i]["system"], "idserver");
        assert_eq!(summary[i]["workload"], workload);
        assert_eq!(summary[i]["ratio"], 1.0);
        assert!(summary[i + 1]["ratio"].as_f64().unwrap() > 0.0);
        assert!(summary[i + 2]["ratio"].as_f64().unwrap() > 0.0);
    }
    // One leader crash per system (in the first round): each system elected another leader and took
    // writes again; idserver and etcd lost no acknowledged write (Sentinel's count is only
    // reported: `WAIT 1` does not make the replica it promotes the one that had the write).
    let failovers = report["failovers"].as_array().unwrap();
    assert_eq!(failovers.len(), 3, "{failovers:?}");
    for f in failovers {
        assert!(f["first_ack_ms"].as_f64().unwrap() > 0.0, "{f}");
        assert!(f["agreed_ms"].as_f64().unwrap() > 0.0, "{f}");
        assert!(f["acked"].as_u64().unwrap() > 0, "{f}");
        if f["system"] != "sentinel" {
            assert_eq!(f["lost"].as_array().unwrap().len(), 0, "{f}");
        }
    }
    assert!(text.contains("1st ack p50"), "{text}");
    // The inconsistency window: writes sampled under load in every system, each held by every
    // node within the 2 s the sampler waits.
    let windows = report["window_summary"].as_array().unwrap();
    assert_eq!(windows.len(), 3, "{windows:?}");
    for w in windows {
        assert!(w["samples"].as_u64().unwrap() > 10, "{w}");
        assert_eq!(w["timed_out"], 0, "{w}");
        let (p50, p99) = (w["p50_ms"].as_f64().unwrap(), w["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p99 >= p50 && p99 < 2_000.0, "{w}");
    }
    assert!(text.contains("timed out"), "{text}");
    for s in summary {
        assert!(s["cpu_s_per_1000"].as_f64().unwrap() > 0.0, "{s}");
    }
    // The HTML report, rendered by a headless browser: every system's colour is drawn.
    let shot = rendered(&folder.join("bench.html"));
    for (system, rgb) in [
        ("idserver", [0x1f, 0x77, 0xb4]),
        ("etcd", [0xd6, 0x27, 0x28]),
        ("sentinel", [0x2c, 0xa0, 0x2c]),
    ] {
        let drawn = shot.iter().filter(|px| **px == rgb).count();
        assert!(
            drawn > 500,
            "{system}: {drawn} pixels of its colour in the page"
        );
    }
    // Nothing left: no lab namespace of this run, no Redis of its Sentinel system.
    let prefix = format!("idl-{}-", run_pid(folder));
    assert!(!netns::cleanup::lab_namespaces()
        .iter()
        .any(|n| n.starts_with(&prefix)));
    // Nor a scratch directory of its etcd or Sentinel.
    for root in [std::env::temp_dir(), "/dev/shm".into()] {
        for entry in std::fs::read_dir(root).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !(name.starts_with("idlab-bench-") && name.contains(&prefix)),
                "left behind: {}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn the_delay_profile_slows_every_link() {
    let report = bench(&[
        "--systems",
        "idserver",
        "--clients",
        "1",
        "--seconds",
        "1",
        "--rounds",
        "1",
        "--failovers",
        "0",
        "--profile",
        "delay",
    ])
    .report;
    assert_eq!(report["profile"], "delay");
    // A create crosses four host-to-host hops (client, coordinator, replica and back), each
    // two links of 10 ± 2 ms: about 80 ms.
    let create = &report["summary"][0];
    assert_eq!(create["workload"], "create");
    let p50 = create["p50_ms"].as_f64().unwrap();
    assert!((60.0..200.0).contains(&p50), "{create}");
}

#[test]
fn bench_refuses_an_unknown_profile() {
    let run = Command::new(IDLAB)
        .args(["bench", "--profile", "lossy"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(
        text.contains("unknown profile `lossy`, expected one of plain, delay, loss"),
        "{text}"
    );
}

/// What a bench run left: its output, its run folder (removed with `_out`) and `bench.json`.
struct BenchRun {
    _out: tempfile::TempDir,
    text: String,
    folder: std::path::PathBuf,
    report: serde_json::Value,
}

/// Runs `idlab bench ARGS` with the idserver beside idlab, into a folder of its own, and
/// requires success.
fn bench(args: &[&str]) -> BenchRun {
    let out = tempfile::tempdir().unwrap();
    let idserver = std::path::Path::new(IDLAB).with_file_name("idserver");
    let run = Command::new(IDLAB)
        .arg("bench")
        .args(args)
        .arg("--idserver")
        .arg(&idserver)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let folder = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let report =
        serde_json::from_slice(&std::fs::read(folder.join("bench.json")).unwrap()).unwrap();
    BenchRun {
        text: String::from_utf8_lossy(&run.stdout).into_owned(),
        folder,
        report,
        _out: out,
    }
}

/// The page at `html` as Chromium renders it headless (a tall window): its RGB pixels.
fn rendered(html: &std::path::Path) -> Vec<[u8; 3]> {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("page.png");
    let run = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--window-size=1000,3000"])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (scripts/install-deps installs it)");
    assert!(run.status.success() && png.exists(), "{run:?}");
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|px| [px[0], px[1], px[2]])
        .collect()
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
            "unknown system `etcd-ish`, expected one of idserver, idserver-strict, etcd, \
             etcd-tuned, sentinel"
        ),
        "{text}"
    );
}
