//! Every bound the server and client enforce, in one place, each with the reason for its value.
//!
//! Units are the last word of each name. Nothing here is tunable at run time; flags that
//! tune behaviour live in [`crate::config`].

/// Longest login name after NFC normalisation (SPEC.md).
pub const LOGIN_CHARS_MAX: usize = 64;

/// Longest real name (SPEC.md).
pub const REAL_NAME_CHARS_MAX: usize = 256;

/// Largest request frame a server accepts. Client requests are under 2 KiB, but peers send
/// batches of up to [`REPLICATE_BATCH_MAX`] events (under 1 KiB each) and snapshot pieces of
/// [`SNAPSHOT_CHUNK_BYTES`]; 8 MiB holds either with room to spare.
pub const REQUEST_FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest reply frame a client accepts: `--get all` for a million accounts is about 200 MiB.
pub const REPLY_FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Bytes of the length prefix in front of every frame (big-endian u32).
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Longest cluster name: it travels in every frame and datagram, so keep it short.
pub const CLUSTER_NAME_BYTES_MAX: usize = 64;

/// Bytes of the password digest a client sends (SHA-512), never the clear password.
pub const PASSWORD_DIGEST_BYTES: usize = 64;

/// Password hashes computed at once: argon2id takes ~19 MiB and tens of ms per hash, so more
/// than one per core only queues in memory.
pub const PASSWORD_HASHES_CONCURRENT_MAX: usize = 4;

/// How long a request id's first result is kept, so that a client retry (also after a
/// failover) gets that result instead of a second write. Documented in `docs/idserver.md`.
pub const REQUEST_ID_TTL_MS: u64 = 10 * 60 * 1000;

/// How long the server waits for its own Redis to answer after starting it.
pub const REDIS_START_TIMEOUT_MS: u64 = 10_000;

/// How long shutdown waits for requests in flight before closing anyway.
pub const SHUTDOWN_DRAIN_TIMEOUT_MS: u64 = 5_000;

/// How long a client waits for one server to accept a connection.
pub const CLIENT_CONNECT_TIMEOUT_MS: u64 = 1_000;

/// How long a client waits for one reply before it tries the next server: a healthy server
/// answers within its forward or ack timeout (2 s), so a longer silence means it hangs
/// (stopped, swapping) and the client treats it as it treats a dead one.
pub const CLIENT_REPLY_TIMEOUT_MS: u64 = 2_500;

/// Largest cluster datagram: a heartbeat lists every member (~60 bytes each), so 16 KiB holds
/// a cluster of a couple of hundred nodes; a datagram is never split across reads.
pub const DATAGRAM_BYTES_MAX: usize = 16 * 1024;

/// Commands queued for the cluster task (RPC failures, epochs seen); senders wait past it.
pub const CLUSTER_COMMANDS_QUEUED_MAX: usize = 1024;

/// Idle connections a follower keeps open to the coordinator for forwarding.
pub const FORWARD_CONNECTIONS_IDLE_MAX: usize = 64;

/// How long a follower waits for the coordinator to answer a forwarded request.
pub const FORWARD_TIMEOUT_MS: u64 = 2_000;

/// How long a client keeps retrying "unavailable" and unreachable servers (an election takes
/// well under a second with the default timings).
pub const CLIENT_RETRY_FOR_MS: u64 = 3_000;

/// The shortest wait a client gives a server it tries after its retry deadline has passed
/// (the first pass over the list may still be under way then).
pub const CLIENT_LAST_TRY_MS: u64 = 500;

/// Pause between a client's passes over its server list.
pub const CLIENT_RETRY_PAUSE_MS: u64 = 50;

/// How long a client waits for GETMASTER / GETRANK answers in one discovery attempt.
pub const DISCOVERY_WAIT_MS: u64 = 300;

/// After the fastest server answers GETRANK, how much longer than its round trip a client
/// waits for the others' answers (to order its failovers).
pub const DISCOVERY_GRACE_MS: u64 = 20;

/// Discovery attempts before a client gives up.
pub const DISCOVERY_ATTEMPTS_MAX: u32 = 3;

/// Events each node keeps in its queryable log (`idclient --events`); replication of a node
/// further behind than this falls back to a full sync.
pub const EVENT_LOG_MAX: usize = 100_000;

/// Writes the coordinator applies in one Redis round trip (group commit).
pub const WRITE_BATCH_MAX: usize = 512;

/// Events sent to a replica in one frame.
pub const REPLICATE_BATCH_MAX: usize = 1024;

/// Batches sent to a replica before its answer to the first comes back: over a slow link the
/// next events leave at once instead of a round trip later.
pub const REPLICATE_IN_FLIGHT_MAX: usize = 4;

/// A replica this many events behind gets a full sync instead of the events.
pub const FULL_SYNC_LAG_EVENTS: u64 = 20_000;

/// Writes queued for the coordinator's writer; callers wait past it (back-pressure).
pub const WRITES_QUEUED_MAX: usize = 4096;

/// How long the coordinator waits for replicas' acknowledgements before answering `ack_timeout`.
pub const ACK_TIMEOUT_MS: u64 = 2_000;

/// How long a replica behind a client's session clock waits to catch up before forwarding the
/// read to the coordinator.
pub const READ_CATCH_UP_WAIT_MS: u64 = 100;

/// How long the coordinator's link to a replica stays idle before it probes the replica.
pub const REPLICATION_PROBE_MS: u64 = 100;

/// Longest a replica waits, after loading a full snapshot, for its own Redis to write it into
/// its append-only file before it takes events again (well under the 30 s the coordinator
/// waits for the answer to the snapshot's last piece).
pub const SNAPSHOT_PERSIST_WAIT_MS: u64 = 20_000;

/// Longest a replica waits for the next piece of a snapshot before giving it up. A Redis fed
/// a snapshot as it arrives is blocked reading it until the next piece (or the end) comes,
/// so a sender that went silent must not keep it so for long.
pub const SNAPSHOT_STALL_MS: u64 = 5_000;

/// How often a node asks its Redis whether it answers (see [`STORE_HANG_MS`]).
pub const STORE_PROBE_MS: u64 = 100;

/// Longest one attempt to connect to the node's Redis may take. Far below [`STORE_HANG_MS`]:
/// a connection's first packet lost (the Redis was down or its link being rebuilt) would
/// otherwise wait out the kernel's one-second retransmission, and the node would look cut off
/// from a Redis that answers again.
pub const STORE_CONNECT_MS: u64 = 250;

/// How long a node starting waits for its Redis to accept connections (an external one
/// starting at the same time, under a service manager) before it gives up.
pub const STORE_CONNECT_WAIT_MS: u64 = 5_000;

/// Longest the node's Redis may go without answering (hung, not dead: stopped, swapping, a
/// stalled disk) before the node keeps still in the cluster, so that its peers elect another
/// coordinator, and refuses requests, until it answers again. Well above Redis's own pauses
/// (a fork for a snapshot of gigabytes takes tens of milliseconds).
pub const STORE_HANG_MS: u64 = 1_000;

/// How often a replica checks a snapshot being received for a stall or a replaced sender.
pub const SNAPSHOT_WATCH_MS: u64 = 50;

/// Most bytes one system call reads or writes of bulk data (snapshot pieces): the kernel
/// copies them without giving the core up (this kernel never preempts a system call), so a
/// call of megabytes would hold a core for a millisecond or more, however low the caller's
/// priority, and delay the live writes waiting for it.
pub const IO_SLICE_BYTES: usize = 64 * 1024;

/// Largest piece of a snapshot in one frame during a full sync.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Events kept in memory for replication's hot path (about 0.5 KiB each).
pub const RECENT_EVENTS_MAX: usize = 65_536;

/// How often a node checks that its own Redis still runs (a dead one is restarted).
pub const REDIS_SUPERVISE_MS: u64 = 50;

/// Accounts per Redis round trip when all are walked (listing them, upgrading the first
/// storage layout): large enough to amortise the round trip, small enough not to block Redis.
pub const ACCOUNTS_PER_BATCH: usize = 1000;

/// Largest batch first tried in one round trip, on assumptions (see [`crate::store::Store::apply_new`]).
pub const SPECULATE_EVENTS_MAX: usize = 2;

/// Most events one `events` request returns: the log holds up to [`EVENT_LOG_MAX`] events
/// (tens of MB with long real names), read from Redis in one command that blocks it, and
/// anyone who can connect may ask. Clients page by the last clock they got
/// ([`crate::client::Client::events`] does).
pub const EVENTS_PAGE_MAX: u32 = 2_000;

/// The event log is trimmed to EVENT_LOG_MAX whenever the clock crosses a multiple of this.
pub const EVENT_LOG_TRIM_EVERY: u64 = 1024;

/// Highest epoch a node accepts from a datagram or a peer request. Epochs count elections, one
/// at a time: no cluster reaches 2^53. A message with a larger one is malformed or forged, and
/// taking it would let one datagram push the cluster to the end of the epoch range, where no
/// election can raise it any more (and `epoch + 1` overflows).
pub const EPOCH_MAX: u64 = 1 << 53;

/// Longest password hash a peer may forward: an argon2id PHC string of ours is about 100
/// characters.
pub const PASSWORD_HASH_CHARS_MAX: usize = 128;

/// Longest client address a peer may forward (an IPv6 address with brackets and a port is 47).
pub const CLIENT_ADDR_CHARS_MAX: usize = 64;

/// Keys a cluster key file may list: the signing key and one being rolled over.
pub const CLUSTER_KEYS_MAX: usize = 2;

/// Shortest cluster key: 256 bits.
pub const CLUSTER_KEY_BYTES_MIN: usize = 32;

/// A cluster key file larger than this is not one.
pub const CLUSTER_KEY_FILE_BYTES_MAX: u64 = 4096;

/// A certificate, key or CA file larger than this is not one.
pub const TLS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Sequences below a sender's highest that are still accepted once (reordered datagrams: one
/// sequence counts a sender's datagrams to every destination); anything older is a replay.
/// A multiple of 64.
pub const REPLAY_WINDOW: usize = 1024;

/// Senders whose replay windows are kept (only key holders get one).
pub const REPLAY_SENDERS_MAX: usize = 1024;

/// At most one warning per this long about rejected datagrams or connections (with counts).
pub const REJECTED_LOG_INTERVAL_MS: u64 = 10_000;

/// A TLS handshake not finished within this is dropped: a connection that says nothing holds
/// no slot for long.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 3_000;

/// Connections still in their TLS handshake. Generous: a held-open connection costs a task
/// and a few KiB, and 5,000 of them must not keep a new client out.
pub const HANDSHAKES_MAX: usize = 16_384;

/// Client connections (no cluster certificate) open at once; more are closed at once.
pub const CLIENT_CONNECTIONS_MAX: usize = 16_384;

/// Peer connections (a verified cluster certificate) open at once: a budget of their own, so
/// that clients cannot crowd replication out.
pub const PEER_CONNECTIONS_MAX: usize = 1024;

/// A client connection that sends no request for this long is closed.
pub const CLIENT_IDLE_TIMEOUT_MS: u64 = 120_000;

/// A reply the other end takes nothing of for this long is given up and the connection closed:
/// a client that sends requests and never reads would otherwise hold the encoded reply and
/// its connection slot for ever. Measured per slice of [`IO_SLICE_BYTES`], so a slow reader
/// still gets a long listing.
pub const REPLY_WRITE_STALL_MS: u64 = 5_000;

/// A client's request frame, once begun, must arrive whole within this.
pub const CLIENT_FRAME_READ_TIMEOUT_MS: u64 = 10_000;

/// Client and forwarder connections unused for this long are not reused but opened afresh
/// (well under [`CLIENT_IDLE_TIMEOUT_MS`], so a reused one is never one the server just closed).
pub const CONNECTION_REUSE_IDLE_MAX_MS: u64 = 60_000;

/// Largest request frame from a client (no cluster certificate): a write with the longest
/// login and real name is under 2 KiB.
pub const CLIENT_REQUEST_FRAME_BYTES_MAX: usize = 64 * 1024;

/// A page of a listing (`--get`) is cut after the login index hash that brings it to this
/// many entries; the client library fetches page after page.
pub const LIST_PAGE_ENTRIES: usize = 10_000;

/// Login index hashes read in one pipeline while making a page (of 65,536).
pub const LIST_SHARDS_PER_READ: u32 = 1024;

/// Answers a node gives per second (and in a burst) to questions that proved nothing about
/// their sender (clients' GETMASTER and GETRANK, with datagram authentication on): an answer is
/// larger than its question, and a forged source would aim it at someone else.
pub const QUERY_ANSWERS_PER_S: u32 = 1000;
