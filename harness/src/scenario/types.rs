//! A scenario as the runner uses it, checked: the cluster, the steps with their actions, the
//! conditions awaited and the final checks. Built by [`super::parse`].

use idserver::core::Role;
use serde::Deserialize;
use std::path::PathBuf;

/// One scenario, checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name (the file's stem unless `name` is given).
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Nodes `n1`..`nN`.
    pub nodes: u32,
    /// `--mode` of every node.
    pub mode: Mode,
    /// `--min-acks` of every node (the server's default if absent).
    pub min_acks: Option<u32>,
    /// The seed pinned in the file (`--seed` overrides it).
    pub seed: Option<u64>,
    /// Part of the long tier (`idlab run --long`).
    pub long: bool,
    /// How nodes find each other.
    pub discovery: Discovery,
    /// Where nodes run: a host each, or all on one host.
    pub layout: Layout,
    /// Credentials (the default) or none.
    pub security: Security,
    /// Which build the nodes start from (`upgrade` steps move them to the current one).
    pub build: Build,
    /// How each node gets its Redis (`idlab run --redis` overrides it).
    pub redis: RedisMode,
    /// Whether a `rogue` host is needed (some step attacks from it).
    pub rogue: bool,
    /// Longest the scenario may run, in seconds.
    pub timeout_s: u64,
    /// Heal, resume and restart everything before the final checks.
    pub recover: bool,
    /// Link conditions every node's link starts with.
    pub link: LinkSpec,
    /// Client hosts (`client`, `client2`, …) the workload runs from.
    pub client_hosts: u32,
    /// What happens, in order.
    pub steps: Vec<Step>,
    /// What must hold (or is expected not to) over the whole run.
    pub checks: Vec<Check>,
}

/// The two replication modes of `idserver --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whitepaper's rules.
    Whitepaper,
    /// Majority votes and acks.
    Strict,
}

impl Mode {
    /// As `idserver --mode` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Whitepaper => "whitepaper",
            Mode::Strict => "strict",
        }
    }
}

/// How nodes find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Every node gets the list of all nodes (`--peers`).
    Peers,
    /// Multicast on the host's lab interface (`--mcast`, `--mcast-if`).
    Multicast,
}

/// Where the nodes run. Either way each starts as the README tells users: the default listen
/// address (0.0.0.0) and `--peers` naming every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A host (network namespace, address) each, all on port 5151.
    Hosts,
    /// One host for all: one address, ports 5151, 5152, … Nodes talk over loopback, so there
    /// is no link between them to cut or slow.
    OneHost,
}

/// Whether nodes run with credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// A CA, node certificates and a cluster key minted for the run: mutual TLS between
    /// nodes, TLS to clients, sealed datagrams (`idserver`'s default).
    #[default]
    Tls,
    /// `--insecure-plaintext` everywhere.
    InsecurePlaintext,
}

/// How each node gets its Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// `idserver` starts its own `redis-server` as a child process (its default).
    #[default]
    Process,
    /// A container per node (a host of its own on the lab bridge, `n1-redis`), which the node
    /// uses with `--redis redis://…`.
    Container,
}

impl RedisMode {
    /// As scenario files and `idlab run --redis` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Process => "process",
            RedisMode::Container => "container",
        }
    }
}

/// Which `idserver` build nodes start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Build {
    /// The build under test (`idlab --idserver`).
    #[default]
    Current,
    /// The previous release (`idlab --previous-idserver`): for rolling upgrades.
    Previous,
}

/// Link conditions for one direction or both.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkSpec {
    /// One-way delay.
    pub latency_ms: u32,
    /// Uniform jitter around the delay.
    pub jitter_ms: u32,
    /// Packets dropped, in percent.
    pub loss_pct: f64,
    /// Bandwidth cap (0: none).
    pub rate_mbit: u32,
}

/// Where in the file something was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
}

/// One step, with where it was written.
#[derive(Debug, Clone)]
pub struct Step {
    /// Where its `[[step]]` header is.
    pub at: Location,
    /// What it does.
    pub action: Action,
}

/// A node named in a scenario, resolved when the step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `n1`, `n2`, …
    Node(u32),
    /// Whichever node all live nodes name as coordinator (or, with several coordinators, the
    /// one of the highest epoch).
    Coordinator,
    /// The live follower with the lowest rank.
    Follower,
    /// The live node holding this rank.
    Rank(u32),
    /// A node remembered by an earlier step's `label`.
    Label(String),
    /// A client host (0: `client`, 1: `client2`, …); only in partitions.
    Client(u32),
    /// Every node no other side names (only in `sides`).
    Others,
    /// A node's Redis container (`redis:n1`, `redis:coordinator`; only in partitions, with
    /// Redis in containers).
    Redis(Box<Selector>),
}

/// One of the actions a step takes.
#[derive(Debug, Clone)]
pub enum Action {
    /// Start nodes (all by default), `stagger_ms` apart.
    Start {
        /// Which.
        nodes: Vec<Selector>,
        /// Pause between two starts.
        stagger_ms: u64,
    },
    /// A process signal or lifecycle change to one node.
    Node {
        /// Which change.
        change: NodeChange,
        /// Which node.
        node: Selector,
        /// Remember the node under this name.
        label: Option<String>,
    },
    /// Cut links.
    Partition {
        /// Who cannot reach whom.
        shape: PartitionShape,
        /// Drop packets or reject them.
        reject: bool,
        /// Remember the isolated node under this name.
        label: Option<String>,
    },
    /// Undo every partition.
    Heal,
    /// Change link conditions of some nodes' links.
    Link {
        /// Which links (all nodes if empty).
        nodes: Vec<Selector>,
        /// New conditions (`None`: back to the scenario's defaults).
        spec: Option<LinkSpec>,
        /// Link down altogether.
        down: bool,
        /// Which direction.
        direction: netns::Direction,
    },
    /// One client operation.
    Op(OpSpec),
    /// Concurrent clients issuing a mix of operations.
    Load(LoadSpec),
    /// Wait for background loads to finish.
    AwaitLoad,
    /// Remember which node a selector names now.
    Label {
        /// Which node.
        node: Selector,
        /// The name to remember it by.
        label: String,
    },
    /// The coordinator hands over to its most caught-up follower (`idclient --step-down`,
    /// with a node certificate of the run).
    StepDown {
        /// Remember the successor under this name.
        label: Option<String>,
    },
    /// Sleep.
    Wait {
        /// How long.
        ms: u64,
    },
    /// Wait for a condition; the scenario fails if it does not come in time.
    Await {
        /// The condition.
        condition: Condition,
        /// How long to wait.
        timeout_ms: u64,
        /// Record the time it took under this figure name.
        measure: Option<String>,
    },
    /// A recorded assertion about the cluster now (or within `within_ms`).
    Assert {
        /// The condition.
        condition: Condition,
        /// How long it may take to come true.
        within_ms: u64,
        /// Whether it is expected to hold.
        expect: Expect,
    },
    /// A seeded random schedule of faults.
    RandomFaults(RandomSpec),
    /// The `rogue` host (no credentials) attacks the nodes.
    Rogue {
        /// What it tries.
        attack: crate::rogue::Attack,
        /// At which nodes.
        nodes: Vec<Selector>,
        /// How many times per node (forgeries, requests, garbage; replays per captured
        /// datagram, of which up to `count` are captured).
        count: u32,
        /// The epoch forgeries claim.
        epoch: u64,
    },
    /// Run the steps from `first_step` (1-based) to this one again, `times` more times.
    Repeat {
        /// 0-based index of the first repeated step.
        first: usize,
        /// Extra runs.
        times: u32,
    },
}

/// Lifecycle changes of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChange {
    /// SIGKILL.
    Kill,
    /// SIGSTOP.
    Pause,
    /// SIGCONT.
    Resume,
    /// SIGTERM, waiting for the exit.
    Stop,
    /// Start again on the same data (after kill or stop).
    Restart,
    /// SIGTERM, waiting for the exit, then start again on the same data from the current
    /// build (a rolling upgrade's step).
    Upgrade,
    /// SIGKILL to the node's Redis alone.
    KillRedis,
    /// SIGSTOP to the node's Redis alone (it hangs; the node runs on).
    PauseRedis,
    /// SIGCONT to the node's Redis.
    ResumeRedis,
}

impl NodeChange {
    /// The step's `do` name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeChange::Kill => "kill",
            NodeChange::Pause => "pause",
            NodeChange::Resume => "resume",
            NodeChange::Stop => "stop",
            NodeChange::Restart => "restart",
            NodeChange::Upgrade => "upgrade",
            NodeChange::KillRedis => "kill-redis",
            NodeChange::PauseRedis => "pause-redis",
            NodeChange::ResumeRedis => "resume-redis",
        }
    }
}

/// Who a partition separates.
#[derive(Debug, Clone)]
pub enum PartitionShape {
    /// One node from everyone.
    Isolate(Selector),
    /// Groups that reach only their own members.
    Sides(Vec<Vec<Selector>>),
    /// Packets from `from` to `to` are lost; the other way works.
    OneWay {
        /// Sender side.
        from: Selector,
        /// Receiver side.
        to: Selector,
    },
}

/// A client operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// New account.
    Create,
    /// Login to UUID.
    Lookup,
    /// Rename.
    Modify,
    /// Removal.
    Delete,
}

impl OpKind {
    /// Whether the operation writes.
    pub fn is_write(self) -> bool {
        self != OpKind::Lookup
    }
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct OpSpec {
    /// Which.
    pub kind: OpKind,
    /// The login it is about.
    pub login: String,
    /// The new login of a modify.
    pub new_login: Option<String>,
    /// The password sent with it.
    pub password: Option<String>,
    /// The server to send it to (all nodes, fastest first, otherwise).
    pub via: Option<Selector>,
    /// The client host it runs on (0: `client`).
    pub from: u32,
    /// The outcome it must have.
    pub expect: OpExpect,
    /// The server that must answer it.
    pub served_by: Option<Selector>,
    /// Record how long it took (client retries included) as this figure.
    pub measure: Option<String>,
}

/// The outcome a single operation must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpExpect {
    /// Success.
    Ok,
    /// Any outcome (recorded in the history only).
    Any,
    /// This error code (as `idclient --json` names it, e.g. `not_found`).
    Error(String),
}

/// Concurrent clients.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Sessions.
    pub clients: u32,
    /// How long.
    pub duration_ms: u64,
    /// Relative weights of the operations.
    pub mix: Mix,
    /// Logins drawn from this many (0: every create uses a fresh login).
    pub keys: u32,
    /// Client i starts at node i (else all start at the discovery order).
    pub spread: bool,
    /// Run while later steps go on.
    pub background: bool,
    /// Pause between one session's operations.
    pub think_ms: u64,
    /// The client host it runs on (0: `client`).
    pub from: u32,
    /// Servers every session may use (all nodes if empty).
    pub via: Vec<Selector>,
}

/// Weights of operations in a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Creates.
    #[serde(default)]
    pub create: u32,
    /// Lookups.
    #[serde(default)]
    pub lookup: u32,
    /// Renames.
    #[serde(default)]
    pub modify: u32,
    /// Deletes.
    #[serde(default)]
    pub delete: u32,
}

/// Conditions for `await` and `assert`.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Every live node names the same live coordinator.
    Agreed,
    /// Agreed, and the coordinator is this node.
    Coordinator(Selector),
    /// Agreed, and the coordinator is not this node.
    NotCoordinator(Selector),
    /// The node holds this rank.
    Rank(Selector, u32),
    /// The live nodes' ranks are exactly these.
    Ranks(Vec<u32>),
    /// The node's role is this (`follower`, `coordinator`, …).
    Role(Selector, Role),
    /// This many live nodes call themselves coordinator.
    Coordinators(u32),
    /// Agreed, and every live node applied the same clock.
    Converged,
    /// No live node's epoch is above this.
    EpochsAtMost(u64),
    /// The node (or every live node) refused at least this many of these.
    Rejected(Option<Selector>, RejectedKind, u64),
}

/// A rejection counter of a node's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectedKind {
    /// Datagrams that failed authentication.
    Datagrams,
    /// Connections that failed TLS or their budget.
    Connections,
    /// Peer-only requests on client connections.
    Requests,
}

impl RejectedKind {
    /// As written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectedKind::Datagrams => "datagrams",
            RejectedKind::Connections => "connections",
            RejectedKind::Requests => "requests",
        }
    }
}

/// Whether an assertion is expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// It must hold.
    Hold,
    /// It demonstrates a known window: it must be violated.
    Violated,
}

/// A random fault schedule.
#[derive(Debug, Clone)]
pub struct RandomSpec {
    /// Fault kinds drawn from.
    pub kinds: Vec<FaultKind>,
    /// Mean faults started per second.
    pub rate_per_s: f64,
    /// How long the schedule runs.
    pub duration_ms: u64,
    /// How long each fault lasts.
    pub fault_ms: u64,
}

/// The kinds a random schedule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Kill a node, restart it after the fault's time.
    Kill,
    /// Pause a node, resume it.
    Pause,
    /// Isolate a node, heal.
    Partition,
    /// 20% loss on a node's link.
    Loss,
    /// 30 ± 10 ms on a node's link.
    Latency,
    /// Kill a node's Redis.
    KillRedis,
    /// Pause a node's Redis (SIGSTOP), resume it.
    PauseRedis,
}

impl FaultKind {
    /// As written in `kinds`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::Latency => "latency",
            FaultKind::KillRedis => "kill-redis",
            FaultKind::PauseRedis => "pause-redis",
        }
    }
}

/// A final check over the run's history and logs.
#[derive(Debug, Clone)]
pub struct Check {
    /// Where it was written.
    pub at: Location,
    /// Which check.
    pub kind: CheckKind,
    /// Whether it must hold or is expected to be violated.
    pub expect: Expect,
    /// Judge only the operations of this client host.
    pub from: Option<u32>,
}

/// The checks `[[check]] that = …` names.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Every node's log is in strict (clock, rank) order with consecutive clocks.
    EventOrder,
    /// All live nodes' logs are identical after recovery.
    LogsIdentical,
    /// Every acknowledged write was applied on at least this many nodes when acknowledged.
    AckedApplied(u32),
    /// The p99 time from ack to the last replica applying it is at most this.
    Window(u64),
    /// The p99 time clients waited for an answer (any outcome) is at most this.
    Latency(u64),
    /// No acknowledged write is missing from any live node's log after recovery.
    NoLostWrites,
    /// No UUID issued twice; no login bound to two UUIDs.
    Unique,
    /// Sequential consistency with read-your-writes and monotonic reads per session.
    Sessions,
    /// Writes and coordinator reads linearizable per login.
    Linearizable,
    /// Every epoch's events were made by one node: no two coordinators of one epoch wrote.
    OneWriterPerEpoch,
}

impl CheckKind {
    /// As written in `that`.
    pub fn name(&self) -> String {
        match self {
            CheckKind::EventOrder => "event-order".into(),
            CheckKind::LogsIdentical => "logs-identical".into(),
            CheckKind::AckedApplied(k) => format!("acked-applied (min_nodes {k})"),
            CheckKind::Window(ms) => format!("window (p99 <= {ms} ms)"),
            CheckKind::Latency(ms) => format!("latency (p99 <= {ms} ms)"),
            CheckKind::NoLostWrites => "no-lost-writes".into(),
            CheckKind::Unique => "unique".into(),
            CheckKind::Sessions => "sessions".into(),
            CheckKind::Linearizable => "linearizable".into(),
            CheckKind::OneWriterPerEpoch => "one-writer-per-epoch".into(),
        }
    }
}
