//! The executor: runs one scenario's steps against a [`LabCluster`], then heals and recovers,
//! reads every node's log and runs the checkers. It reports progress as typed [`RunEvent`]s
//! and returns a [`ScenarioResult`]; it prints nothing and writes no report itself.

use crate::checkers::{self, CheckInput, Finding, Verdict};
use crate::cluster::{LabCluster, NodeConfig, NodeState};
use crate::conditions::{agreed_coordinator, evaluate, Resolved};
use crate::describe::{describe_condition, describe_link, describe_selector, summarize};
use crate::error::{Error, Result};
use crate::faults::{self, Planned};
use crate::history::{now_ms, FaultWindow, OpRecord, Outcome, Sample, WindowKind};
use crate::limits::{
    CONDITION_POLL_MS, KILL_REDIS_WINDOW_MS, LOAD_SESSION_IDS_PER_LOAD, LOAD_SESSION_ID_BASE,
    OP_SESSIONS_PER_CLIENT_HOST, RECOVER_WAIT_MS, RESOLVE_ROLE_POLL_MS, RESOLVE_ROLE_WAIT_MS,
};
use crate::scenario::{
    Action, Check, Condition, Expect, FaultKind, LinkSpec, LoadSpec, NodeChange, OpExpect, OpSpec,
    PartitionShape, Scenario, Selector,
};
use crate::workload::{run_session, Generator, History, Op, Session};
use idserver::core::Role;
use idserver::discovery::Discovery;
use idserver::event::LoggedEvent;
use netns::{Direction, PartitionMode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// Seed overriding the files' seeds.
    pub seed: Option<u64>,
    /// Where this scenario's evidence goes.
    pub evidence: PathBuf,
    /// Turns true when the user interrupts the run.
    pub interrupted: watch::Receiver<bool>,
    /// Keep each node's data directory in the evidence.
    pub keep_data: bool,
}

/// Runs `scenario`, reporting to `report`.
pub async fn run(
    scenario: &Scenario,
    options: &RunOptions,
    report: &(dyn Fn(RunEvent) + Sync),
) -> ScenarioResult {
    let seed = options
        .seed
        .or(scenario.seed)
        .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()));
    report(RunEvent::ScenarioStarted {
        name: scenario.name.clone(),
        seed,
    });
    let start_ms = now_ms();
    let mut result = ScenarioResult {
        name: scenario.name.clone(),
        file: scenario.file.display().to_string(),
        description: scenario.description.clone(),
        seed,
        verdict: ScenarioVerdict::Pass,
        reason: None,
        duration_ms: 0,
        start_ms,
        steps: Vec::new(),
        assertions: Vec::new(),
        figures: BTreeMap::new(),
        faults: Vec::new(),
        random_schedule: Vec::new(),
        nodes: (1..=scenario.nodes).map(|i| format!("n{i}")).collect(),
        evidence: options.evidence.clone(),
        history: Vec::new(),
        samples: Vec::new(),
        final_logs: BTreeMap::new(),
    };
    let config = NodeConfig {
        idserver: options.idserver.clone(),
        cluster: format!("idlab-{}", scenario.name),
        mode: scenario.mode,
        min_acks: scenario.min_acks,
        discovery: scenario.discovery,
        layout: scenario.layout,
        nodes: scenario.nodes,
        client_hosts: scenario.client_hosts,
        keep_data: options.keep_data,
    };
    let cluster = match LabCluster::create(config, &options.evidence) {
        Ok(c) => c,
        Err(e) => {
            result.verdict = ScenarioVerdict::Error;
            result.reason = Some(format!("failed to set up the lab: {e}"));
            result.duration_ms = now_ms() - start_ms;
            return result;
        }
    };
    let mut exec = Exec {
        scenario,
        cluster,
        seed,
        labels: BTreeMap::new(),
        history: Arc::new(Mutex::new(Vec::new())),
        loads: Vec::new(),
        load_count: 0,
        sessions: BTreeMap::new(),
        result: &mut result,
        interrupted: options.interrupted.clone(),
        report,
    };
    let outcome = exec.run().await;
    let exec_history = exec.history.clone();
    let mut cluster = exec.cluster;
    if let Err(e) = outcome {
        let verdict = match e {
            Error::Setup(_) | Error::Lab(_) => ScenarioVerdict::Error,
            _ => ScenarioVerdict::Fail,
        };
        result.verdict = verdict;
        result.reason.get_or_insert(e.to_string());
    }
    result.samples = cluster.samples();
    result.history = exec_history.lock().expect("history lock").clone();
    cluster.teardown();
    drop(cluster);
    if result.verdict == ScenarioVerdict::Pass {
        if let Some(failed) = result.assertions.iter().find(|a| !a.passed) {
            result.verdict = ScenarioVerdict::Fail;
            result.reason = Some(format!(
                "{} (line {}): expected to {}, {}",
                failed.name,
                failed.line,
                match failed.expect {
                    Expect::Hold => "hold",
                    Expect::Violated => "be violated",
                },
                match failed.finding.verdict {
                    Verdict::Valid => "it held".to_string(),
                    Verdict::Invalid => format!(
                        "violated: {}",
                        failed.finding.details.first().cloned().unwrap_or_default()
                    ),
                    Verdict::Unknown => format!(
                        "unknown: {}",
                        failed.finding.details.first().cloned().unwrap_or_default()
                    ),
                }
            ));
        }
    }
    result.duration_ms = now_ms() - start_ms;
    result
}

struct Exec<'a> {
    scenario: &'a Scenario,
    cluster: LabCluster,
    seed: u64,
    labels: BTreeMap<String, usize>,
    history: History,
    loads: Vec<tokio::task::JoinHandle<u64>>,
    load_count: usize,
    /// Sessions of single operations by (client host, `via` node + 1 or 0 for discovery).
    sessions: BTreeMap<(u32, u32), Session>,
    result: &'a mut ScenarioResult,
    interrupted: watch::Receiver<bool>,
    report: &'a (dyn Fn(RunEvent) + Sync),
}

impl Exec<'_> {
    async fn run(&mut self) -> Result<()> {
        self.apply_default_links()?;
        let deadline = self.result.start_ms + self.scenario.timeout_s * 1000;
        let mut pc = 0;
        let mut repeats: BTreeMap<usize, u32> = BTreeMap::new();
        let mut number = 0;
        while pc < self.scenario.steps.len() {
            if *self.interrupted.borrow() {
                return Err(Error::Step("interrupted".into()));
            }
            if now_ms() > deadline {
                return Err(Error::Step(format!(
                    "the scenario ran past its timeout_s of {}",
                    self.scenario.timeout_s
                )));
            }
            let step = &self.scenario.steps[pc];
            if let Action::Repeat { first, times } = step.action {
                let left = repeats.entry(pc).or_insert(times);
                if *left > 0 {
                    *left -= 1;
                    pc = first;
                } else {
                    repeats.remove(&pc);
                    pc += 1;
                }
                continue;
            }
            number += 1;
            let summary = summarize(&step.action);
            let long = match &step.action {
                Action::Load(l) => !l.background && l.duration_ms >= 2_000,
                Action::Wait { ms } => *ms >= 2_000,
                Action::AwaitLoad | Action::RandomFaults(_) => true,
                _ => false,
            };
            (self.report)(RunEvent::StepStarted {
                number,
                line: step.at.line,
                summary: summary.clone(),
                long,
            });
            let start_ms = now_ms();
            let mut interrupted = self.interrupted.clone();
            let outcome = tokio::select! {
                outcome = self.step(&step.action, step.at.line) => outcome,
                Ok(_) = interrupted.wait_for(|set| *set) => Err(Error::Step("interrupted".into())),
            };
            let record = StepRecord {
                number,
                line: step.at.line,
                summary,
                start_ms,
                duration_ms: now_ms() - start_ms,
                ok: outcome.is_ok(),
                note: match &outcome {
                    Ok(note) => note.clone(),
                    Err(e) => e.to_string(),
                },
            };
            (self.report)(RunEvent::StepFinished(record.clone()));
            self.result.steps.push(record);
            if let Err(e) = outcome {
                self.result.reason = Some(format!("step {number} (line {}): {e}", step.at.line));
                return Err(e);
            }
            pc += 1;
        }
        for load in self.loads.drain(..) {
            let _ = load.await;
        }
        if self.scenario.recover {
            self.recover().await?;
        }
        self.final_checks().await;
        Ok(())
    }

    fn apply_default_links(&mut self) -> Result<()> {
        if self.scenario.link == LinkSpec::default() {
            return Ok(());
        }
        let conditions = faults::conditions(&self.scenario.link, false);
        for i in 0..self.cluster.len() {
            let name = self.cluster.name(i);
            self.cluster
                .lab()
                .set_link(&name, Direction::Both, conditions)?;
        }
        Ok(())
    }

    async fn step(&mut self, action: &Action, line: usize) -> Result<String> {
        match action {
            Action::Start { nodes, stagger_ms } => self.start_nodes(nodes, *stagger_ms).await,
            Action::Node {
                change,
                node,
                label,
            } => self.change_node(*change, node, label.as_deref()).await,
            Action::Partition {
                shape,
                reject,
                label,
            } => {
                let note = self.partition(shape, *reject).await?;
                if let (Some(label), PartitionShape::Isolate(sel)) = (label, shape) {
                    let i = self.resolve(sel).await?;
                    self.labels.insert(label.clone(), i);
                }
                Ok(note)
            }
            Action::Label { node, label } => {
                let i = self.resolve(node).await?;
                self.labels.insert(label.clone(), i);
                Ok(format!("@{label} is {}", self.cluster.name(i)))
            }
            Action::Heal => {
                self.cluster.lab().heal()?;
                self.close_faults_with(WindowKind::Partition);
                Ok("healed".into())
            }
            Action::Link {
                nodes,
                spec,
                down,
                direction,
            } => self.link(nodes, spec, *down, *direction).await,
            Action::Op(spec) => self.measured_op(spec).await,
            Action::Load(spec) => self.load(spec).await,
            Action::AwaitLoad => {
                let mut sent = 0;
                for load in self.loads.drain(..) {
                    sent += load.await.unwrap_or(0);
                }
                Ok(format!("{sent} operations sent"))
            }
            Action::Wait { ms } => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                Ok(String::new())
            }
            Action::Await {
                condition,
                timeout_ms,
                measure,
            } => {
                self.await_condition(condition, *timeout_ms, measure.as_deref())
                    .await
            }
            Action::Assert {
                condition,
                within_ms,
                expect,
            } => {
                self.assert_condition(condition, *within_ms, *expect, line)
                    .await
            }
            Action::RandomFaults(spec) => self.random_faults(spec).await,
            Action::Repeat { .. } => Ok(String::new()),
        }
    }

    /// `start`: the nodes one after another, `stagger_ms` apart.
    async fn start_nodes(&mut self, nodes: &[Selector], stagger_ms: u64) -> Result<String> {
        let mut started = Vec::new();
        for (k, sel) in nodes.iter().enumerate() {
            if k > 0 && stagger_ms > 0 {
                tokio::time::sleep(Duration::from_millis(stagger_ms)).await;
            }
            let i = self.resolve(sel).await?;
            self.cluster.start(i)?;
            self.close_fault(i, WindowKind::Kill);
            started.push(self.cluster.name(i));
        }
        Ok(format!("started {}", started.join(", ")))
    }

    /// `kill`, `stop`, `restart`, `pause`, `resume` and the Redis ones, on one node, which
    /// `label` then names.
    async fn change_node(
        &mut self,
        change: NodeChange,
        node: &Selector,
        label: Option<&str>,
    ) -> Result<String> {
        let i = self.resolve(node).await?;
        let name = self.cluster.name(i);
        if matches!(change, NodeChange::Kill | NodeChange::Stop) {
            self.cluster.collect_events(i).await;
        }
        match change {
            NodeChange::Kill => {
                self.cluster.kill(i)?;
                self.open_fault(WindowKind::Kill, format!("kill {name}"), vec![i]);
            }
            NodeChange::Stop => {
                self.cluster.stop(i)?;
                self.open_fault(WindowKind::Kill, format!("kill {name} (stop)"), vec![i]);
            }
            NodeChange::Restart => {
                self.cluster.start(i)?;
                self.close_fault(i, WindowKind::Kill);
            }
            NodeChange::Pause => {
                self.cluster.pause(i)?;
                self.open_fault(WindowKind::Pause, format!("pause {name}"), vec![i]);
            }
            NodeChange::Resume => {
                self.cluster.resume(i)?;
                self.close_fault(i, WindowKind::Pause);
            }
            NodeChange::KillRedis => {
                self.cluster.kill_redis(i)?;
                let at = now_ms();
                self.result.faults.push(FaultWindow {
                    kind: WindowKind::KillRedis,
                    label: format!("kill-redis {name}"),
                    nodes: vec![i],
                    start_ms: at,
                    end_ms: Some(at + KILL_REDIS_WINDOW_MS),
                });
            }
            NodeChange::PauseRedis => {
                self.cluster.pause_redis(i)?;
                self.open_fault(
                    WindowKind::PauseRedis,
                    format!("pause-redis {name}"),
                    vec![i],
                );
            }
            NodeChange::ResumeRedis => {
                self.cluster.resume_redis(i)?;
                self.close_fault(i, WindowKind::PauseRedis);
            }
        }
        if let Some(label) = label {
            self.labels.insert(label.to_string(), i);
        }
        Ok(format!("{} {name}", change.as_str()))
    }

    /// `op`, with its time recorded as a figure if it is `measure`d.
    async fn measured_op(&mut self, spec: &OpSpec) -> Result<String> {
        let started = now_ms();
        let outcome = self.op(spec).await?;
        if let Some(name) = &spec.measure {
            self.figure(name, (now_ms() - started) as f64);
        }
        Ok(outcome)
    }

    /// `await`: fails the step if `condition` does not hold within `timeout_ms`.
    async fn await_condition(
        &mut self,
        condition: &Condition,
        timeout_ms: u64,
        measure: Option<&str>,
    ) -> Result<String> {
        let started = now_ms();
        let (held, state) = self.wait_for(condition, timeout_ms).await?;
        let took = now_ms() - started;
        if !held {
            return Err(Error::Step(format!(
                "timed out after {timeout_ms} ms waiting for {}: {state}",
                describe_condition(condition)
            )));
        }
        if let Some(name) = measure {
            self.figure(name, took as f64);
        }
        Ok(format!("after {took} ms: {state}"))
    }

    /// `assert`: records whether `condition` came to hold within `within_ms`, as expected.
    async fn assert_condition(
        &mut self,
        condition: &Condition,
        within_ms: u64,
        expect: Expect,
        line: usize,
    ) -> Result<String> {
        let (held, state) = self.wait_for(condition, within_ms).await?;
        let finding = Finding {
            verdict: if held {
                Verdict::Valid
            } else {
                Verdict::Invalid
            },
            details: vec![state.clone()],
            figures: BTreeMap::new(),
        };
        let assertion = AssertionResult {
            name: describe_condition(condition),
            line,
            expect,
            finding,
            passed: held == (expect == Expect::Hold),
        };
        (self.report)(RunEvent::CheckFinished(assertion.clone()));
        self.result.assertions.push(assertion);
        Ok(state)
    }

    /// Adds a measurement to the figure `name`.
    fn figure(&mut self, name: &str, value: f64) {
        self.result
            .figures
            .entry(name.to_string())
            .or_default()
            .push(value);
    }

    fn open_fault(&mut self, kind: WindowKind, label: String, nodes: Vec<usize>) {
        self.result.faults.push(FaultWindow {
            kind,
            label,
            nodes,
            start_ms: now_ms(),
            end_ms: None,
        });
    }

    /// Ends the open fault of this kind on node `i`.
    fn close_fault(&mut self, i: usize, kind: WindowKind) {
        let now = now_ms();
        for f in &mut self.result.faults {
            if f.end_ms.is_none() && f.nodes == [i] && f.kind == kind {
                f.end_ms = Some(now);
            }
        }
    }

    /// Ends every open fault of this kind.
    fn close_faults_with(&mut self, kind: WindowKind) {
        let now = now_ms();
        for f in &mut self.result.faults {
            if f.end_ms.is_none() && f.kind == kind {
                f.end_ms = Some(now);
            }
        }
    }

    /// The node a selector names now.
    async fn resolve(&mut self, sel: &Selector) -> Result<usize> {
        match sel {
            Selector::Node(n) => Ok(*n as usize - 1),
            Selector::Label(l) => self
                .labels
                .get(l)
                .copied()
                .ok_or_else(|| Error::Step(format!("no node is labelled {l}"))),
            Selector::Client(_) | Selector::Others => Err(Error::Step(format!(
                "{} is not a node",
                describe_selector(sel)
            ))),
            Selector::Coordinator | Selector::Follower | Selector::Rank(_) => {
                // Right after a fault the roles may still be settling: look for a while.
                for _ in 0..RESOLVE_ROLE_WAIT_MS / RESOLVE_ROLE_POLL_MS {
                    let live = self.cluster.live();
                    let statuses = self.cluster.statuses(&live).await;
                    let found = match sel {
                        Selector::Coordinator => agreed_coordinator(&self.cluster, &statuses)
                            .or_else(|| {
                                statuses
                                    .iter()
                                    .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
                                    .filter(|(_, s)| s.role == Role::Coordinator)
                                    .max_by_key(|(_, s)| s.epoch)
                                    .map(|(i, _)| *i)
                            }),
                        Selector::Follower => statuses
                            .iter()
                            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
                            .filter(|(_, s)| s.role == Role::Follower)
                            .min_by_key(|(_, s)| s.rank)
                            .map(|(i, _)| *i),
                        Selector::Rank(r) => statuses
                            .iter()
                            .find(|(_, s)| s.as_ref().and_then(|s| s.rank) == Some(*r))
                            .map(|(i, _)| *i),
                        _ => None,
                    };
                    if let Some(i) = found {
                        return Ok(i);
                    }
                    tokio::time::sleep(Duration::from_millis(RESOLVE_ROLE_POLL_MS)).await;
                }
                Err(Error::Step(format!(
                    "no live node is {} (after {RESOLVE_ROLE_WAIT_MS} ms)",
                    describe_selector(sel)
                )))
            }
        }
    }

    /// A lab host name for a selector (nodes or the client host).
    async fn host_name(&mut self, sel: &Selector) -> Result<String> {
        if let Selector::Client(c) = sel {
            return Ok(crate::cluster::client_host_name(*c));
        }
        let i = self.resolve(sel).await?;
        Ok(self.cluster.name(i))
    }

    async fn partition(&mut self, shape: &PartitionShape, reject: bool) -> Result<String> {
        let mode = if reject {
            PartitionMode::Reject
        } else {
            PartitionMode::Drop
        };
        let (label, nodes) = match shape {
            PartitionShape::Isolate(sel) => {
                let name = self.host_name(sel).await?;
                self.cluster.lab().isolate(&name, mode)?;
                let idx = self.resolve(sel).await?;
                (format!("partition: isolate {name}"), vec![idx])
            }
            PartitionShape::Sides(sides) => {
                let mut names = Vec::new();
                for side in sides {
                    let mut group = Vec::new();
                    for sel in side.iter().filter(|s| **s != Selector::Others) {
                        group.push(self.host_name(sel).await?);
                    }
                    names.push(group);
                }
                let named: Vec<String> = names.iter().flatten().cloned().collect();
                let others: Vec<String> = (0..self.cluster.len())
                    .map(|i| self.cluster.name(i))
                    .filter(|n| !named.contains(n))
                    .collect();
                for (side, group) in sides.iter().zip(names.iter_mut()) {
                    if side.contains(&Selector::Others) {
                        group.extend(others.iter().cloned());
                    }
                }
                self.cluster.lab().split(&names, mode)?;
                let shown: Vec<String> = names.iter().map(|g| g.join(" ")).collect();
                (format!("partition: [{}]", shown.join("] | [")), Vec::new())
            }
            PartitionShape::OneWay { from, to } => {
                let (a, b) = (self.host_name(from).await?, self.host_name(to).await?);
                self.cluster.lab().cut(&a, &b, mode)?;
                (format!("partition: {a} -/-> {b}"), Vec::new())
            }
        };
        self.open_fault(WindowKind::Partition, label.clone(), nodes);
        Ok(label)
    }

    async fn link(
        &mut self,
        nodes: &[Selector],
        spec: &Option<LinkSpec>,
        down: bool,
        direction: Direction,
    ) -> Result<String> {
        let mut targets = Vec::new();
        if nodes.is_empty() {
            targets.extend(0..self.cluster.len());
        } else {
            for sel in nodes {
                targets.push(self.resolve(sel).await?);
            }
        }
        let spec = spec.unwrap_or(self.scenario.link);
        let conditions = faults::conditions(&spec, down);
        for &i in &targets {
            let name = self.cluster.name(i);
            self.cluster.lab().set_link(&name, direction, conditions)?;
            self.close_fault(i, WindowKind::Link);
            if spec != self.scenario.link || down {
                self.open_fault(
                    WindowKind::Link,
                    format!(
                        "link {name}: {}{}",
                        describe_link(&spec),
                        if down { ", down" } else { "" }
                    ),
                    vec![i],
                );
            }
        }
        let names: Vec<String> = targets.iter().map(|i| self.cluster.name(*i)).collect();
        Ok(format!("links of {} set", names.join(", ")))
    }

    /// Server addresses, fastest first as discovery finds them (all nodes in order if it
    /// finds none).
    async fn discovered(&self, from: u32) -> Vec<String> {
        let peers: Vec<_> = (0..self.cluster.len())
            .map(|i| self.cluster.addr(i))
            .collect();
        let cluster = self.cluster.cluster_name().to_string();
        let fallback: Vec<String> = peers.iter().map(|a| a.to_string()).collect();
        let found = self
            .cluster
            .client(from)
            .spawn(async move {
                let discovery = Discovery { peers, mcast: None };
                discovery.run(&cluster).await.ok()
            })
            .await
            .ok()
            .flatten();
        match found {
            Some(f) if !f.servers.is_empty() => {
                let mut servers: Vec<String> = f.servers.iter().map(|s| s.to_string()).collect();
                for s in fallback {
                    if !servers.contains(&s) {
                        servers.push(s);
                    }
                }
                servers
            }
            _ => fallback,
        }
    }

    async fn op(&mut self, spec: &OpSpec) -> Result<String> {
        let via = match &spec.via {
            Some(sel) => Some(self.resolve(sel).await?),
            None => None,
        };
        let key = (spec.from, via.map_or(0, |i| i as u32 + 1));
        if !self.sessions.contains_key(&key) {
            let servers = match via {
                Some(i) => vec![self.cluster.addr(i).to_string()],
                None => self.discovered(spec.from).await,
            };
            let session = Session::new(
                key.0 * OP_SESSIONS_PER_CLIENT_HOST + key.1,
                key.0,
                servers,
                self.cluster.cluster_name(),
                self.history.clone(),
            );
            self.sessions.insert(key, session);
        }
        let mut session = self.sessions.remove(&key).expect("inserted above");
        let op = Op {
            kind: spec.kind,
            login: spec.login.clone(),
            new_login: spec.new_login.clone(),
            password: spec.password.clone(),
        };
        let (session, record) = self
            .cluster
            .client(spec.from)
            .spawn(async move {
                let record = session.run(&op).await;
                (session, record)
            })
            .await
            .map_err(|e| Error::Step(format!("the client task failed: {e}")))?;
        self.sessions.insert(key, session);
        let got = match record.outcome {
            Outcome::Ok => "ok".to_string(),
            _ => record.error.clone().unwrap_or_else(|| "failed".into()),
        };
        let shown = format!(
            "{got}{} via {}",
            record.uuid.map(|u| format!(" {u}")).unwrap_or_default(),
            record.server.as_deref().unwrap_or("-")
        );
        let met = match &spec.expect {
            OpExpect::Any => true,
            OpExpect::Ok => record.outcome == Outcome::Ok,
            OpExpect::Error(code) => record.error.as_deref() == Some(code.as_str()),
        };
        if let Some(sel) = &spec.served_by {
            let want = self.resolve(sel).await?;
            let want_addr = self.cluster.addr(want).to_string();
            if record.server.as_deref() != Some(want_addr.as_str()) {
                return Err(Error::Step(format!(
                    "expected {} to answer, got {shown}",
                    self.cluster.name(want)
                )));
            }
        }
        if met {
            Ok(shown)
        } else {
            Err(Error::Step(format!(
                "expected {}, got {shown}",
                match &spec.expect {
                    OpExpect::Error(code) => code.clone(),
                    _ => "ok".into(),
                }
            )))
        }
    }

    async fn load(&mut self, spec: &LoadSpec) -> Result<String> {
        let load = self.load_count;
        self.load_count += 1;
        let mut all: Vec<String> = Vec::new();
        for sel in &spec.via {
            let i = self.resolve(sel).await?;
            all.push(self.cluster.addr(i).to_string());
        }
        if all.is_empty() {
            all = (0..self.cluster.len())
                .map(|i| self.cluster.addr(i).to_string())
                .collect();
        }
        let discovered = if spec.spread || !spec.via.is_empty() {
            all.clone()
        } else {
            self.discovered(spec.from).await
        };
        let until = now_ms() + spec.duration_ms;
        let mut handles = Vec::new();
        for c in 0..spec.clients {
            let servers = if spec.spread {
                let mut s = all.clone();
                s.rotate_left(c as usize % all.len());
                s
            } else {
                discovered.clone()
            };
            let id = LOAD_SESSION_ID_BASE + (load as u32) * LOAD_SESSION_IDS_PER_LOAD + c;
            let session = Session::new(
                id,
                spec.from,
                servers,
                self.cluster.cluster_name(),
                self.history.clone(),
            );
            let generator = Generator::new(self.seed, load, c, spec.clone());
            handles.push(
                self.cluster
                    .client(spec.from)
                    .spawn(run_session(session, generator, until)),
            );
        }
        if spec.background {
            self.loads.extend(handles);
            return Ok(format!("{} clients started", spec.clients));
        }
        let mut sent = 0;
        for h in handles {
            sent += h.await.unwrap_or(0);
        }
        Ok(format!(
            "{sent} operations sent by {} clients",
            spec.clients
        ))
    }

    /// Polls until `condition` holds or `timeout_ms` passes (checks at least once); returns
    /// whether it held and the state last seen.
    async fn wait_for(&mut self, condition: &Condition, timeout_ms: u64) -> Result<(bool, String)> {
        let deadline = now_ms() + timeout_ms;
        let resolved = self.resolve_condition(condition).await?;
        loop {
            let live = self.cluster.live();
            let statuses = self.cluster.statuses(&live).await;
            let (held, state) = evaluate(&self.cluster, &resolved, &statuses);
            if held || now_ms() >= deadline {
                return Ok((held, state));
            }
            tokio::time::sleep(Duration::from_millis(CONDITION_POLL_MS)).await;
        }
    }

    async fn resolve_condition(&mut self, c: &Condition) -> Result<Resolved> {
        Ok(match c {
            Condition::Agreed => Resolved::Agreed,
            Condition::Converged => Resolved::Converged,
            Condition::Coordinator(s) => Resolved::Coordinator(self.resolve(s).await?),
            Condition::NotCoordinator(s) => Resolved::NotCoordinator(self.resolve(s).await?),
            Condition::Rank(s, r) => Resolved::Rank(self.resolve(s).await?, *r),
            Condition::Ranks(r) => Resolved::Ranks(r.clone()),
            Condition::Role(s, role) => Resolved::Role(self.resolve(s).await?, *role),
            Condition::Coordinators(n) => Resolved::Coordinators(*n),
        })
    }

    async fn random_faults(&mut self, spec: &crate::scenario::RandomSpec) -> Result<String> {
        let plan = faults::plan(spec, self.cluster.len(), self.seed);
        self.result.random_schedule.extend(plan.iter().cloned());
        let start = now_ms();
        let mut applied = 0;
        let mut skipped = 0;
        let mut active = vec![false; self.cluster.len()];
        for p in &plan {
            let at = start + p.at_ms;
            let now = now_ms();
            if at > now {
                tokio::time::sleep(Duration::from_millis(at - now)).await;
            }
            if p.begin {
                if p.kind == FaultKind::Kill {
                    self.cluster.collect_events(p.node).await;
                }
                match self.begin_fault(p.kind, p.node) {
                    Ok(()) => {
                        applied += 1;
                        active[p.node] = true;
                    }
                    Err(_) => skipped += 1,
                }
            } else if active[p.node] {
                active[p.node] = false;
                self.end_fault(p.kind, p.node)?;
            }
        }
        Ok(format!(
            "{applied} faults applied, {skipped} skipped (node not in a state for them)"
        ))
    }

    fn begin_fault(&mut self, kind: FaultKind, i: usize) -> Result<()> {
        let name = self.cluster.name(i);
        match kind {
            FaultKind::Kill => self.cluster.kill(i)?,
            FaultKind::Pause => self.cluster.pause(i)?,
            FaultKind::KillRedis => self.cluster.kill_redis(i)?,
            FaultKind::PauseRedis => self.cluster.pause_redis(i)?,
            FaultKind::Partition => self.cluster.lab().isolate(&name, PartitionMode::Drop)?,
            FaultKind::Loss => {
                let spec = LinkSpec {
                    loss_pct: faults::RANDOM_LOSS_PCT,
                    ..self.scenario.link
                };
                self.cluster.lab().set_link(
                    &name,
                    Direction::Both,
                    faults::conditions(&spec, false),
                )?
            }
            FaultKind::Latency => self.cluster.lab().set_link(
                &name,
                Direction::Both,
                faults::conditions(&faults::RANDOM_LATENCY, false),
            )?,
        }
        self.open_fault(
            WindowKind::Random,
            format!("random {} {name}", kind.as_str()),
            vec![i],
        );
        Ok(())
    }

    fn end_fault(&mut self, kind: FaultKind, i: usize) -> Result<()> {
        let name = self.cluster.name(i);
        match kind {
            FaultKind::Kill => self.cluster.start(i)?,
            FaultKind::Pause => self.cluster.resume(i)?,
            FaultKind::KillRedis => {}
            FaultKind::PauseRedis => self.cluster.resume_redis(i)?,
            FaultKind::Partition => self.cluster.lab().heal()?,
            FaultKind::Loss | FaultKind::Latency => self.cluster.lab().set_link(
                &name,
                Direction::Both,
                faults::conditions(&self.scenario.link, false),
            )?,
        }
        self.close_fault(i, WindowKind::Random);
        Ok(())
    }

    /// The final heal-and-recover phase: heal, restore links, resume and restart every node
    /// that ran, and wait for one coordinator and one history.
    async fn recover(&mut self) -> Result<()> {
        self.cluster.lab().heal()?;
        self.cluster.lab().clear_links()?;
        self.apply_default_links()?;
        for i in 0..self.cluster.len() {
            if self.cluster.redis_paused(i) {
                self.cluster.resume_redis(i)?;
            }
            match self.cluster.state(i) {
                NodeState::Paused => self.cluster.resume(i)?,
                NodeState::Down => self.cluster.start(i)?,
                NodeState::New | NodeState::Running => {}
            }
        }
        let now = now_ms();
        for f in &mut self.result.faults {
            f.end_ms.get_or_insert(now);
        }
        let started = now_ms();
        let (held, state) = self
            .wait_for(&Condition::Converged, RECOVER_WAIT_MS)
            .await?;
        if !held {
            return Err(Error::Step(format!(
                "the cluster did not converge within {RECOVER_WAIT_MS} ms after recovery: {state}"
            )));
        }
        self.result
            .figures
            .entry("recovery_ms".into())
            .or_default()
            .push((now_ms() - started) as f64);
        Ok(())
    }

    async fn final_checks(&mut self) {
        let live = self.cluster.live();
        for i in live {
            if let Some(log) = self.cluster.events(i).await {
                self.result.final_logs.insert(self.cluster.name(i), log);
            }
        }
        let history = self.history.lock().expect("history lock").clone();
        let seen = self.cluster.seen_events();
        let samples = self.cluster.samples();
        let names = self.result.nodes.clone();
        let addrs: Vec<String> = (0..self.cluster.len())
            .map(|i| self.cluster.addr(i).to_string())
            .collect();
        let was_coordinator = |server: &str, at_ms: u64| {
            let Some(node) = addrs.iter().position(|a| a == server) else {
                return false;
            };
            samples
                .iter()
                .rfind(|s| s.node == node && s.at_ms <= at_ms)
                .and_then(|s| s.status.as_ref())
                .is_some_and(|s| s.role == Role::Coordinator)
        };
        let input = CheckInput {
            history: &history,
            final_logs: &self.result.final_logs,
            seen: &seen,
            names: &names,
            start_ms: self.result.start_ms,
            was_coordinator: &was_coordinator,
        };
        let mut results = Vec::new();
        for Check {
            at,
            kind,
            expect,
            from,
        } in &self.scenario.checks
        {
            let scoped: Vec<OpRecord>;
            let finding = match from {
                None => checkers::run(kind, &input),
                Some(host) => {
                    scoped = history
                        .iter()
                        .filter(|o| o.host == *host)
                        .cloned()
                        .collect();
                    checkers::run(
                        kind,
                        &CheckInput {
                            history: &scoped,
                            ..input
                        },
                    )
                }
            };
            let passed = match expect {
                Expect::Hold => finding.verdict == Verdict::Valid,
                Expect::Violated => finding.verdict == Verdict::Invalid,
            };
            results.push(AssertionResult {
                name: match from {
                    None => kind.name(),
                    Some(host) => format!(
                        "{} (writes from {})",
                        kind.name(),
                        crate::cluster::client_host_name(*host)
                    ),
                },
                line: at.line,
                expect: *expect,
                finding,
                passed,
            });
        }
        let acked = history
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && o.kind.is_write())
            .count();
        self.result
            .figures
            .insert("acked_writes".into(), vec![acked as f64]);
        self.result
            .figures
            .insert("operations".into(), vec![history.len() as f64]);
        for r in results {
            for (name, value) in &r.finding.figures {
                // Several checks may report the same count; keep the first.
                self.result
                    .figures
                    .entry(name.clone())
                    .or_insert_with(|| vec![*value]);
            }
            (self.report)(RunEvent::CheckFinished(r.clone()));
            self.result.assertions.push(r);
        }
    }
}
