//! A model of the data plane on top of the simulated cores: the coordinator appends writes to
//! its log; it pushes each replica the events after the one they share (checked like the real
//! `Replicate`); a diverged or too-new replica gets the coordinator's whole log (the full
//! sync); in strict mode each coordinator's epoch begins with an opening event;
//! acknowledgements follow the mode's rule (whitepaper: `--min-acks 1` of the members the
//! coordinator knows; strict: N/2 replicas). It mirrors `replication.rs` and `replica.rs`; the
//! cores deciding who coordinates, and when, are the real ones.

#![allow(dead_code)]

use super::Sim;
use idserver::core::{Input, Role};
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// One event: its place, the epoch it was made in, and a unique write id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ev {
    pub clock: u64,
    pub epoch: u64,
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DataMsg {
    Append {
        epoch: u64,
        prev: Option<Ev>,
        events: Vec<Ev>,
    },
    Snapshot {
        epoch: u64,
        log: Vec<Ev>,
    },
    Reply {
        epoch: u64,
        applied: u64,
        diverged: bool,
    },
}

/// (deliver at, sequence, to, from, message), ordered by time then sequence.
type Delivery = (u64, u64, usize, usize, DataMsg);

const SLICE_MS: u64 = 2;
const PUSH_EVERY_SLICES: u64 = 2;

pub struct DataSim {
    pub sim: Sim,
    pub logs: Vec<Vec<Ev>>,
    /// Write ids acknowledged to a client, with the node that acknowledged them.
    pub acked: BTreeMap<u64, usize>,
    /// When each write was acknowledged.
    pub acked_at_ms: BTreeMap<u64, u64>,
    /// Per epoch, the nodes that acknowledged writes as its coordinator.
    pub ackers: BTreeMap<u64, BTreeSet<usize>>,
    /// Per host: writes awaiting acknowledgement (id, clock).
    pending: Vec<Vec<(u64, u64)>>,
    /// Per coordinator host: (epoch, replica -> highest matching clock).
    matched: Vec<(u64, BTreeMap<usize, u64>)>,
    queue: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    next_id: u64,
    slice: u64,
    /// Chance per slice that a client writes to a random node.
    pub write_rate: f64,
}

impl DataSim {
    pub fn new(sim: Sim) -> DataSim {
        let n = sim.hosts.len();
        DataSim {
            sim,
            logs: vec![Vec::new(); n],
            acked: BTreeMap::new(),
            acked_at_ms: BTreeMap::new(),
            ackers: BTreeMap::new(),
            pending: vec![Vec::new(); n],
            matched: vec![(0, BTreeMap::new()); n],
            queue: BinaryHeap::new(),
            seq: 0,
            next_id: 1,
            slice: 0,
            write_rate: 0.3,
        }
    }

    /// The id the next write will get.
    pub fn next_write_id(&self) -> u64 {
        self.next_id
    }

    fn live(&self, i: usize) -> bool {
        let h = &self.sim.hosts[i];
        h.node.is_some() && h.paused_until.is_none_or(|t| t <= self.sim.now_ms)
    }

    fn view(&self, i: usize) -> Option<idserver::core::View> {
        self.sim.view(i)
    }

    fn set_log(&mut self, i: usize, log: Vec<Ev>) {
        let (clock, epoch) = log.last().map_or((0, 0), |e| (e.clock, e.epoch));
        self.logs[i] = log;
        self.sim.set_log(i, clock, epoch);
    }

    fn send(&mut self, from: usize, to: usize, msg: DataMsg) {
        if self.sim.cut.contains(&(from, to)) || self.sim.rng.gen_bool(self.sim.loss) {
            return;
        }
        let (lo, hi) = self.sim.latency_ms;
        let at = self.sim.now_ms + self.sim.rng.gen_range(lo..=hi.max(lo));
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, to, from, msg)));
    }

    /// Runs until `until_ms`, writing with `write_rate` when `writing`.
    pub fn run_until(&mut self, until_ms: u64, writing: bool) {
        while self.sim.now_ms < until_ms {
            let next = self.sim.now_ms + SLICE_MS;
            self.sim.run_until(next);
            self.slice += 1;
            self.deliver();
            for i in 0..self.logs.len() {
                self.coordinate(i, writing);
            }
        }
    }

    fn deliver(&mut self) {
        while self
            .queue
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= self.sim.now_ms)
        {
            let Reverse((at, seq, to_, from, msg)) = self.queue.pop().unwrap();
            if self.sim.hosts[to_].node.is_none() {
                continue;
            }
            if let Some(resume) = self.sim.hosts[to_]
                .paused_until
                .filter(|t| *t > self.sim.now_ms)
            {
                self.queue
                    .push(Reverse((resume.max(at), seq, to_, from, msg)));
                continue;
            }
            self.receive(to_, from, msg);
        }
    }

    fn coordinate(&mut self, i: usize, writing: bool) {
        if !self.live(i) {
            return;
        }
        let Some(view) = self.view(i) else { return };
        if view.role != Role::Coordinator {
            self.pending[i].clear();
            return;
        }
        if self.matched[i].0 != view.epoch {
            self.matched[i] = (view.epoch, BTreeMap::new());
            // Strict mode: the epoch's opening event (writer.rs), answered to no client.
            if self.sim.hosts[i].config.strict_cluster_size.is_some() {
                let mut log = self.logs[i].clone();
                log.push(Ev {
                    clock: log.len() as u64 + 1,
                    epoch: view.epoch,
                    id: self.next_id,
                });
                self.next_id += 1;
                self.set_log(i, log);
            }
        }
        if writing && self.sim.rng.gen_bool(self.write_rate) {
            let mut log = self.logs[i].clone();
            let ev = Ev {
                clock: log.len() as u64 + 1,
                epoch: view.epoch,
                id: self.next_id,
            };
            self.next_id += 1;
            log.push(ev);
            self.set_log(i, log);
            self.pending[i].push((ev.id, ev.clock));
        }
        if self.slice % PUSH_EVERY_SLICES == 0 {
            for j in (0..self.logs.len()).filter(|j| *j != i) {
                let own = self.logs[i].len() as u64;
                let from = self.matched[i].1.get(&j).map_or(own, |m| *m) + 1;
                if from > own + 1 {
                    // The replica holds events this coordinator does not (see replication.rs).
                    let log = self.logs[i].clone();
                    self.send(
                        i,
                        j,
                        DataMsg::Snapshot {
                            epoch: view.epoch,
                            log,
                        },
                    );
                    continue;
                }
                let prev = from
                    .checked_sub(2)
                    .and_then(|k| self.logs[i].get(k as usize))
                    .copied();
                let events = self.logs[i][(from - 1) as usize..].to_vec();
                self.send(
                    i,
                    j,
                    DataMsg::Append {
                        epoch: view.epoch,
                        prev,
                        events,
                    },
                );
            }
        }
        let others: usize = view
            .members
            .iter()
            .filter(|m| m.node.node_id != self.sim.hosts[i].node_id)
            .count();
        let needed = match self.sim.hosts[i].config.strict_cluster_size {
            Some(n) => n / 2,
            None => (others + view.missing).min(1),
        };
        if !view.settled {
            return;
        }
        let matched = &self.matched[i].1;
        let mut still = Vec::new();
        for (id, clock) in std::mem::take(&mut self.pending[i]) {
            if matched.values().filter(|m| **m >= clock).count() >= needed {
                self.acked.insert(id, i);
                self.ackers.entry(view.epoch).or_default().insert(i);
                self.acked_at_ms.insert(id, self.sim.now_ms);
            } else {
                still.push((id, clock));
            }
        }
        self.pending[i] = still;
    }

    fn receive(&mut self, at: usize, from: usize, msg: DataMsg) {
        let Some(view) = self.view(at) else { return };
        match msg {
            DataMsg::Append {
                epoch,
                prev,
                events,
            } => {
                if !self.accept_epoch(at, epoch, view.epoch) {
                    return;
                }
                let log = &self.logs[at];
                let applied = log.len() as u64;
                let diverged = |e: &Ev| log.get(e.clock as usize - 1).is_none_or(|own| own != e);
                if let Some(p) = prev {
                    if applied < p.clock {
                        return self.reply(at, from, epoch, applied, false);
                    }
                    if diverged(&p) {
                        return self.reply(at, from, epoch, applied, true);
                    }
                }
                if events.iter().filter(|e| e.clock <= applied).any(diverged) {
                    return self.reply(at, from, epoch, applied, true);
                }
                let mut log = log.clone();
                for e in events.into_iter().filter(|e| e.clock > applied) {
                    if e.clock != log.len() as u64 + 1 {
                        break;
                    }
                    log.push(e);
                }
                let applied = log.len() as u64;
                if applied != self.logs[at].len() as u64 {
                    self.set_log(at, log);
                }
                self.reply(at, from, epoch, applied, false);
            }
            DataMsg::Snapshot { epoch, log } => {
                if !self.accept_epoch(at, epoch, view.epoch) {
                    return;
                }
                let applied = log.len() as u64;
                self.set_log(at, log);
                self.reply(at, from, epoch, applied, false);
            }
            DataMsg::Reply {
                epoch,
                applied,
                diverged,
            } => {
                if view.role != Role::Coordinator
                    || view.epoch != epoch
                    || self.matched[at].0 != epoch
                {
                    return;
                }
                let own = self.logs[at].len() as u64;
                if diverged || applied > own {
                    let log = self.logs[at].clone();
                    self.send(at, from, DataMsg::Snapshot { epoch, log });
                } else {
                    self.matched[at].1.insert(from, applied);
                }
            }
        }
    }

    fn reply(&mut self, at: usize, to: usize, epoch: u64, applied: u64, diverged: bool) {
        self.send(
            at,
            to,
            DataMsg::Reply {
                epoch,
                applied,
                diverged,
            },
        );
    }

    /// Replicas refuse older epochs and pass newer ones to their core.
    fn accept_epoch(&mut self, at: usize, epoch: u64, ours: u64) -> bool {
        if epoch > ours {
            self.sim.input(at, Input::SawEpoch(epoch));
        }
        epoch >= ours
    }

    /// Checks that every live node holds the same log, in clock order, each write once.
    pub fn one_history(&self) -> Result<Vec<Ev>, String> {
        let live: Vec<usize> = (0..self.logs.len()).filter(|i| self.live(*i)).collect();
        let first = &self.logs[live[0]];
        for (k, e) in first.iter().enumerate() {
            if e.clock != k as u64 + 1 {
                return Err(format!("clock {} at position {k}", e.clock));
            }
        }
        let ids: BTreeSet<u64> = first.iter().map(|e| e.id).collect();
        if ids.len() != first.len() {
            return Err("a write appears twice".into());
        }
        for i in &live[1..] {
            if self.logs[*i] != *first {
                return Err(format!(
                    "node {i}'s log ({} events) differs from node {}'s ({} events)",
                    self.logs[*i].len(),
                    live[0],
                    first.len()
                ));
            }
        }
        Ok(first.clone())
    }

    /// An epoch in which two nodes acknowledged writes, if any.
    pub fn two_ackers_in_one_epoch(&self) -> Option<(u64, &BTreeSet<usize>)> {
        self.ackers
            .iter()
            .find(|(_, nodes)| nodes.len() > 1)
            .map(|(epoch, nodes)| (*epoch, nodes))
    }

    /// Acknowledged writes missing from `history`.
    pub fn lost(&self, history: &[Ev]) -> Vec<u64> {
        let kept: BTreeSet<u64> = history.iter().map(|e| e.id).collect();
        self.acked
            .keys()
            .filter(|id| !kept.contains(id))
            .copied()
            .collect()
    }
}
