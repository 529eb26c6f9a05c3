//! The evidence on disk: the run's `report.json` and index page, each scenario's folder (its
//! result, history, statuses, events and timeline), and the key figures of a result.

use crate::checkers::percentile;
use crate::executor::{ScenarioResult, ScenarioVerdict};
use serde::Serialize;
use std::path::Path;

use super::{junit, timeline};

/// The whole run, as `report.json` holds it.
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    /// Run id (the folder's name).
    pub run_id: &'a str,
    /// Start, Unix ms.
    pub start_ms: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Counts.
    pub passed: usize,
    /// Counts.
    pub failed: usize,
    /// Counts.
    pub errors: usize,
    /// Every scenario.
    pub scenarios: &'a [ScenarioResult],
}

impl<'a> RunReport<'a> {
    /// Summarises `scenarios`.
    pub fn new(
        run_id: &'a str,
        start_ms: u64,
        duration_ms: u64,
        scenarios: &'a [ScenarioResult],
    ) -> Self {
        let count = |v| scenarios.iter().filter(|s| s.verdict == v).count();
        RunReport {
            run_id,
            start_ms,
            duration_ms,
            passed: count(ScenarioVerdict::Pass),
            failed: count(ScenarioVerdict::Fail),
            errors: count(ScenarioVerdict::Error),
            scenarios,
        }
    }
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn jsonl<T: Serialize>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str(&serde_json::to_string(&item).expect("records serialise"));
        out.push('\n');
    }
    out
}

/// Writes one scenario's evidence into its folder: history, status samples, final logs,
/// result and timeline.
pub fn write_evidence(result: &ScenarioResult) -> std::io::Result<()> {
    let dir = &result.evidence;
    std::fs::create_dir_all(dir.join("events"))?;
    write(&dir.join("history.jsonl"), &jsonl(&result.history))?;
    write(&dir.join("status.jsonl"), &jsonl(&result.samples))?;
    for (node, log) in &result.final_logs {
        write(
            &dir.join("events").join(format!("{node}.jsonl")),
            &jsonl(log),
        )?;
    }
    write(
        &dir.join("result.json"),
        &serde_json::to_string_pretty(result).expect("results serialise"),
    )?;
    write(&dir.join("timeline.html"), &timeline(result))
}

/// Writes `report.json`, `junit.xml` and `index.html` (the summary with a link to each
/// scenario's timeline) into the run folder.
pub fn write_run(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    write(
        &dir.join("report.json"),
        &serde_json::to_string_pretty(report).expect("the report serialises"),
    )?;
    write(&dir.join("junit.xml"), &junit(report))?;
    write(&dir.join("index.html"), &index(report))
}

/// The run's summary as a page linking every scenario's timeline.
fn index(report: &RunReport) -> String {
    let mut rows = String::new();
    for s in report.scenarios {
        let folder = s
            .evidence
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr class=\"{}\"><td><a href=\"{}/timeline.html\">{}</a></td><td>{:?}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td></tr>",
            if s.verdict == ScenarioVerdict::Pass { "ok" } else { "bad" },
            escape(&folder),
            escape(&s.name),
            s.verdict,
            s.seed,
            s.duration_ms as f64 / 1000.0,
            escape(&key_figures(s)),
            escape(s.reason.as_deref().unwrap_or(""))
        ));
    }
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>idlab run {id}</title><style>\
body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:3px 8px;font-size:13px}}tr.bad td{{background:#fbe3e3}}\
</style></head><body><h1>idlab run {id}</h1><p>{passed} passed, {failed} failed, {errors} errors in {secs:.1} s \
· <a href=\"report.json\">report.json</a> · <a href=\"junit.xml\">junit.xml</a></p>\
<table><tr><th>scenario</th><th>verdict</th><th>seed</th><th>time</th><th>key figures</th><th>reason</th></tr>{rows}</table></body></html>\n",
        id = escape(report.run_id),
        passed = report.passed,
        failed = report.failed,
        errors = report.errors,
        secs = report.duration_ms as f64 / 1000.0,
    )
}

/// The figures worth a summary column: `name=value`, or `name p50/p99` for repeated ones.
pub fn key_figures(result: &ScenarioResult) -> String {
    const SHOWN: [&str; 8] = [
        "lost_writes",
        "window_p99_ms",
        "replica_lag_p99_ms",
        "latency_p99_ms",
        "acked_writes",
        "recovery_ms",
        "operations",
        "events_checked",
    ];
    let mut parts = Vec::new();
    let measured = result.figures.iter().filter(|(name, _)| {
        name.ends_with("_ms")
            && !SHOWN.contains(&name.as_str())
            && !name.starts_with("window_")
            && !name.starts_with("replica_lag_")
            && !name.starts_with("latency_")
    });
    for (name, values) in measured {
        parts.push(figure(name, values));
    }
    for name in SHOWN {
        if let Some(values) = result.figures.get(name) {
            if parts.len() < 5 {
                parts.push(figure(name, values));
            }
        }
    }
    parts.join(" ")
}

fn figure(name: &str, values: &[f64]) -> String {
    if values.len() == 1 {
        return format!("{name}={}", values[0]);
    }
    let mut sorted: Vec<u64> = values.iter().map(|v| *v as u64).collect();
    sorted.sort_unstable();
    format!(
        "{name}(n={}) p50={} p99={}",
        sorted.len(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0)
    )
}

/// Escapes text for HTML and XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
