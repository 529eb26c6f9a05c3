//! Client requests and server replies, and the envelope every frame wraps them in.
//!
//! Names and fields are part of the protocol: add fields with `#[serde(default)]`, never
//! rename or reuse one.

use crate::account::AccountView;
use crate::error::ErrorCode;
use crate::event::{Event, LoggedEvent};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use uuid::Uuid;

/// Oldest protocol version this build speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// Newest protocol version this build speaks.
pub const PROTOCOL_VERSION_MAX: u16 = 1;

/// Every frame: who speaks which versions, for which cluster, and the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Oldest protocol version the sender speaks.
    pub version_min: u16,
    /// Newest protocol version the sender speaks.
    pub version_max: u16,
    /// The cluster the sender means to talk to (or belongs to).
    pub cluster: String,
    /// Chosen by the requester and echoed in the reply, so replies can be matched to requests.
    pub seq: u64,
    /// Reserved for authentication of cluster messages (filled in by a later version).
    #[serde(default)]
    pub auth: Option<ByteBuf>,
    /// In a request, the client's session clock (the highest clock it has seen): a node that
    /// has applied less must catch up or pass the read on. In a reply, the clock the answer
    /// reflects (the event's for a write, the node's applied clock for a read).
    #[serde(default)]
    pub clock: u64,
    /// In a write request: the sender vouches that the write's request id was never sent
    /// before (the client library's first attempt of a write it made the id for), so no
    /// earlier result can exist and the coordinator does not look for one. Left out (false)
    /// on every retry and whenever the sender cannot tell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
    /// The request or reply.
    pub body: B,
}

/// The fields of an [`Envelope`] that every version keeps, read before the body so a peer of
/// another version gets a version error rather than a decode error.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeHead {
    /// See [`Envelope::version_min`].
    pub version_min: u16,
    /// See [`Envelope::version_max`].
    pub version_max: u16,
    /// See [`Envelope::cluster`].
    pub cluster: String,
    /// See [`Envelope::seq`].
    #[serde(default)]
    pub seq: u64,
}

impl<B> Envelope<B> {
    /// Wraps `body` with this build's version range.
    pub fn new(cluster: &str, seq: u64, body: B) -> Self {
        Envelope {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION_MAX,
            cluster: cluster.to_string(),
            seq,
            auth: None,
            clock: 0,
            fresh: false,
            body,
        }
    }
}

impl EnvelopeHead {
    /// Whether the sender's range overlaps ours.
    pub fn version_compatible(&self) -> bool {
        self.version_min <= PROTOCOL_VERSION_MAX && self.version_max >= PROTOCOL_VERSION_MIN
    }
}

/// What `--get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Login names.
    Users,
    /// UUIDs.
    Uuids,
    /// Every account with its details (never passwords).
    All,
}

/// A client's request. Writes carry a request id so that retries are recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// New account.
    Create {
        /// Login name as typed (the server normalises it).
        login: String,
        /// Real name.
        real_name: String,
        /// SHA-512 of the password, if the account is to have one.
        password: Option<ByteBuf>,
        /// Identifies this write across retries.
        request_id: Uuid,
    },
    /// The account with this login name.
    Lookup {
        /// Login name.
        login: String,
    },
    /// The account with this UUID.
    ReverseLookup {
        /// The account's UUID.
        uuid: Uuid,
    },
    /// Rename `old` to `new`; the UUID stays.
    Modify {
        /// Current login name.
        old: String,
        /// New login name.
        new: String,
        /// SHA-512 of the account's password, if it has one.
        password: Option<ByteBuf>,
        /// Identifies this write across retries.
        request_id: Uuid,
    },
    /// Remove an account.
    Delete {
        /// Login name.
        login: String,
        /// SHA-512 of the account's password, if it has one.
        password: Option<ByteBuf>,
        /// Identifies this write across retries.
        request_id: Uuid,
    },
    /// One page of a listing of the accounts.
    List {
        /// What to list.
        what: ListKind,
        /// Where the page starts: 0 for the first, then the previous page's `next`.
        #[serde(default)]
        from: u32,
    },
    /// The node's view of itself and the cluster.
    Status,
    /// A peer RPC: a follower passes a client's write on to the coordinator, with the
    /// password work already done (hashing and checking are slow and stay off the
    /// coordinator's path).
    Forward {
        /// The follower's epoch: a coordinator of a lower epoch steps down, a request of a
        /// lower epoch is refused.
        epoch: u64,
        /// The address of the client that sent the request (recorded by creates).
        client_addr: String,
        /// The client's request.
        request: Box<Request>,
        /// For a create with a password: its argon2id hash, made by the follower.
        #[serde(default)]
        password_hash: Option<String>,
        /// For a modify or delete: the account whose password the follower checked.
        #[serde(default)]
        verified_uuid: Option<Uuid>,
    },
    /// Events a node applied, from its bounded log (`idclient --events`).
    Events {
        /// Only events with a higher clock.
        since: u64,
        /// At most this many.
        limit: u32,
    },
    /// A peer RPC: the coordinator sends a replica the next events.
    Replicate {
        /// The coordinator's epoch.
        epoch: u64,
        /// The coordinator's event just before `events` (or, for a probe, before the
        /// replica's next one); the replica checks that it has the same one.
        prev: Option<Event>,
        /// Events in clock order (empty for a probe).
        events: Vec<Event>,
    },
    /// A peer RPC: a piece of a full snapshot of the coordinator's database, shipped while
    /// the coordinator's Redis is still writing it (its size is known at the end).
    Snapshot {
        /// The coordinator's epoch.
        epoch: u64,
        /// Where this piece goes (0 starts a snapshot).
        offset: u64,
        /// On the last piece only: SHA-256 of the whole snapshot.
        sha256: Option<ByteBuf>,
        /// The bytes.
        data: ByteBuf,
    },
    /// An operator's request, on a connection with a node certificate (`idclient
    /// --step-down`): the coordinator holds new writes, waits until its most caught-up
    /// follower acknowledged everything it decided, and hands over to it without an election
    /// timeout.
    StepDown,
    /// An operator's request, on a connection with a node certificate (`idclient --backup`):
    /// a consistent snapshot of this node's directory, answered with [`Reply::BackupPiece`]s
    /// and a last [`Reply::BackupDone`].
    Backup,
}

impl Request {
    /// Whether only a cluster member (or an operator holding a node certificate) may send it:
    /// a forwarded write (its password check was done by the sender), replication, a snapshot,
    /// a step-down.
    pub fn is_peer_only(&self) -> bool {
        matches!(
            self,
            Request::Forward { .. }
                | Request::Replicate { .. }
                | Request::Snapshot { .. }
                | Request::StepDown
                | Request::Backup
        )
    }

    /// The request's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::Lookup { .. } => "lookup",
            Request::ReverseLookup { .. } => "reverse_lookup",
            Request::Modify { .. } => "modify",
            Request::Delete { .. } => "delete",
            Request::List { .. } => "list",
            Request::Status => "status",
            Request::Forward { .. } => "forward",
            Request::Events { .. } => "events",
            Request::Replicate { .. } => "replicate",
            Request::Snapshot { .. } => "snapshot",
            Request::StepDown => "step_down",
            Request::Backup => "backup",
        }
    }

    /// Whether the request changes the directory (an event) rather than reading it.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Create { .. } | Request::Modify { .. } | Request::Delete { .. } => true,
            Request::Forward { request, .. } => request.is_write(),
            _ => false,
        }
    }
}

pub use crate::core::ReplicaStatus;

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Which error.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// A node's view of itself and of the cluster (`idclient --status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// This node's id, generated at its first start and kept in its Redis.
    pub node_id: Uuid,
    /// The cluster it belongs to.
    pub cluster: String,
    /// The address it serves on (TCP) and listens for datagrams on (UDP).
    pub addr: String,
    /// Its rank, once joined.
    pub rank: Option<u32>,
    /// `joining`, `follower`, `candidate` or `coordinator` (a string on the wire).
    pub role: crate::core::Role,
    /// Highest election epoch seen.
    pub epoch: u64,
    /// The coordinator's rank, if one is known.
    pub coordinator_rank: Option<u32>,
    /// The coordinator's address, if one is known.
    pub coordinator_addr: Option<String>,
    /// Highest event clock applied (during a full sync, the one before it until the snapshot
    /// is installed).
    pub clock: u64,
    /// Accounts stored.
    pub accounts: u64,
    /// Members known, by rank.
    pub members: Vec<MemberStatus>,
    /// Elections this node started that named a winner.
    pub elections_started: u64,
    /// Datagrams ignored: another cluster, an incompatible version, or unreadable.
    pub ignored_datagrams: u64,
    /// Election rounds in a row that ended without a coordinator (0 once one is agreed).
    #[serde(default)]
    pub failed_rounds: u64,
    /// Why the last round without a coordinator failed, if one did.
    #[serde(default)]
    pub last_failure: Option<String>,
    /// The round-trip estimate the election timings follow, in milliseconds.
    #[serde(default)]
    pub rtt_ms: u64,
    /// Whether the node runs with credentials (TLS, sealed datagrams).
    #[serde(default)]
    pub authenticated: bool,
    /// Datagrams refused: unsealed (other than a client's question), forged, replayed.
    #[serde(default)]
    pub rejected_datagrams: u64,
    /// Connections refused: a failed or timed-out TLS handshake, or over their budget.
    #[serde(default)]
    pub rejected_connections: u64,
    /// Peer-only requests refused on client connections.
    #[serde(default)]
    pub rejected_requests: u64,
}

/// What a backup holds (a backup file keeps it at its end; see [`crate::backup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The cluster whose directory it is.
    pub cluster: String,
    /// The node it was taken from.
    pub node_id: Uuid,
    /// The clock of the last event it holds.
    pub clock: u64,
    /// The node's epoch when it was taken.
    pub epoch: u64,
    /// Accounts it holds.
    pub accounts: u64,
    /// Length of the snapshot (a Redis RDB).
    pub bytes: u64,
    /// SHA-256 of the snapshot.
    pub sha256: ByteBuf,
    /// When it was taken (Unix milliseconds).
    pub made_ms: u64,
}

/// One member in a [`StatusView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its rank.
    pub rank: u32,
    /// Its address.
    pub addr: String,
    /// Its node id.
    pub node_id: Uuid,
    /// How long ago it was last heard from, directly or through the coordinator.
    pub last_seen_ms_ago: u64,
}

/// One page of a [`Request::List`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    /// Login names.
    Users(Vec<String>),
    /// UUIDs.
    Uuids(Vec<Uuid>),
    /// Accounts with their details (never passwords).
    All(Vec<AccountView>),
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The new account's UUID.
    Created {
        /// UUID of the new account.
        uuid: Uuid,
    },
    /// One account.
    Account(AccountView),
    /// The account was renamed.
    Modified {
        /// UUID of the renamed account.
        uuid: Uuid,
    },
    /// The account was removed.
    Deleted {
        /// UUID of the removed account.
        uuid: Uuid,
    },
    /// A page of a listing, and where the next one starts (`None`: this was the last). A
    /// page is sorted; the pages together hold every account once (one renamed meanwhile may
    /// appear under both names, or neither).
    Listed {
        /// The page.
        page: Listing,
        /// The `from` of the next page.
        next: Option<u32>,
    },
    /// See [`StatusView`].
    Status(StatusView),
    /// Logged events, in clock order.
    Events(Vec<LoggedEvent>),
    /// A replica's answer to [`Request::Replicate`] or [`Request::Snapshot`].
    Replicated {
        /// The replica's applied clock now.
        applied: u64,
        /// What happened.
        status: ReplicaStatus,
    },
    /// The coordinator handed over (see [`Request::StepDown`]).
    SteppedDown {
        /// The successor's address.
        successor: String,
        /// The clock it had acknowledged (everything the old coordinator decided).
        clock: u64,
    },
    /// A piece of a backup (see [`Request::Backup`]), in order.
    BackupPiece {
        /// The snapshot's next bytes.
        data: ByteBuf,
    },
    /// The end of a backup: what it holds.
    BackupDone(BackupInfo),
    /// The request failed.
    Error(WireError),
}
