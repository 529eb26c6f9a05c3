//! Steps that fault the network (partitions, link conditions), the random fault schedule, and
//! the fault windows the timeline draws.

use crate::describe::describe_link;
use crate::error::Result;
use crate::faults::{self};
use crate::history::{now_ms, FaultWindow, WindowKind};
use crate::scenario::{FaultKind, LinkSpec, PartitionShape, Selector};
use netns::{Direction, PartitionMode};
use std::time::Duration;

use super::run::Exec;

impl Exec<'_> {
    pub(super) fn apply_default_links(&mut self) -> Result<()> {
        if self.scenario.link == LinkSpec::default() {
            return Ok(());
        }
        let conditions = faults::conditions(&self.scenario.link, false);
        for i in 0..self.cluster.len() {
            let name = self.cluster.name(i);
            self.cluster
                .net()
                .set_link(&name, Direction::Both, conditions)?;
        }
        Ok(())
    }

    pub(super) fn open_fault(&mut self, kind: WindowKind, label: String, nodes: Vec<usize>) {
        self.result.faults.push(FaultWindow {
            kind,
            label,
            nodes,
            start_ms: now_ms(),
            end_ms: None,
        });
    }

    /// Ends the open fault of this kind on node `i`.
    pub(super) fn close_fault(&mut self, i: usize, kind: WindowKind) {
        let now = now_ms();
        for f in &mut self.result.faults {
            if f.end_ms.is_none() && f.nodes == [i] && f.kind == kind {
                f.end_ms = Some(now);
            }
        }
    }

    /// Ends every open fault of this kind.
    pub(super) fn close_faults_with(&mut self, kind: WindowKind) {
        let now = now_ms();
        for f in &mut self.result.faults {
            if f.end_ms.is_none() && f.kind == kind {
                f.end_ms = Some(now);
            }
        }
    }

    pub(super) async fn partition(
        &mut self,
        shape: &PartitionShape,
        reject: bool,
    ) -> Result<String> {
        let mode = if reject {
            PartitionMode::Reject
        } else {
            PartitionMode::Drop
        };
        let (label, nodes) = match shape {
            PartitionShape::Isolate(sel) => {
                let name = self.host_name(sel).await?;
                let idx = self.resolve(sel).await?;
                self.cluster.isolate(idx, mode)?;
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
                // With Redis in containers, each node's store stays on its node's side unless
                // a side names it.
                for group in &mut names {
                    let stores: Vec<String> = group
                        .iter()
                        .filter_map(|n| self.cluster.index_of_name(n))
                        .filter_map(|i| self.cluster.redis_host(i).ok())
                        .map(|h| h.name().to_string())
                        .filter(|h| !named.contains(h))
                        .collect();
                    group.extend(stores);
                }
                self.cluster.net().split(&names, mode)?;
                let shown: Vec<String> = names.iter().map(|g| g.join(" ")).collect();
                (format!("partition: [{}]", shown.join("] | [")), Vec::new())
            }
            PartitionShape::OneWay { from, to } => {
                let (a, b) = (self.host_name(from).await?, self.host_name(to).await?);
                self.cluster.net().cut(&a, &b, mode)?;
                (format!("partition: {a} -/-> {b}"), Vec::new())
            }
        };
        self.open_fault(WindowKind::Partition, label.clone(), nodes);
        Ok(label)
    }

    pub(super) async fn link(
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
            self.cluster.net().set_link(&name, direction, conditions)?;
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

    pub(super) async fn random_faults(
        &mut self,
        spec: &crate::scenario::RandomSpec,
    ) -> Result<String> {
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

    pub(super) fn begin_fault(&mut self, kind: FaultKind, i: usize) -> Result<()> {
        let name = self.cluster.name(i);
        match kind {
            FaultKind::Kill => self.cluster.kill(i)?,
            FaultKind::Pause => self.cluster.pause(i)?,
            FaultKind::KillRedis => self.cluster.kill_redis(i)?,
            FaultKind::PauseRedis => self.cluster.pause_redis(i)?,
            FaultKind::Partition => self.cluster.isolate(i, PartitionMode::Drop)?,
            FaultKind::Loss => {
                let spec = LinkSpec {
                    loss_pct: faults::RANDOM_LOSS_PCT,
                    ..self.scenario.link
                };
                self.cluster.net().set_link(
                    &name,
                    Direction::Both,
                    faults::conditions(&spec, false),
                )?
            }
            FaultKind::Latency => self.cluster.net().set_link(
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

    pub(super) fn end_fault(&mut self, kind: FaultKind, i: usize) -> Result<()> {
        let name = self.cluster.name(i);
        match kind {
            FaultKind::Kill => self.cluster.start(i)?,
            FaultKind::Pause => self.cluster.resume(i)?,
            FaultKind::KillRedis => {}
            FaultKind::PauseRedis => self.cluster.resume_redis(i)?,
            FaultKind::Partition => self.cluster.net().heal()?,
            FaultKind::Loss | FaultKind::Latency => self.cluster.net().set_link(
                &name,
                Direction::Both,
                faults::conditions(&self.scenario.link, false),
            )?,
        }
        self.close_fault(i, WindowKind::Random);
        Ok(())
    }
}
