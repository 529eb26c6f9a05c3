//! JUnit XML for CI: one test suite, one test case per scenario, a failure element carrying
//! the reason and every failed assertion's details.

use super::{escape, RunReport};
use crate::executor::ScenarioVerdict;

/// The run as JUnit XML.
pub fn junit(report: &RunReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"idlab\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">\n",
        report.scenarios.len(),
        report.failed,
        report.errors,
        report.duration_ms as f64 / 1000.0
    ));
    out.push_str(&format!(
        "  <testsuite name=\"idlab.{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">\n",
        escape(report.run_id),
        report.scenarios.len(),
        report.failed,
        report.errors,
        report.duration_ms as f64 / 1000.0
    ));
    for s in report.scenarios {
        out.push_str(&format!(
            "    <testcase classname=\"scenarios\" name=\"{}\" file=\"{}\" time=\"{:.3}\">\n",
            escape(&s.name),
            escape(&s.file),
            s.duration_ms as f64 / 1000.0
        ));
        let mut body = String::new();
        for a in s.assertions.iter().filter(|a| !a.passed) {
            body.push_str(&format!("{} (line {}):\n", a.name, a.line));
            for d in &a.finding.details {
                body.push_str(&format!("  {d}\n"));
            }
        }
        let reason = s.reason.clone().unwrap_or_default();
        match s.verdict {
            ScenarioVerdict::Pass => {}
            ScenarioVerdict::Fail => out.push_str(&format!(
                "      <failure message=\"{}\">{}</failure>\n",
                escape(&reason),
                escape(&body)
            )),
            ScenarioVerdict::Error => {
                out.push_str(&format!("      <error message=\"{}\"/>\n", escape(&reason)))
            }
        }
        out.push_str(&format!(
            "      <system-out>seed {} evidence {}</system-out>\n",
            s.seed,
            escape(&s.evidence.display().to_string())
        ));
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
