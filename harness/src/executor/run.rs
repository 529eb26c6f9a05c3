//! Running one scenario: the step loop, the dispatch of each step's action, the final
//! heal-and-recover phase and the checkers.

use crate::checkers::{self, CheckInput, Verdict};
use crate::cluster::{LabCluster, NodeConfig, NodeState};
use crate::describe::summarize;
use crate::error::{Error, Result};
use crate::history::{now_ms, OpRecord, Outcome, WindowKind};
use crate::limits::RECOVER_WAIT_MS;
use crate::scenario::{Action, Check, Condition, Expect, PartitionShape, Scenario};
use crate::workload::{History, Session};
use idserver::core::Role;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use super::result::*;

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
        previous_idserver: options.previous_idserver.clone(),
        build: scenario.build,
        cluster: format!("idlab-{}", scenario.name),
        mode: scenario.mode,
        min_acks: scenario.min_acks,
        discovery: scenario.discovery,
        layout: scenario.layout,
        security: scenario.security,
        rogue: scenario.rogue,
        nodes: scenario.nodes,
        client_hosts: scenario.client_hosts,
        keep_data: options.keep_data,
        redis: options.redis.unwrap_or(scenario.redis),
        containers: options.containers.clone(),
        hosts: options.hosts.clone(),
    };
    let mut cluster = match LabCluster::create(config, &options.evidence) {
        Ok(c) => c,
        Err(e) => {
            result.verdict = ScenarioVerdict::Error;
            result.reason = Some(format!("failed to set up the lab: {e}"));
            result.duration_ms = now_ms() - start_ms;
            return result;
        }
    };
    let stores_from = now_ms();
    if let Err(e) = cluster.start_stores().await {
        result.verdict = ScenarioVerdict::Error;
        result.reason = Some(format!("failed to start the nodes' Redis containers: {e}"));
        cluster.teardown();
        result.duration_ms = now_ms() - start_ms;
        return result;
    }
    if let Some(remote) = cluster.remote() {
        // The report states how far the hosts' clocks are from the control node's (each
        // host's in the evidence, clocks.json).
        let clocks = remote.clocks();
        let largest = |f: fn(&crate::remote::session::ClockOffset) -> f64| {
            clocks.iter().map(|(_, c)| f(c)).fold(0.0, f64::max)
        };
        result.figures.insert(
            "clock_offset_max_ms".into(),
            vec![largest(|c| c.offset_ms.abs())],
        );
        result.figures.insert(
            "clock_uncertainty_max_ms".into(),
            vec![largest(|c| c.uncertainty_ms)],
        );
        let by_host: BTreeMap<String, _> = clocks
            .iter()
            .enumerate()
            .map(|(i, (host, c))| (format!("n{} ({host})", i + 1), *c))
            .collect();
        let _ = std::fs::write(
            options.evidence.join("clocks.json"),
            serde_json::to_string_pretty(&by_host).unwrap_or_default(),
        );
    }
    if cluster.has_containers() {
        result.figures.insert(
            "redis_containers_start_ms".into(),
            vec![(now_ms() - stores_from) as f64],
        );
    }
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
    cluster.remove_stores().await;
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

pub(super) struct Exec<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) cluster: LabCluster,
    pub(super) seed: u64,
    pub(super) labels: BTreeMap<String, usize>,
    pub(super) history: History,
    pub(super) loads: Vec<tokio::task::JoinHandle<u64>>,
    pub(super) load_count: usize,
    /// Sessions of single operations by (client host, `via` node + 1 or 0 for discovery).
    pub(super) sessions: BTreeMap<(u32, u32), Session>,
    pub(super) result: &'a mut ScenarioResult,
    pub(super) interrupted: watch::Receiver<bool>,
    pub(super) report: &'a (dyn Fn(RunEvent) + Sync),
}

impl Exec<'_> {
    pub(super) async fn run(&mut self) -> Result<()> {
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

    pub(super) async fn step(&mut self, action: &Action, line: usize) -> Result<String> {
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
            Action::StepDown { label } => self.step_down(label.as_deref()).await,
            Action::Heal => {
                self.cluster.net().heal()?;
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
            Action::Rogue {
                attack,
                nodes,
                count,
                epoch,
            } => self.rogue(*attack, nodes, *count, *epoch).await,
        }
    }

    /// The final heal-and-recover phase: heal, restore links, resume and restart every node
    /// that ran, and wait for one coordinator and one history.
    pub(super) async fn recover(&mut self) -> Result<()> {
        self.cluster.net().heal()?;
        self.cluster.net().clear_links()?;
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

    pub(super) async fn final_checks(&mut self) {
        let live = self.cluster.live();
        for i in live {
            // What each node applied since its poller last looked (the pollers fetch events
            // every few status rounds): the last writes of a load must not look unapplied.
            self.cluster.collect_events(i).await;
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
            clock_uncertainty_ms: self.cluster.remote().map_or(0, |r| {
                r.clocks()
                    .iter()
                    .map(|(_, c)| c.uncertainty_ms.ceil() as u64)
                    .max()
                    .unwrap_or(0)
            }),
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
