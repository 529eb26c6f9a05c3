//! The data plane on top of the simulated cores, deciding with the server's own replication
//! core (`idserver::core::replication`): each coordinator's writer is a [`WriterState`], each
//! of its links to a replica a [`Progress`] over a modelled connection, its acks an [`Acks`]
//! quorum, and each replica takes batches by [`accept`]. Only the I/O is modelled: the store is
//! a log in memory, and a connection is an ordered channel (TCP): a lost segment arrives late,
//! a cut holds the channel until it heals or the link's answer timeout gives the connection
//! up, a crashed peer resets it, requests already sent on a given-up connection may still
//! arrive (as duplicates) while their answers are dropped.

use super::Sim;
use idserver::core::replication::{
    accept, check_epoch, Acceptance, Acks, Batch, Entry, EpochCheck, LinkLimits, Next, Progress,
    ReplicaStatus, Replication, WriterState,
};
use idserver::core::{Input, Role, View};
use idserver::limits::{FORWARD_TIMEOUT_MS, REPLICATION_PROBE_MS};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One event: its place, the epoch it was made in, and a unique write id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ev {
    pub clock: u64,
    pub epoch: u64,
    pub id: u64,
}

impl Entry for Ev {
    fn clock(&self) -> u64 {
        self.clock
    }
    fn epoch(&self) -> u64 {
        self.epoch
    }
    fn same_as(&self, other: &Ev) -> bool {
        self == other
    }
}

#[derive(Debug, Clone)]
enum DataMsg {
    Replicate {
        epoch: u64,
        seq: u64,
        prev: Option<Ev>,
        events: Vec<Ev>,
    },
    Snapshot {
        epoch: u64,
        log: Vec<Ev>,
    },
    Replicated {
        seq: u64,
        applied: u64,
        status: ReplicaStatus,
        snapshot: bool,
    },
    /// The replica refused the request (an older epoch): the link's connection fails.
    Refused,
}

/// A connection's direction: (from, to, connection number).
type Channel = (usize, usize, u64);

/// Pause before reconnecting (as the server's link does).
const RECONNECT_PAUSE_MS: u64 = 50;
/// How late a lost segment arrives (a TCP retransmission).
const RETRANSMIT_MS: u64 = 200;
const SLICE_MS: u64 = 2;

/// Smaller bounds than the server's, so that short simulated runs reach the window, batching
/// and full-sync paths, yet large enough to keep up with the clients' writes at 100 ms round
/// trips (32 events per round trip against 15 written).
fn limits() -> LinkLimits {
    LinkLimits {
        batch_max: 16,
        in_flight_max: 2,
        full_sync_lag: 200,
    }
}

/// The coordinator's link to one replica.
struct Link {
    progress: Progress,
    /// The connection in use; None while (re)connecting, from the given time on.
    conn: Option<u64>,
    connect_at_ms: u64,
    seq: u64,
    /// When the link last sent or heard something (the probe timer).
    active_ms: u64,
    /// When the oldest unanswered request was sent (the answer timeout).
    waiting_since_ms: Option<u64>,
}

/// A node's coordination in one epoch.
struct Coordination {
    epoch: u64,
    links: BTreeMap<usize, Link>,
    acks: Acks,
    /// Writes awaiting acknowledgement (id, clock).
    pending: Vec<(u64, u64)>,
}

pub struct DataSim {
    pub sim: Sim,
    pub logs: Vec<Vec<Ev>>,
    /// Write ids acknowledged to a client, with the node that acknowledged them.
    pub acked: BTreeMap<u64, usize>,
    /// When each write was acknowledged.
    pub acked_at_ms: BTreeMap<u64, u64>,
    /// Per epoch, the nodes that acknowledged writes as its coordinator.
    pub ackers: BTreeMap<u64, BTreeSet<usize>>,
    writers: Vec<WriterState>,
    coordinations: Vec<Option<Coordination>>,
    /// Per host, the incarnation last seen running (its restart count), None while down: a
    /// crash or a restart forgets the node's memory, not its store.
    seen: Vec<Option<u32>>,
    channels: BTreeMap<Channel, VecDeque<(u64, DataMsg)>>,
    next_conn: u64,
    next_id: u64,
    /// Chance per slice that a client writes to the coordinator.
    pub write_rate: f64,
    /// Chance that a request is also delivered again later on a given-up connection.
    pub duplicate: f64,
}

impl DataSim {
    pub fn new(sim: Sim) -> DataSim {
        let n = sim.hosts.len();
        let writers = sim
            .hosts
            .iter()
            .map(|h| WriterState::new(h.config.strict_cluster_size.is_some()))
            .collect();
        DataSim {
            logs: vec![Vec::new(); n],
            acked: BTreeMap::new(),
            acked_at_ms: BTreeMap::new(),
            ackers: BTreeMap::new(),
            writers,
            coordinations: (0..n).map(|_| None).collect(),
            seen: sim.hosts.iter().map(incarnation).collect(),
            channels: BTreeMap::new(),
            next_conn: 1,
            next_id: 1,
            write_rate: 0.3,
            duplicate: 0.02,
            sim,
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

    fn host_of(&self, node_id: uuid::Uuid) -> Option<usize> {
        self.sim.hosts.iter().position(|h| h.node_id == node_id)
    }

    fn rule(&self, i: usize) -> Replication {
        Replication {
            min_acks: 1,
            strict_cluster_size: self.sim.hosts[i].config.strict_cluster_size,
        }
    }

    /// Appends to host `i`'s log (its store applies in clock order).
    fn append(&mut self, i: usize, events: &[Ev]) {
        let log = &mut self.logs[i];
        for e in events {
            assert_eq!(
                e.clock,
                log.len() as u64 + 1,
                "clocks are consecutive on apply"
            );
            assert!(
                log.last().is_none_or(|last| last.epoch <= e.epoch),
                "epochs never decrease along a history"
            );
            log.push(*e);
        }
        let (clock, epoch) = log.last().map_or((0, 0), |e| (e.clock, e.epoch));
        self.sim.set_log(i, clock, epoch);
    }

    /// Replaces host `i`'s log (a full sync).
    fn install(&mut self, i: usize, log: Vec<Ev>) {
        let (clock, epoch) = log.last().map_or((0, 0), |e| (e.clock, e.epoch));
        self.logs[i] = log;
        self.sim.set_log(i, clock, epoch);
    }

    /// Runs until `until_ms`, clients writing with `write_rate` when `writing`.
    pub fn run_until(&mut self, until_ms: u64, writing: bool) {
        while self.sim.now_ms < until_ms {
            let next = self.sim.now_ms + SLICE_MS;
            self.sim.run_until(next);
            self.forget_crashed();
            self.deliver();
            for i in 0..self.logs.len() {
                self.coordinate(i, writing);
            }
        }
    }

    /// A node that crashed or restarted since the last slice forgets its writer, links and
    /// waiting writes; its connections reset.
    fn forget_crashed(&mut self) {
        for i in 0..self.logs.len() {
            let host = &self.sim.hosts[i];
            let now_seen = incarnation(host);
            if now_seen == self.seen[i] {
                continue;
            }
            self.seen[i] = now_seen;
            self.coordinations[i] = None;
            // The others' connections to it reset (the next read or write fails at once).
            let now = self.sim.now_ms;
            for c in self.coordinations.iter_mut().flatten() {
                if let Some(link) = c.links.get_mut(&i).filter(|l| l.conn.is_some()) {
                    reconnect(link, now);
                }
            }
            self.writers[i] = WriterState::new(host.config.strict_cluster_size.is_some());
            // Its connections close: what it had not read is gone (requests it sent may still
            // arrive).
            self.channels.retain(|(_, to, _), _| *to != i);
        }
    }

    fn send(&mut self, from: usize, to: usize, conn: u64, msg: DataMsg) {
        let (lo, hi) = self.sim.latency_ms;
        let mut at = self.sim.now_ms + self.sim.rng.gen_range(lo..=hi.max(lo));
        if self.sim.rng.gen_bool(self.sim.loss) {
            at += RETRANSMIT_MS;
        }
        let channel = self.channels.entry((from, to, conn)).or_default();
        // One connection delivers in order.
        if let Some((last, _)) = channel.back() {
            at = at.max(*last);
        }
        channel.push_back((at, msg));
    }

    /// Delivers what is due on every connection, in order, unless a cut holds it or its
    /// receiver is stopped.
    fn deliver(&mut self) {
        let now = self.sim.now_ms;
        let due: Vec<Channel> = self
            .channels
            .iter()
            .filter(|((from, to, _), queue)| {
                queue.front().is_some_and(|(at, _)| *at <= now)
                    && !self.sim.cut.contains(&(*from, *to))
                    && self.live(*to)
            })
            .map(|(channel, _)| *channel)
            .collect();
        for channel in due {
            let (from, to, conn) = channel;
            while let Some(queue) = self.channels.get_mut(&channel) {
                if queue.front().is_none_or(|(at, _)| *at > now) {
                    break;
                }
                let (_, msg) = queue.pop_front().expect("looked at above");
                self.receive(to, from, conn, msg);
            }
        }
        self.channels.retain(|_, q| !q.is_empty());
    }

    fn receive(&mut self, at: usize, from: usize, conn: u64, msg: DataMsg) {
        match msg {
            DataMsg::Replicate {
                epoch,
                seq,
                prev,
                events,
            } => {
                if !self.epoch_taken(at, epoch) {
                    return self.send(at, from, conn, DataMsg::Refused);
                }
                let log = &self.logs[at];
                let applied = log.len() as u64;
                let holds = |e: &Ev| {
                    log.get(e.clock as usize - 1)
                        .is_some_and(|own| own.same_as(e))
                };
                let status = match accept(applied, prev.as_ref(), &events, holds) {
                    Acceptance::Gap => ReplicaStatus::Gap,
                    Acceptance::Diverged { at } => ReplicaStatus::Diverged { at },
                    Acceptance::Apply { from } => {
                        if from < events.len() {
                            self.append(at, &events[from..]);
                        }
                        ReplicaStatus::Ok
                    }
                };
                let applied = self.logs[at].len() as u64;
                let reply = DataMsg::Replicated {
                    seq,
                    applied,
                    status,
                    snapshot: false,
                };
                self.send(at, from, conn, reply);
            }
            DataMsg::Snapshot { epoch, log } => {
                if !self.epoch_taken(at, epoch) {
                    return self.send(at, from, conn, DataMsg::Refused);
                }
                let applied = log.len() as u64;
                self.install(at, log);
                let reply = DataMsg::Replicated {
                    seq: 0,
                    applied,
                    status: ReplicaStatus::Ok,
                    snapshot: true,
                };
                self.send(at, from, conn, reply);
            }
            DataMsg::Replicated {
                seq,
                applied,
                status,
                snapshot,
            } => self.answered(at, from, conn, seq, applied, status, snapshot),
            DataMsg::Refused => {
                let now = self.sim.now_ms;
                if let Some(link) = self.link(at, from, conn) {
                    reconnect(link, now);
                }
            }
        }
    }

    /// The replica's epoch check: older refused, newer news to its core.
    fn epoch_taken(&mut self, at: usize, epoch: u64) -> bool {
        let Some(ours) = self.sim.view(at).map(|v| v.epoch) else {
            return false;
        };
        match check_epoch(ours, epoch) {
            EpochCheck::Stale | EpochCheck::OutOfRange => false,
            EpochCheck::Current => true,
            EpochCheck::Newer => {
                self.sim.input(at, Input::SawEpoch(epoch));
                true
            }
        }
    }

    /// The link of coordinator `at` to `replica` on connection `conn`, if it still uses it.
    fn link(&mut self, at: usize, replica: usize, conn: u64) -> Option<&mut Link> {
        self.coordinations[at]
            .as_mut()?
            .links
            .get_mut(&replica)
            .filter(|l| l.conn == Some(conn))
    }

    #[allow(clippy::too_many_arguments)]
    fn answered(
        &mut self,
        at: usize,
        replica: usize,
        conn: u64,
        seq: u64,
        applied: u64,
        status: ReplicaStatus,
        snapshot: bool,
    ) {
        let now = self.sim.now_ms;
        let Some(link) = self.link(at, replica, conn) else {
            return;
        };
        link.active_ms = now;
        let ack = if snapshot {
            link.progress.snapshot_answered(applied, status)
        } else {
            match link.progress.answered(seq, applied, status) {
                Ok(ack) => ack,
                Err(_) => {
                    reconnect(link, now);
                    None
                }
            }
        };
        link.waiting_since_ms = (link.progress.in_flight() > 0).then_some(now);
        let epoch = link.progress.epoch();
        if let (Some(ack), Some(c)) = (ack, self.coordinations[at].as_mut()) {
            let node = self.sim.hosts[replica].node_id;
            c.acks.record(node, epoch, ack);
        }
    }

    /// Runs without new writes until every live node holds one history, for at most
    /// `within_ms`: that history, or why there is none.
    pub fn settle(&mut self, within_ms: u64) -> Result<Vec<Ev>, String> {
        let settle_by = self.sim.now_ms + within_ms;
        loop {
            let t = self.sim.now_ms + 100;
            self.run_until(t, false);
            match self.one_history() {
                Ok(history) => return Ok(history),
                Err(e) if self.sim.now_ms >= settle_by => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// `idclient --step-down` at the coordinator, as the server's shell does it: with writes
    /// held (nothing else happens between the check and the input here), hand over to the
    /// most caught-up member if it acknowledged everything this node decided. Returns the
    /// successor's host, or None if there is no live coordinator or no caught-up follower.
    pub fn hand_over(&mut self) -> Option<usize> {
        let i = (0..self.sim.hosts.len()).find(|i| {
            self.live(*i)
                && self
                    .sim
                    .view(*i)
                    .is_some_and(|v| v.role == Role::Coordinator)
        })?;
        let view = self.sim.view(i)?;
        let c = self.coordinations[i]
            .as_ref()
            .filter(|c| c.epoch == view.epoch)?;
        let (successor, acked) = c.acks.most_caught_up(self.sim.hosts[i].node_id, &view)?;
        if acked < self.logs[i].len() as u64 {
            return None;
        }
        let to = self.host_of(successor.node_id)?;
        self.sim.input(
            i,
            Input::HandOver {
                to: successor.node_id,
            },
        );
        Some(to)
    }

    /// Host `i`'s writer, links and acks for one slice.
    fn coordinate(&mut self, i: usize, writing: bool) {
        if !self.live(i) {
            return;
        }
        let Some(view) = self.sim.view(i) else { return };
        if view.role != Role::Coordinator {
            self.coordinations[i] = None;
            return;
        }
        if self.coordinations[i]
            .as_ref()
            .is_none_or(|c| c.epoch != view.epoch)
        {
            self.coordinations[i] = Some(Coordination {
                epoch: view.epoch,
                links: BTreeMap::new(),
                acks: Acks::default(),
                pending: Vec::new(),
            });
        }
        self.write(i, &view, writing);
        self.keep_links(i, &view);
        let replicas: Vec<usize> = self.coordinations[i]
            .as_ref()
            .map(|c| c.links.keys().copied().collect())
            .unwrap_or_default();
        for j in replicas {
            self.drive_link(i, j);
        }
        self.acknowledge(i, &view);
    }

    /// The writer: opens the epoch (strict mode) and makes a client's write.
    fn write(&mut self, i: usize, view: &View, writing: bool) {
        let mut batch = self.writers[i].batch(view, false);
        if let Batch::Open { epoch } = batch {
            let clock = self.logs[i].len() as u64 + 1;
            let id = self.take_id();
            self.append(i, &[Ev { clock, epoch, id }]);
            self.writers[i].opened(epoch, clock);
            batch = self.writers[i].batch(view, false);
        }
        if !(writing && self.sim.rng.gen_bool(self.write_rate)) {
            return;
        }
        if batch == Batch::Write {
            let clock = self.logs[i].len() as u64 + 1;
            let id = self.take_id();
            self.append(
                i,
                &[Ev {
                    clock,
                    epoch: view.epoch,
                    id,
                }],
            );
            if let Some(c) = self.coordinations[i].as_mut() {
                c.pending.push((id, clock));
            }
        }
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// One link per other member (as the server's `manage` keeps them).
    fn keep_links(&mut self, i: usize, view: &View) {
        let wanted: BTreeSet<usize> = view
            .members
            .iter()
            .filter_map(|m| self.host_of(m.node.node_id))
            .filter(|j| *j != i)
            .collect();
        let now = self.sim.now_ms;
        let Some(c) = self.coordinations[i].as_mut() else {
            return;
        };
        c.links.retain(|j, _| wanted.contains(j));
        let members: BTreeSet<uuid::Uuid> = view.members.iter().map(|m| m.node.node_id).collect();
        c.acks.retain(|id| members.contains(id));
        for j in wanted {
            c.links.entry(j).or_insert_with(|| Link {
                progress: Progress::new(view.epoch, limits()),
                conn: None,
                connect_at_ms: now,
                seq: 0,
                active_ms: now,
                waiting_since_ms: None,
            });
        }
    }

    /// The link's timers, then whatever its progress says to send.
    fn drive_link(&mut self, i: usize, j: usize) {
        let now = self.sim.now_ms;
        let replica_up = self.sim.hosts[j].node.is_some();
        let Some(link) = self.coordinations[i]
            .as_mut()
            .and_then(|c| c.links.get_mut(&j))
        else {
            return;
        };
        // A silent replica's connection is given up (a crashed one's was reset when it
        // crashed: see `forget_crashed`).
        let silent = link
            .waiting_since_ms
            .is_some_and(|since| now >= since + FORWARD_TIMEOUT_MS);
        if link.conn.is_some() && silent {
            reconnect(link, now);
        }
        if link.conn.is_none() {
            if now < link.connect_at_ms || !replica_up {
                return;
            }
            link.conn = Some(self.next_conn);
            self.next_conn += 1;
            link.progress.reset();
            link.active_ms = now;
        }
        if link.progress.in_flight() == 0 && now >= link.active_ms + REPLICATION_PROBE_MS {
            link.progress.idle();
            link.active_ms = now;
        }
        let decided = self.logs[i].len() as u64;
        loop {
            let Some(link) = self.coordinations[i]
                .as_mut()
                .and_then(|c| c.links.get_mut(&j))
            else {
                return;
            };
            let conn = link.conn.expect("connected above");
            let send = link.progress.next(decided);
            let epoch = link.progress.epoch();
            let msg = match send {
                Next::Wait => return,
                Next::Snapshot => DataMsg::Snapshot {
                    epoch,
                    log: self.logs[i].clone(),
                },
                Next::Probe { prev } => {
                    link.seq += 1;
                    link.progress.sent(link.seq, send);
                    DataMsg::Replicate {
                        epoch,
                        seq: link.seq,
                        prev: prev.checked_sub(1).map(|k| self.logs[i][k as usize]),
                        events: Vec::new(),
                    }
                }
                Next::Events { from, to } => {
                    link.seq += 1;
                    link.progress.sent(link.seq, send);
                    DataMsg::Replicate {
                        epoch,
                        seq: link.seq,
                        prev: (from - 1).checked_sub(1).map(|k| self.logs[i][k as usize]),
                        events: self.logs[i][(from - 1) as usize..to as usize].to_vec(),
                    }
                }
            };
            link.active_ms = now;
            if link.waiting_since_ms.is_none() {
                link.waiting_since_ms = Some(now);
            }
            // A request also delivered later on a given-up connection (a duplicate).
            if matches!(msg, DataMsg::Replicate { .. }) && self.sim.rng.gen_bool(self.duplicate) {
                let stale = self.next_conn;
                self.next_conn += 1;
                self.send(i, j, stale, msg.clone());
            }
            self.send(i, j, conn, msg);
        }
    }

    /// Answers the waiting writes the acks allow (as `Replicator::wait_acked` does).
    fn acknowledge(&mut self, i: usize, view: &View) {
        let me = self.sim.hosts[i].node_id;
        let rule = self.rule(i);
        let now = self.sim.now_ms;
        let Some(c) = self.coordinations[i].as_mut() else {
            return;
        };
        let acked = c.acks.quorum(me, view, &rule).acked;
        let (done, still): (Vec<_>, Vec<_>) =
            c.pending.drain(..).partition(|(_, clock)| *clock <= acked);
        c.pending = still;
        for (id, clock) in done {
            let event = self.logs[i][clock as usize - 1];
            assert_eq!(
                (event.id, event.epoch),
                (id, view.epoch),
                "a coordinator acknowledges only its own epoch's events"
            );
            self.acked.insert(id, i);
            self.ackers.entry(view.epoch).or_default().insert(i);
            self.acked_at_ms.insert(id, now);
        }
    }

    /// Checks that every live node holds the same log, in clock order (Lamport order: the
    /// clocks count up one by one, epochs never go down), each write once.
    pub fn one_history(&self) -> Result<Vec<Ev>, String> {
        let live: Vec<usize> = (0..self.logs.len()).filter(|i| self.live(*i)).collect();
        let first = &self.logs[live[0]];
        for (k, e) in first.iter().enumerate() {
            if e.clock != k as u64 + 1 {
                return Err(format!("clock {} at position {k}", e.clock));
            }
            if k > 0 && first[k - 1].epoch > e.epoch {
                return Err(format!("epoch goes down at clock {}", e.clock));
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

/// Which incarnation of its node a host runs (its restart count), None while it is down.
fn incarnation(host: &super::Host) -> Option<u32> {
    host.node.as_ref().map(|_| host.restarts)
}

/// Gives the link's connection up; it reconnects after a pause.
fn reconnect(link: &mut Link, now: u64) {
    link.conn = None;
    link.connect_at_ms = now + RECONNECT_PAUSE_MS;
    link.waiting_since_ms = None;
    link.progress.reset();
}
