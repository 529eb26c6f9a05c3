//! `rogue` steps: the rogue host attacks the resolved nodes (a replay first captures genuine
//! datagrams on each target's link; a redirect sends them on from there as they come).

use super::run::Exec;
use crate::error::{Error, Result};
use crate::limits::{ROGUE_CAPTURE_MS, ROGUE_REPLAYS};
use crate::rogue::{self, Attack};
use crate::scenario::Selector;
use std::time::Duration;

impl Exec<'_> {
    pub(super) async fn rogue(
        &mut self,
        attack: Attack,
        nodes: &[Selector],
        count: u32,
        epoch: u64,
    ) -> Result<String> {
        let mut targets = Vec::new();
        for sel in nodes {
            targets.push(self.resolve(sel).await?);
        }
        if attack == Attack::Redirect {
            return self.redirect(&targets, count).await;
        }
        let mut captured = Vec::new();
        if attack == Attack::Replay {
            for &i in &targets {
                let host = self.cluster.host(i)?.clone();
                let addr = self.cluster.addr(i);
                let window = Duration::from_millis(ROGUE_CAPTURE_MS);
                let got = tokio::task::spawn_blocking(move || {
                    rogue::capture(&host, addr, count as usize, window)
                })
                .await
                .map_err(|e| Error::Step(format!("capture: {e}")))??;
                captured.extend(got);
            }
        }
        let (runtime, kit) = self.cluster.rogue()?;
        let plan = rogue::Plan {
            cluster: self.cluster.cluster_name().to_string(),
            attack,
            targets: targets.iter().map(|&i| self.cluster.addr(i)).collect(),
            // A replay captures up to `count` datagrams and sends each a few times.
            count: if attack == Attack::Replay {
                ROGUE_REPLAYS
            } else {
                count
            },
            epoch,
        };
        runtime
            .spawn(async move { rogue::run(&kit, &plan, captured).await })
            .await
            .map_err(|e| Error::Step(format!("the rogue's task failed: {e}")))?
    }

    /// `redirect`: on every target's link at once, for [`ROGUE_CAPTURE_MS`], each sealed
    /// datagram arriving there goes on to every other node of the cluster.
    async fn redirect(&mut self, targets: &[usize], count: u32) -> Result<String> {
        let everyone: Vec<_> = (0..self.cluster.len())
            .map(|i| self.cluster.addr(i))
            .collect();
        let window = Duration::from_millis(ROGUE_CAPTURE_MS);
        let mut watchers = Vec::new();
        for &i in targets {
            let host = self.cluster.host(i)?.clone();
            let addr = self.cluster.addr(i);
            let others: Vec<_> = everyone.iter().copied().filter(|a| *a != addr).collect();
            watchers.push(tokio::task::spawn_blocking(move || {
                rogue::redirect(&host, addr, others, count as usize, window)
            }));
        }
        let mut sent = 0;
        for watcher in watchers {
            sent += watcher
                .await
                .map_err(|e| Error::Step(format!("redirect: {e}")))??;
        }
        Ok(format!(
            "{sent} sealed datagrams sent on to members they were not sent to"
        ))
    }
}
