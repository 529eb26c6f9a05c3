//! What a run reports while it runs ([`RunEvent`]) and what it returns ([`ScenarioResult`]).

use crate::checkers::Finding;
use crate::faults::Planned;
use crate::history::{FaultWindow, OpRecord, Sample};
use crate::scenario::Expect;
use idserver::event::LoggedEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::watch;

/// What the executor tells reporters while it runs.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A scenario begins.
    ScenarioStarted {
        /// Its name.
        name: String,
        /// The seed it runs with.
        seed: u64,
    },
    /// A step begins.
    StepStarted {
        /// 1-based step number.
        number: usize,
        /// Line in the file.
        line: usize,
        /// What it does.
        summary: String,
        /// Whether it is likely to take seconds (loads, long waits, random faults).
        long: bool,
    },
    /// A step ended.
    StepFinished(StepRecord),
    /// A final check ended.
    CheckFinished(AssertionResult),
}

/// One step as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 1-based step number.
    pub number: usize,
    /// Line in the file.
    pub line: usize,
    /// What it did.
    pub summary: String,
    /// When it began (Unix ms).
    pub start_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Whether it did what it had to.
    pub ok: bool,
    /// What came of it (the node a selector named, why it failed…).
    pub note: String,
}

/// An assertion or final check with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct AssertionResult {
    /// What was asserted.
    pub name: String,
    /// Line in the file.
    pub line: usize,
    /// Whether it had to hold or to be violated.
    pub expect: Expect,
    /// What the checker found.
    pub finding: Finding,
    /// Whether the expectation was met.
    pub passed: bool,
}

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioVerdict {
    /// Every step ran and every assertion met its expectation.
    Pass,
    /// A step or an assertion failed.
    Fail,
    /// The lab or a node could not be set up.
    Error,
}

/// Everything one scenario run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// What it shows.
    pub description: String,
    /// The seed used.
    pub seed: u64,
    /// The verdict.
    pub verdict: ScenarioVerdict,
    /// Why it failed or errored, in one line.
    pub reason: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
    /// When it started (Unix ms).
    pub start_ms: u64,
    /// Steps as they ran.
    pub steps: Vec<StepRecord>,
    /// Assertions and final checks.
    pub assertions: Vec<AssertionResult>,
    /// Measured figures (every sample of each).
    pub figures: BTreeMap<String, Vec<f64>>,
    /// Fault windows.
    pub faults: Vec<FaultWindow>,
    /// The random fault schedule, if any, as planned from the seed.
    pub random_schedule: Vec<Planned>,
    /// Node names, by index.
    pub nodes: Vec<String>,
    /// Where the evidence is.
    pub evidence: PathBuf,
    /// Client operations.
    #[serde(skip)]
    pub history: Vec<OpRecord>,
    /// Status samples.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Each live node's final log.
    #[serde(skip)]
    pub final_logs: BTreeMap<String, Vec<LoggedEvent>>,
}

/// How to run scenarios.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `idserver` binary.
    pub idserver: PathBuf,
    /// The previous release's `idserver` (for `build = "previous"` scenarios).
    pub previous_idserver: Option<PathBuf>,
    /// Seed overriding the files' seeds.
    pub seed: Option<u64>,
    /// Where this scenario's evidence goes.
    pub evidence: PathBuf,
    /// Turns true when the user interrupts the run.
    pub interrupted: watch::Receiver<bool>,
    /// Keep each node's data directory in the evidence.
    pub keep_data: bool,
    /// Where each node's Redis runs, overriding the scenario's `redis`.
    pub redis: Option<crate::scenario::RedisMode>,
    /// The engine and image for Redis in containers (prepared once per run).
    pub containers: Option<std::sync::Arc<crate::containers::RedisContainers>>,
    /// The hosts to run on over SSH, prepared for the whole run (None: the local lab).
    pub hosts: Option<std::sync::Arc<crate::remote::RemoteHosts>>,
}
