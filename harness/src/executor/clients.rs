//! Steps that act as clients (single operations, loads) or watch the cluster (`await`,
//! `assert`), and the figures they measure.

use crate::checkers::{Finding, Verdict};
use crate::conditions::{evaluate, Resolved};
use crate::describe::describe_condition;
use crate::error::{Error, Result};
use crate::history::{now_ms, Outcome};
use crate::limits::{
    CONDITION_POLL_MS, LOAD_SESSION_IDS_PER_LOAD, LOAD_SESSION_ID_BASE, OP_SESSIONS_PER_CLIENT_HOST,
};
use crate::scenario::{Condition, Expect, LoadSpec, OpExpect, OpSpec};
use crate::workload::{run_session, Generator, Op, Session};
use idserver::discovery::Discovery;
use std::collections::BTreeMap;
use std::time::Duration;

use super::result::*;
use super::run::Exec;

impl Exec<'_> {
    /// `op`, with its time recorded as a figure if it is `measure`d.
    pub(super) async fn measured_op(&mut self, spec: &OpSpec) -> Result<String> {
        let started = now_ms();
        let outcome = self.op(spec).await?;
        if let Some(name) = &spec.measure {
            self.figure(name, (now_ms() - started) as f64);
        }
        Ok(outcome)
    }

    /// `await`: fails the step if `condition` does not hold within `timeout_ms`.
    pub(super) async fn await_condition(
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
    pub(super) async fn assert_condition(
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
    pub(super) fn figure(&mut self, name: &str, value: f64) {
        self.result
            .figures
            .entry(name.to_string())
            .or_default()
            .push(value);
    }

    /// Server addresses, fastest first as discovery finds them (all nodes in order if it
    /// finds none).
    pub(super) async fn discovered(&self, from: u32) -> Vec<String> {
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

    pub(super) async fn op(&mut self, spec: &OpSpec) -> Result<String> {
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
                self.cluster.transport().clone(),
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

    pub(super) async fn load(&mut self, spec: &LoadSpec) -> Result<String> {
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
                self.cluster.transport().clone(),
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
    pub(super) async fn wait_for(
        &mut self,
        condition: &Condition,
        timeout_ms: u64,
    ) -> Result<(bool, String)> {
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

    pub(super) async fn resolve_condition(&mut self, c: &Condition) -> Result<Resolved> {
        Ok(match c {
            Condition::Agreed => Resolved::Agreed,
            Condition::Converged => Resolved::Converged,
            Condition::Coordinator(s) => Resolved::Coordinator(self.resolve(s).await?),
            Condition::NotCoordinator(s) => Resolved::NotCoordinator(self.resolve(s).await?),
            Condition::Rank(s, r) => Resolved::Rank(self.resolve(s).await?, *r),
            Condition::Ranks(r) => Resolved::Ranks(r.clone()),
            Condition::Role(s, role) => Resolved::Role(self.resolve(s).await?, *role),
            Condition::Coordinators(n) => Resolved::Coordinators(*n),
            Condition::EpochsAtMost(e) => Resolved::EpochsAtMost(*e),
            Condition::Rejected(s, kind, n) => {
                let node = match s {
                    Some(s) => Some(self.resolve(s).await?),
                    None => None,
                };
                Resolved::Rejected(node, *kind, *n)
            }
        })
    }
}
