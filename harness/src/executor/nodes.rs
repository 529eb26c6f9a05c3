//! Steps on nodes: starting, killing, pausing and restarting them (and their Redis), and
//! resolving the node a selector names now.

use crate::conditions::agreed_coordinator;
use crate::describe::describe_selector;
use crate::error::{Error, Result};
use crate::history::{now_ms, FaultWindow, WindowKind};
use crate::limits::{KILL_REDIS_WINDOW_MS, RESOLVE_ROLE_POLL_MS, RESOLVE_ROLE_WAIT_MS};
use crate::scenario::{NodeChange, Selector};
use idserver::client::{Client, ClientConfig};
use idserver::core::Role;
use std::time::Duration;

use super::run::Exec;

impl Exec<'_> {
    /// `start`: the nodes one after another, `stagger_ms` apart.
    pub(super) async fn start_nodes(
        &mut self,
        nodes: &[Selector],
        stagger_ms: u64,
    ) -> Result<String> {
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
    pub(super) async fn change_node(
        &mut self,
        change: NodeChange,
        node: &Selector,
        label: Option<&str>,
    ) -> Result<String> {
        let i = self.resolve(node).await?;
        let name = self.cluster.name(i);
        if matches!(
            change,
            NodeChange::Kill | NodeChange::Stop | NodeChange::Upgrade
        ) {
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
            NodeChange::Upgrade => {
                // Stopped cleanly, as an operator's `systemctl stop`, then started from the
                // current build on the same data.
                self.cluster.stop(i)?;
                self.open_fault(WindowKind::Kill, format!("upgrade {name}"), vec![i]);
                let from = self.cluster.upgrade_binary(i);
                self.cluster.start(i)?;
                self.close_fault(i, WindowKind::Kill);
                if let Some(label) = label {
                    self.labels.insert(label.to_string(), i);
                }
                return Ok(format!(
                    "upgrade {name}: stopped ({}), started from the current build",
                    from.display()
                ));
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

    /// `step-down`: an operator asks the coordinator (with a node certificate of the run,
    /// from the client host) to hand over; `label` names the successor.
    pub(super) async fn step_down(&mut self, label: Option<&str>) -> Result<String> {
        let from = self.resolve(&Selector::Coordinator).await?;
        let config = ClientConfig {
            servers: vec![self.cluster.addr(from).to_string()],
            cluster: self.cluster.cluster_name().to_string(),
            transport: self.cluster.operator_transport(from)?,
            ..ClientConfig::default()
        };
        let handed = self
            .cluster
            .client(0)
            .spawn(async move { Client::new(config).step_down().await })
            .await
            .map_err(|e| Error::Step(format!("the step-down task failed: {e}")))?
            .map_err(|e| Error::Step(format!("step-down refused: {e}")))?;
        let (successor, clock) = handed;
        let to = self.cluster.index_of(&successor).ok_or_else(|| {
            Error::Step(format!("step-down named {successor}, which is not a node"))
        })?;
        if let Some(label) = label {
            self.labels.insert(label.to_string(), to);
        }
        Ok(format!(
            "{} handed over to {} at clock {clock}",
            self.cluster.name(from),
            self.cluster.name(to)
        ))
    }

    /// The node a selector names now.
    pub(super) async fn resolve(&mut self, sel: &Selector) -> Result<usize> {
        match sel {
            Selector::Node(n) => Ok(*n as usize - 1),
            Selector::Label(l) => self
                .labels
                .get(l)
                .copied()
                .ok_or_else(|| Error::Step(format!("no node is labelled {l}"))),
            Selector::Client(_) | Selector::Others | Selector::Redis(_) => Err(Error::Step(
                format!("{} is not a node", describe_selector(sel)),
            )),
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

    /// A lab host name for a selector (nodes, a node's Redis container, or a client host).
    pub(super) async fn host_name(&mut self, sel: &Selector) -> Result<String> {
        match sel {
            Selector::Client(c) => Ok(crate::cluster::client_host_name(*c)),
            Selector::Redis(node) => {
                let i = Box::pin(self.resolve(node)).await?;
                self.cluster.redis_host(i).map(|h| h.name().to_string())
            }
            _ => {
                let i = self.resolve(sel).await?;
                Ok(self.cluster.name(i))
            }
        }
    }
}
