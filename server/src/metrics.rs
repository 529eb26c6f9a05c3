//! What a node counts for operators: Prometheus metrics (OpenMetrics text, served by
//! [`crate::node::http`]) and the readiness rule of `/readyz`.
//!
//! Counters and histograms are updated where things happen (requests, ack waits, full syncs,
//! Redis restarts); the state a node is in (role, rank, epoch, clocks, replica lag) is read
//! when scraped, so a scrape always shows the present, and costs nothing between scrapes.

use crate::core::{Role, View};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// A follower is ready once it is at most this many events behind the clock its coordinator
/// last reported (heartbeats carry it; under load a replica trails by its pipeline).
pub const READY_LAG_EVENTS_MAX: u64 = 1_000;

/// Labels of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    outcome: &'static str,
}

/// Label of a latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// Label of the role gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: RoleValue,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum RoleValue {
    joining,
    follower,
    candidate,
    coordinator,
}

impl From<Role> for RoleValue {
    fn from(role: Role) -> Self {
        match role {
            Role::Joining => RoleValue::joining,
            Role::Follower => RoleValue::follower,
            Role::Candidate => RoleValue::candidate,
            Role::Coordinator => RoleValue::coordinator,
        }
    }
}

const ROLES: [Role; 4] = [
    Role::Joining,
    Role::Follower,
    Role::Candidate,
    Role::Coordinator,
];

/// Label of a per-replica gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    replica: String,
}

/// A replication link's state, as its coordinator sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState {
    /// The highest clock the replica acknowledged.
    pub acked: u64,
    /// Requests sent and not yet answered.
    pub in_flight: u64,
}

/// The state read at scrape time.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The node's cluster view.
    pub view: View,
    /// Highest clock applied here.
    pub applied: u64,
    /// Highest clock decided here (the coordinator's writer runs ahead of its Redis).
    pub decided: u64,
    /// Accounts stored, if the store answered.
    pub accounts: Option<u64>,
    /// Whether the node's Redis answers.
    pub redis_up: bool,
    /// Whether a full sync is being installed.
    pub syncing: bool,
    /// Datagrams, connections and requests refused (authentication and limits).
    pub rejected: [u64; 3],
    /// Datagrams ignored (another cluster, another version, unreadable).
    pub ignored_datagrams: u64,
}

/// A node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<OpLabels, Histogram>,
    ack_wait_seconds: Histogram,
    full_syncs: Counter,
    full_sync_bytes: Counter,
    redis_restarts: Counter,
    elections_won: Counter,
    elections_started: Counter,
    rejected: [Counter; 3],
    ignored_datagrams: Counter,
    role: Family<RoleLabels, Gauge>,
    rank: Gauge,
    epoch: Gauge,
    clock: Gauge,
    decided: Gauge,
    accounts: Gauge,
    members: Gauge,
    rtt_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    redis_up: Gauge,
    ready: Gauge,
    replica_lag: Family<ReplicaLabels, Gauge>,
    replica_in_flight: Family<ReplicaLabels, Gauge>,
    links: Mutex<BTreeMap<SocketAddr, LinkState>>,
    won_epoch: Mutex<u64>,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. about 6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry of every metric, all at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("idserver");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests served, by operation and outcome (ok, or the error code)",
            requests.clone(),
        );
        let request_seconds =
            Family::<OpLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "request_seconds",
            "Time from a request's arrival to its reply, by operation",
            request_seconds.clone(),
        );
        let ack_wait_seconds = latency_histogram();
        registry.register(
            "ack_wait_seconds",
            "Time a write applied on the coordinator waited for its replicas' acks",
            ack_wait_seconds.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let full_syncs = counter(
            &mut registry,
            "full_syncs_sent",
            "Full snapshots this node sent to replicas as coordinator",
        );
        let full_sync_bytes = counter(
            &mut registry,
            "full_sync_sent_bytes",
            "Snapshot bytes this node sent to replicas",
        );
        let redis_restarts = counter(
            &mut registry,
            "redis_restarts",
            "Times the node's own redis-server exited and was restarted",
        );
        let elections_won = counter(
            &mut registry,
            "elections_won",
            "Epochs in which this node became coordinator",
        );
        let elections_started = counter(
            &mut registry,
            "elections_started",
            "Elections this node started that named a winner",
        );
        let rejected = [
            counter(
                &mut registry,
                "rejected_datagrams",
                "Datagrams refused: unsealed (other than a client's question), forged, replayed",
            ),
            counter(
                &mut registry,
                "rejected_connections",
                "Connections refused: failed TLS handshakes, over a budget",
            ),
            counter(
                &mut registry,
                "rejected_requests",
                "Peer-only requests refused on client connections",
            ),
        ];
        let ignored_datagrams = counter(
            &mut registry,
            "ignored_datagrams",
            "Datagrams ignored: another cluster, an incompatible version, unreadable",
        );
        let role = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "role",
            "1 for the role this node is in, 0 for the others",
            role.clone(),
        );
        let rank = gauge(&mut registry, "rank", "This node's rank (0: none yet)");
        let epoch = gauge(&mut registry, "epoch", "Highest election epoch seen");
        let clock = gauge(
            &mut registry,
            "applied_clock",
            "Highest event clock applied",
        );
        let decided = gauge(
            &mut registry,
            "decided_clock",
            "Highest event clock decided (the coordinator's writer runs ahead of its Redis)",
        );
        let accounts = gauge(&mut registry, "accounts", "Accounts stored");
        let members = gauge(
            &mut registry,
            "members",
            "Members known, this node included",
        );
        let rtt_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "rtt_seconds",
            "The round-trip estimate the election timings follow",
            rtt_seconds.clone(),
        );
        let redis_up = gauge(
            &mut registry,
            "redis_up",
            "1 while the node's Redis answers",
        );
        let ready = gauge(
            &mut registry,
            "ready",
            "1 while /readyz answers 200 (a coordinator, caught up)",
        );
        let replica_lag = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "replica_lag_events",
            "On the coordinator: events decided that the replica has not acknowledged",
            replica_lag.clone(),
        );
        let replica_in_flight = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "replica_in_flight",
            "On the coordinator: replication requests sent to the replica and not yet answered",
            replica_in_flight.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            ack_wait_seconds,
            full_syncs,
            full_sync_bytes,
            redis_restarts,
            elections_won,
            elections_started,
            rejected,
            ignored_datagrams,
            role,
            rank,
            epoch,
            clock,
            decided,
            accounts,
            members,
            rtt_seconds,
            redis_up,
            ready,
            replica_lag,
            replica_in_flight,
            links: Mutex::default(),
            won_epoch: Mutex::new(0),
        }
    }

    /// A request of operation `op` answered after `took` with `outcome` (`ok` or an error
    /// code).
    pub fn request(&self, op: &'static str, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { op, outcome })
            .inc();
        self.request_seconds
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }

    /// A write waited `took` for its acks.
    pub fn ack_wait(&self, took: Duration) {
        self.ack_wait_seconds.observe(took.as_secs_f64());
    }

    /// A full snapshot of `bytes` was sent to a replica.
    pub fn full_sync_sent(&self, bytes: u64) {
        self.full_syncs.inc();
        self.full_sync_bytes.inc_by(bytes);
    }

    /// The node's own redis-server was restarted.
    pub fn redis_restarted(&self) {
        self.redis_restarts.inc();
    }

    /// The replication link to `replica` is in `state`.
    pub fn link(&self, replica: SocketAddr, state: LinkState) {
        self.lock_links().insert(replica, state);
    }

    /// Keeps only the links to the replicas `keep` names (the others stopped).
    pub fn retain_links(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.lock_links().retain(|replica, _| keep(replica));
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, LinkState>> {
        self.links.lock().expect("metrics links lock poisoned")
    }

    /// Notes the view the cluster task published: a coordinator in a new epoch won it.
    pub fn observe_view(&self, view: &View) {
        if view.role == Role::Coordinator {
            let mut won = self.won_epoch.lock().expect("metrics epoch lock poisoned");
            if view.epoch > *won {
                *won = view.epoch;
                self.elections_won.inc();
            }
        }
    }

    /// The exposition (OpenMetrics text) for the node in `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        let view = &now.view;
        for role in ROLES {
            self.role
                .get_or_create(&RoleLabels { role: role.into() })
                .set(i64::from(view.role == role));
        }
        self.rank.set(i64::from(view.me.rank.unwrap_or(0)));
        self.epoch.set(as_i64(view.epoch));
        self.clock.set(as_i64(now.applied));
        self.decided.set(as_i64(now.decided));
        if let Some(accounts) = now.accounts {
            self.accounts.set(as_i64(accounts));
        }
        self.members.set(view.members.len() as i64);
        self.rtt_seconds.set(view.rtt_ms as f64 / 1000.0);
        self.redis_up.set(i64::from(now.redis_up));
        self.ready.set(i64::from(readiness(now).is_ok()));
        raise_to(&self.elections_started, view.elections_started);
        raise_to(&self.ignored_datagrams, now.ignored_datagrams);
        for (counter, value) in self.rejected.iter().zip(now.rejected) {
            raise_to(counter, value);
        }
        self.replica_lag.clear();
        self.replica_in_flight.clear();
        if view.role == Role::Coordinator {
            for (replica, link) in self.lock_links().iter() {
                let labels = ReplicaLabels {
                    replica: replica.to_string(),
                };
                self.replica_lag
                    .get_or_create(&labels)
                    .set(as_i64(now.decided.saturating_sub(link.acked)));
                self.replica_in_flight
                    .get_or_create(&labels)
                    .set(as_i64(link.in_flight));
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Raises a counter that mirrors a count kept elsewhere to that count.
fn raise_to(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Whether the node should get traffic (`/readyz`): its Redis answers, it is not installing a
/// full snapshot, and it is a settled coordinator or a follower that hears its coordinator
/// and is at most [`READY_LAG_EVENTS_MAX`] events behind it. Else why not.
pub fn readiness(now: &Snapshot) -> Result<(), String> {
    let view = &now.view;
    if !now.redis_up {
        return Err("its Redis does not answer".into());
    }
    if now.syncing {
        return Err("it is installing a full snapshot".into());
    }
    match view.role {
        Role::Coordinator if view.settled => Ok(()),
        Role::Coordinator => Err("its claim as coordinator has not settled yet".into()),
        Role::Follower => {
            let Some(coordinator) = view.coordinator else {
                return Err("it knows no coordinator".into());
            };
            if !view.hears_coordinator {
                return Err(format!(
                    "it does not hear its coordinator {}",
                    coordinator.addr
                ));
            }
            let theirs = view
                .members
                .iter()
                .find(|m| m.node.node_id == coordinator.node_id)
                .map_or(0, |m| m.clock);
            let behind = theirs.saturating_sub(now.applied);
            if behind > READY_LAG_EVENTS_MAX {
                Err(format!(
                    "it is {behind} events behind its coordinator (at most {READY_LAG_EVENTS_MAX})"
                ))
            } else {
                Ok(())
            }
        }
        Role::Joining => Err("it is joining the cluster".into()),
        Role::Candidate => Err("an election is running".into()),
    }
}
