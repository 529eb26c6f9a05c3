//! The terminal reporter: a line per step and check while a scenario runs, and a summary table
//! at the end.

use super::key_figures;
use crate::checkers::Verdict;
use crate::executor::{RunEvent, ScenarioResult, ScenarioVerdict};
use crate::scenario::Expect;

/// Prints one event.
pub fn progress(event: &RunEvent) {
    match event {
        RunEvent::ScenarioStarted { name, seed } => println!("▶ {name} (seed {seed})"),
        // Steps that take a while say so when they begin.
        RunEvent::StepStarted {
            number,
            line,
            summary,
            long,
        } => {
            if *long {
                println!("  … step {number:>2} (line {line:>3}) {summary}");
            }
        }
        RunEvent::StepFinished(s) => println!(
            "  {} step {:>2} (line {:>3}) {:<44} {:>6} ms  {}",
            if s.ok { "·" } else { "✗" },
            s.number,
            s.line,
            truncate(&s.summary, 44),
            s.duration_ms,
            truncate(&s.note, 90)
        ),
        RunEvent::CheckFinished(a) => {
            let verdict = match a.finding.verdict {
                Verdict::Valid => "holds",
                Verdict::Invalid => "violated",
                Verdict::Unknown => "unknown",
            };
            let expected = if a.expect == Expect::Violated {
                " (expected violated)"
            } else {
                ""
            };
            println!(
                "  {} {}: {verdict}{expected}",
                if a.passed { "✓" } else { "✗" },
                a.name
            );
            if !a.passed || a.expect == Expect::Violated {
                for d in a.finding.details.iter().take(8) {
                    println!("      {}", truncate(d, 150));
                }
                if a.finding.details.len() > 8 {
                    println!("      … {} more in the report", a.finding.details.len() - 8);
                }
            }
        }
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(chars - 1).collect();
        t.push('…');
        t
    }
}

/// The summary table of a run.
pub fn summary_table(results: &[ScenarioResult]) -> String {
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "\n{:<width$}  {:<7}  {:>20}  {:>8}  key figures\n",
        "scenario", "verdict", "seed", "time"
    );
    for r in results {
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:>20}  {:>7.1}s  {}\n",
            r.name,
            match r.verdict {
                ScenarioVerdict::Pass => "PASS",
                ScenarioVerdict::Fail => "FAIL",
                ScenarioVerdict::Error => "ERROR",
            },
            r.seed,
            r.duration_ms as f64 / 1000.0,
            key_figures(r)
        ));
        if let Some(reason) = &r.reason {
            out.push_str(&format!("{:<width$}    └ {}\n", "", truncate(reason, 160)));
            out.push_str(&format!(
                "{:<width$}      replay: idlab run {} --seed {}; evidence: {}\n",
                "",
                r.file,
                r.seed,
                r.evidence.join("timeline.html").display()
            ));
        }
    }
    out
}
