//! The cluster cores on an in-memory network: seeded latency, jitter, loss, duplication,
//! partitions, one-way cuts, crashes, restarts and pauses. Deterministic: one seed, one history.

use idserver::address::{self, AddressFlags, HostAddresses};
use idserver::core::{CoreConfig, Input, Message, Node, Output, Role, View};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use uuid::Uuid;

/// One simulated host.
pub struct Host {
    pub node: Option<Node>,
    /// This node's settings (strict mode's N as its own flags give it).
    pub config: CoreConfig,
    pub node_id: Uuid,
    pub addr: SocketAddr,
    /// What the host's Redis would hold across crashes.
    pub stored_epoch: u64,
    pub clock: u64,
    /// Epoch of the host's last event.
    pub last_epoch: u64,
    pub paused_until: Option<u64>,
    pub restarts: u32,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at_ms: u64,
    seq: u64,
    to: usize,
    from: usize,
    msg: MessageBox,
}

/// Messages are not `Ord`; order deliveries by time and sequence only.
struct MessageBox(Message);
impl PartialEq for MessageBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for MessageBox {}
impl PartialOrd for MessageBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MessageBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// How nodes sit on hosts, as deployments have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every node on one host, one address, ports 5151, 5152, …
    OneHost,
    /// A host each, the same port.
    DistinctHosts,
    /// Two hosts sharing the nodes, ports differing on each.
    Mixed,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::OneHost, Shape::DistinctHosts, Shape::Mixed];

    /// Each node's address and its host's addresses.
    pub fn layout(self, n: usize) -> Vec<(SocketAddr, HostAddresses)> {
        (0..n)
            .map(|i| {
                let (ip, port) = match self {
                    Shape::OneHost => (Ipv4Addr::LOCALHOST, 5151 + i as u16),
                    Shape::DistinctHosts => (Ipv4Addr::new(198, 18, 0, 1 + i as u8), 5151),
                    Shape::Mixed => (
                        Ipv4Addr::new(198, 18, 0, 1 + (i % 2) as u8),
                        5151 + (i / 2) as u16,
                    ),
                };
                let host = HostAddresses {
                    local: vec![IpAddr::V4(ip), IpAddr::V4(Ipv4Addr::LOCALHOST)],
                    routed: None,
                };
                (SocketAddr::new(IpAddr::V4(ip), port), host)
            })
            .collect()
    }
}

/// How long one coordinator must stay agreed to count as the agreement.
pub const AGREEMENT_HOLD_MS: u64 = 200;

pub struct Sim {
    pub rng: SmallRng,
    pub now_ms: u64,
    pub hosts: Vec<Host>,
    pub config: CoreConfig,
    queue: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    /// Directed links that drop everything.
    pub cut: BTreeSet<(usize, usize)>,
    pub loss: f64,
    /// Chance that a datagram is delivered twice.
    pub duplicate: f64,
    pub latency_ms: (u64, u64),
    /// An on-path attacker: every datagram is also delivered to every other host, as if
    /// captured on its way and sent on to them (its sender's sealing is intact).
    pub redirect: bool,
    /// Every (epoch, node) that acted as coordinator, with the time.
    pub coordinators_seen: Vec<(u64, u64, usize)>,
    /// Print every node's role changes (`SIM_TRACE=1`).
    pub trace: bool,
    last_trace: BTreeMap<usize, String>,
}

impl Sim {
    pub fn new(seed: u64, hosts: usize, config: CoreConfig) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let hosts = (0..hosts)
            .map(|i| Host {
                node: None,
                config,
                node_id: Uuid::from_u128(rng.gen()),
                addr: SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16)),
                stored_epoch: 0,
                clock: 0,
                last_epoch: 0,
                paused_until: None,
                restarts: 0,
            })
            .collect();
        Sim {
            rng,
            now_ms: 1_000,
            hosts,
            config,
            queue: BinaryHeap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            loss: 0.0,
            duplicate: 0.0,
            latency_ms: (0, 1),
            redirect: false,
            coordinators_seen: Vec::new(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
            last_trace: BTreeMap::new(),
        }
    }

    /// A cluster laid out as `shape` says, every node started as the README tells users: the
    /// default listen address (0.0.0.0), `--peers` naming every member. Each node's address and
    /// strict-mode N come from the server's own `address` functions, as the binary gets them.
    pub fn shaped(seed: u64, n: usize, config: CoreConfig, strict: bool, shape: Shape) -> Sim {
        let mut sim = Sim::new(seed, n, config);
        let layout = shape.layout(n);
        let peers: Vec<SocketAddr> = layout.iter().map(|(addr, _)| *addr).collect();
        for (i, (addr, host)) in layout.iter().enumerate() {
            let flags = AddressFlags {
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()),
                advertise: None,
                mcast_if: None,
                peers: &peers,
            };
            let advertised = address::advertised(flags, host);
            assert_eq!(
                advertised, *addr,
                "{shape:?}: node {i} advertises another address"
            );
            sim.hosts[i].addr = advertised;
            sim.hosts[i].config.strict_cluster_size =
                strict.then(|| address::cluster_size(flags, host));
        }
        sim
    }

    pub fn start(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        let mut node = Node::new(host.config, host.node_id, host.addr);
        let (epoch, clock, last_epoch) = (host.stored_epoch, host.clock, host.last_epoch);
        let out = node.step(
            self.now_ms,
            Input::Start {
                epoch,
                clock,
                last_epoch,
            },
        );
        host.node = Some(node);
        host.paused_until = None;
        self.carry_out(i, out);
    }

    /// Feeds `input` to host `i`'s core (if it runs) and carries out what it says.
    pub fn input(&mut self, i: usize, input: Input) {
        if let Some(node) = self.hosts[i].node.as_mut() {
            let out = node.step(self.now_ms, input);
            self.carry_out(i, out);
        }
    }

    pub fn crash(&mut self, i: usize) {
        if self.trace {
            eprintln!("t={} node {i}: CRASH", self.now_ms);
            self.last_trace.remove(&i);
        }
        self.hosts[i].node = None;
    }

    /// Stops host `i` cleanly, as SIGTERM does: its core says LEAVE, then the process is gone.
    pub fn leave(&mut self, i: usize) {
        if self.trace {
            eprintln!("t={} node {i}: LEAVE", self.now_ms);
        }
        self.input(i, Input::Leave);
        self.hosts[i].node = None;
        self.last_trace.remove(&i);
    }

    pub fn restart(&mut self, i: usize) {
        self.hosts[i].restarts += 1;
        self.start(i);
    }

    pub fn pause(&mut self, i: usize, for_ms: u64) {
        if self.hosts[i].node.is_some() {
            self.hosts[i].paused_until = Some(self.now_ms + for_ms);
        }
    }

    /// Resumes every paused node now (SIGCONT); held datagrams are delivered right away.
    pub fn resume_all(&mut self) {
        let now = self.now_ms;
        let paused: BTreeSet<usize> = (0..self.hosts.len())
            .filter(|i| self.hosts[*i].paused_until.is_some_and(|t| t > now))
            .collect();
        for i in &paused {
            self.hosts[*i].paused_until = Some(now);
        }
        let queued: Vec<_> = std::mem::take(&mut self.queue).into_vec();
        self.queue = queued
            .into_iter()
            .map(|Reverse(d)| {
                let at_ms = if paused.contains(&d.to) {
                    d.at_ms.min(now)
                } else {
                    d.at_ms
                };
                Reverse(Delivery { at_ms, ..d })
            })
            .collect();
    }

    pub fn set_clock(&mut self, i: usize, clock: u64) {
        self.set_log(i, clock, 0);
    }

    /// Sets a host's last event: its clock and the epoch it was made in.
    pub fn set_log(&mut self, i: usize, clock: u64, epoch: u64) {
        self.hosts[i].clock = clock;
        self.hosts[i].last_epoch = epoch;
        if let Some(node) = self.hosts[i].node.as_mut() {
            let out = node.step(self.now_ms, Input::Applied { clock, epoch });
            self.carry_out(i, out);
        }
    }

    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.hosts.len() {
            if j != i {
                self.cut.insert((i, j));
                self.cut.insert((j, i));
            }
        }
    }

    pub fn split(&mut self, side: &[usize]) {
        for a in 0..self.hosts.len() {
            for b in 0..self.hosts.len() {
                if side.contains(&a) != side.contains(&b) {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// One random fault: a crash, a restart, a pause, an isolation, a one-way cut of every
    /// node's traffic towards one node, a split, a one-way cut between two nodes, or a heal.
    pub fn random_fault(&mut self, rng: &mut impl Rng) {
        let n = self.hosts.len();
        let i = rng.gen_range(0..n);
        match rng.gen_range(0..8) {
            0 => self.crash(i),
            1 => {
                if self.hosts[i].node.is_none() {
                    self.restart(i)
                }
            }
            2 => self.pause(i, rng.gen_range(50..1_000)),
            3 => self.isolate(i),
            4 => {
                for j in (0..n).filter(|j| *j != i) {
                    self.cut.insert((j, i));
                }
            }
            5 => {
                let side: Vec<usize> = (0..n).filter(|_| rng.gen_bool(0.5)).collect();
                self.split(&side)
            }
            6 => {
                let j = rng.gen_range(0..n);
                if i != j {
                    self.cut.insert((i, j));
                }
            }
            _ => self.heal(),
        }
    }

    pub fn heal(&mut self) {
        if self.trace {
            eprintln!("t={} HEAL", self.now_ms);
        }
        self.cut.clear();
    }

    fn live(&self, i: usize) -> bool {
        let h = &self.hosts[i];
        h.node.is_some() && h.paused_until.is_none_or(|t| t <= self.now_ms)
    }

    fn carry_out(&mut self, from: usize, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::PersistEpoch(epoch) => self.hosts[from].stored_epoch = epoch,
                Output::Send { to, msg } => {
                    if let Some(to) = self.hosts.iter().position(|h| h.addr == to) {
                        self.transmit(from, to, msg);
                    }
                }
                Output::Broadcast(msg) => {
                    for to in 0..self.hosts.len() {
                        if to != from {
                            self.transmit(from, to, msg.clone());
                        }
                    }
                }
            }
        }
    }

    fn transmit(&mut self, from: usize, to: usize, msg: Message) {
        if self.redirect {
            for other in (0..self.hosts.len()).filter(|k| *k != from && *k != to) {
                self.deliver(from, other, msg.clone());
            }
        }
        if self.cut.contains(&(from, to)) || self.rng.gen_bool(self.loss) {
            return;
        }
        self.deliver(from, to, msg);
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Message) {
        let copies = if self.rng.gen_bool(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = self.latency_ms;
            let at_ms = self.now_ms + self.rng.gen_range(lo..=hi.max(lo));
            self.seq += 1;
            self.queue.push(Reverse(Delivery {
                at_ms,
                seq: self.seq,
                to,
                from,
                msg: MessageBox(msg.clone()),
            }));
        }
    }

    fn next_timer(&self) -> Option<(u64, usize)> {
        (0..self.hosts.len())
            .filter_map(|i| {
                let h = &self.hosts[i];
                let node = h.node.as_ref()?;
                let at = node.poll_timeout()?.max(h.paused_until.unwrap_or(0));
                Some((at, i))
            })
            .min()
    }

    /// Runs until `until_ms`, delivering messages and firing timers in time order.
    pub fn run_until(&mut self, until_ms: u64) {
        loop {
            let message_at = self.queue.peek().map(|Reverse(d)| d.at_ms);
            let timer = self.next_timer();
            let next = match (message_at, timer) {
                (Some(m), Some((t, _))) => m.min(t),
                (Some(m), None) => m,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until_ms {
                break;
            }
            self.now_ms = self.now_ms.max(next);
            if message_at == Some(next) {
                let Reverse(d) = self.queue.pop().unwrap();
                if self.hosts[d.to].node.is_none() {
                    continue;
                }
                if let Some(resume) = self.hosts[d.to].paused_until.filter(|t| *t > self.now_ms) {
                    // The kernel holds datagrams for a stopped process.
                    self.queue.push(Reverse(Delivery { at_ms: resume, ..d }));
                    continue;
                }
                let src = self.hosts[d.from].addr;
                let node = self.hosts[d.to].node.as_mut().unwrap();
                let out = node.step(self.now_ms, Input::Message { src, msg: d.msg.0 });
                self.carry_out(d.to, out);
                self.record(d.to);
            } else if let Some((_, i)) = timer {
                let node = self.hosts[i].node.as_mut().unwrap();
                let out = node.step(self.now_ms, Input::Tick);
                self.carry_out(i, out);
                self.record(i);
            }
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    fn record(&mut self, i: usize) {
        let node = self.hosts[i].node.as_ref().unwrap();
        if self.trace {
            let v = node.view();
            let line = format!(
                "{} rank={:?} epoch={} rtt={} failed={} coord={:?}",
                v.role.as_str(),
                v.me.rank,
                v.epoch,
                v.rtt_ms,
                v.failed_rounds,
                v.coordinator
                    .and_then(|c| self.hosts.iter().position(|h| h.node_id == c.node_id))
            );
            if self.last_trace.get(&i) != Some(&line) {
                eprintln!("t={} node {i}: {line}", self.now_ms);
                self.last_trace.insert(i, line);
            }
        }
        if node.view().role == Role::Coordinator {
            let epoch = node.view().epoch;
            self.coordinators_seen.push((self.now_ms, epoch, i));
        }
    }

    pub fn view(&self, i: usize) -> Option<View> {
        self.hosts[i].node.as_ref().map(Node::view)
    }

    pub fn live_views(&self) -> Vec<(usize, View)> {
        (0..self.hosts.len())
            .filter(|i| self.live(*i))
            .filter_map(|i| self.view(i).map(|v| (i, v)))
            .collect()
    }

    pub fn elections(&self) -> u64 {
        self.hosts
            .iter()
            .filter_map(|h| h.node.as_ref())
            .map(|n| n.view().elections_started)
            .sum()
    }

    /// The one coordinator every live node agrees on, or why there is none.
    pub fn agreed_coordinator(&self) -> Result<usize, String> {
        let views = self.live_views();
        let coordinators: Vec<usize> = views
            .iter()
            .filter(|(_, v)| v.role == Role::Coordinator)
            .map(|(i, _)| *i)
            .collect();
        let [c] = coordinators[..] else {
            return Err(format!(
                "coordinators {coordinators:?}; {}",
                self.describe()
            ));
        };
        let id = self.hosts[c].node_id;
        for (i, v) in &views {
            let follows = v.role == Role::Coordinator || v.role == Role::Follower;
            if !follows || v.coordinator.map(|n| n.node_id) != Some(id) {
                return Err(format!(
                    "node {i} follows {:?}, not {c}; {}",
                    v.coordinator,
                    self.describe()
                ));
            }
        }
        Ok(c)
    }

    /// Ranks of the live nodes, which must be distinct.
    pub fn ranks(&self) -> Result<BTreeMap<u32, usize>, String> {
        let mut ranks = BTreeMap::new();
        for (i, v) in self.live_views() {
            let rank =
                v.me.rank
                    .ok_or_else(|| format!("node {i} has no rank; {}", self.describe()))?;
            if let Some(other) = ranks.insert(rank, i) {
                return Err(format!(
                    "nodes {other} and {i} both hold rank {rank}; {}",
                    self.describe()
                ));
            }
        }
        Ok(ranks)
    }

    pub fn describe(&self) -> String {
        let mut out = format!("t={}ms:", self.now_ms);
        for (i, h) in self.hosts.iter().enumerate() {
            match &h.node {
                None => out += &format!(" [{i} down]"),
                Some(n) => {
                    let v = n.view();
                    out += &format!(
                        " [{i} {} rank={:?} epoch={} clock={} coord={:?}{}]",
                        v.role.as_str(),
                        v.me.rank,
                        v.epoch,
                        v.clock,
                        v.coordinator
                            .and_then(|c| self.hosts.iter().position(|h| h.node_id == c.node_id)),
                        if h.paused_until.is_some_and(|t| t > self.now_ms) {
                            " paused"
                        } else {
                            ""
                        }
                    )
                }
            }
        }
        out
    }

    /// Time until every live node agrees on one coordinator that then stays agreed for
    /// [`AGREEMENT_HOLD_MS`] (an instant where all still name an old coordinator while an
    /// election is under way is no agreement), checking every `step_ms`.
    pub fn time_to_agreement(&mut self, limit_ms: u64, step_ms: u64) -> Option<u64> {
        let start = self.now_ms;
        // Deliver what is due now first: a node resumed this instant has yet to notice it was
        // paused (and step down), so the views of this instant may be stale.
        self.run_until(start);
        let mut watch = AgreementWatch::default();
        while self.now_ms - start <= limit_ms + AGREEMENT_HOLD_MS {
            if let Some(at) = watch.observe(self) {
                return Some(at - start);
            }
            let next = self.now_ms + step_ms;
            self.run_until(next);
        }
        None
    }
}

/// Watches for one coordinator that every live node names and that stays so for
/// [`AGREEMENT_HOLD_MS`].
#[derive(Debug, Default)]
pub struct AgreementWatch {
    since: Option<(u64, usize)>,
}

impl AgreementWatch {
    /// Looks at the cluster now: once an agreement has held long enough, when it began.
    pub fn observe(&mut self, sim: &Sim) -> Option<u64> {
        match (sim.agreed_coordinator(), self.since) {
            (Ok(c), Some((at, held))) if held == c => {
                (sim.now_ms - at >= AGREEMENT_HOLD_MS).then_some(at)
            }
            (Ok(c), _) => {
                self.since = Some((sim.now_ms, c));
                None
            }
            (Err(_), _) => {
                self.since = None;
                None
            }
        }
    }
}

/// The seeds to run: `SIM_SEED` alone (a replay), else `SIM_SCHEDULES` of them or
/// `default_count`.
pub fn seeds(default_count: u64) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("SIM_SCHEDULES").map_or(default_count, |n| {
                n.parse().expect("SIM_SCHEDULES is a number")
            });
            (0..count).collect()
        }
    }
}

/// Runs one schedule, turning a panic (an invariant the server's code asserts, or the
/// simulator's) into a failure of that seed, so that the run goes on and lists it.
pub fn run_seed<T>(seed: u64, schedule: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(schedule)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed} panicked: {why}"))
        }
    }
}
