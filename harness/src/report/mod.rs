//! Reporters: they consume the executor's [`RunEvent`](crate::executor::RunEvent)s and
//! [`ScenarioResult`]s and write the terminal progress and summary, `report.json`,
//! `junit.xml`, and each scenario's evidence folder with its `timeline.html`.

mod evidence;
mod junit;
mod terminal;
mod timeline;

pub use evidence::{escape, key_figures, write_evidence, write_run, RunReport};
pub use junit::junit;
pub use terminal::{progress, summary_table};
pub use timeline::timeline;
