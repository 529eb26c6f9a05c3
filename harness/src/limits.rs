//! Every bound the harness keeps, with why.

/// Nodes in one scenario: host addresses and the timeline's lanes stay readable.
pub const NODES_MAX: u32 = 9;
/// Concurrent client sessions in one load: the client host shares two cores with the nodes.
pub const LOAD_CLIENTS_MAX: u32 = 256;
/// Port every node serves on (each node has its own address).
pub const NODE_PORT: u16 = 5151;

/// The lab host every node runs on in layout `one-host`.
pub const ONE_HOST_NAME: &str = "nodes";
/// Multicast group of `discovery = "multicast"` scenarios (TTL 1, only on the lab interface).
pub const MCAST_GROUP: &str = "239.255.51.51:5151";
/// How often the status poller asks each node (the timeline's resolution).
pub const POLL_STATUS_MS: u64 = 50;
/// Every this many status polls the poller also collects new events.
pub const POLL_EVENTS_EVERY: u32 = 2;
/// Connect timeout of the harness's status and event queries.
pub const PROBE_CONNECT_MS: u64 = 200;
/// Reply timeout of the harness's status and event queries (a paused node never answers).
pub const PROBE_REPLY_MS: u64 = 500;
/// How long a clean stop (SIGTERM) may take before SIGKILL.
pub const STOP_WAIT_MS: u64 = 15_000;
/// How long the recovery phase waits for the cluster to converge before the final checks.
pub const RECOVER_WAIT_MS: u64 = 30_000;
/// Per login, the linearizability search gives up (verdict unknown) above this many operations.
pub const LINEARIZABLE_OPS_PER_KEY_MAX: usize = 4_000;
/// Client reply timeout in workloads: a write waiting for acks can take an ack timeout.
pub const CLIENT_REPLY_MS: u64 = 3_000;
/// Client hosts in one scenario (each is a namespace with its own runtime).
pub const CLIENT_HOSTS_MAX: u32 = 4;
/// How long a step naming `coordinator`, `follower` or a rank looks for that node (right after
/// a fault the roles may still be settling), and how often.
pub const RESOLVE_ROLE_WAIT_MS: u64 = 5_000;
/// See [`RESOLVE_ROLE_WAIT_MS`].
pub const RESOLVE_ROLE_POLL_MS: u64 = 100;
/// How often `await` and `assert` look at the cluster's state.
pub const CONDITION_POLL_MS: u64 = 10;
/// The fault window drawn for `kill-redis` (a moment: the node restarts its Redis at once).
pub const KILL_REDIS_WINDOW_MS: u64 = 50;
/// Client sessions of `op` steps are numbered client host × this + the session's number.
pub const OP_SESSIONS_PER_CLIENT_HOST: u32 = 10;
/// Client sessions of `load` steps are numbered from this, [`LOAD_SESSION_IDS_PER_LOAD`] per
/// load step (above every `op` session).
pub const LOAD_SESSION_ID_BASE: u32 = 100;
/// See [`LOAD_SESSION_ID_BASE`].
pub const LOAD_SESSION_IDS_PER_LOAD: u32 = 1000;

/// How long the credentials minted for a run are valid (longer than any run).
pub const CREDENTIALS_VALID_S: u64 = 7 * 24 * 3600;

/// How many times a `rogue` step tries its attack per node, by default.
pub const ROGUE_COUNT: u32 = 10;

/// The epoch a `rogue` step's forgeries claim, by default (the 10^15).
pub const ROGUE_EPOCH: u64 = 1_000_000_000_000_000;

/// How many times a `replay` step sends each datagram it captured.
pub const ROGUE_REPLAYS: u32 = 3;

/// How long a `replay` step listens on the target's link for genuine datagrams.
pub const ROGUE_CAPTURE_MS: u64 = 3_000;

/// The lab name of the host without credentials that `rogue` steps attack from.
pub const ROGUE_HOST_NAME: &str = "rogue";
