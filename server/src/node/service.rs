//! Serving one request: where it is served (here, or by the coordinator), validation, password
//! work, turning writes into events and waiting for replicas, reading with the client's session
//! clock honoured. Knows nothing of sockets or frames.

use crate::account::{check_real_name, normalize_login};
use crate::core::{Input, Role};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, LoggedEvent};
use crate::limits::{EVENTS_PAGE_MAX, LIST_PAGE_ENTRIES, READ_CATCH_UP_WAIT_MS};
use crate::node::cluster::ClusterState;
use crate::node::forward::Forwarder;
use crate::node::replica::Replica;
use crate::node::replication::Replicator;
use crate::node::shared::Shared;
use crate::password::PasswordPool;
use crate::store::{Applied, RdbStream, StoredAccount, WriteResult};
use crate::wire::{BackupInfo, ListKind, Listing, MemberStatus, Reply, Request, StatusView};
use serde_bytes::ByteBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Password work done by the node the client talked to, so the coordinator need not.
#[derive(Debug, Clone, Default)]
struct Prepared {
    /// argon2id hash for a create with a password.
    password_hash: Option<String>,
    /// The account whose password was checked, for a modify or delete.
    verified_uuid: Option<Uuid>,
}

/// Longest a backup holds this node's Redis's writes while Redis forks for the snapshot.
const BACKUP_PAUSE_MS: u64 = 5_000;
/// Longest a step-down holds writes waiting for a follower to catch up.
const HANDOVER_TIMEOUT_MS: u64 = 2_000;
/// How often a step-down looks at the followers' acks meanwhile.
const HANDOVER_POLL_MS: u64 = 2;

/// The identity operations of one node.
#[derive(Debug)]
pub struct Service {
    shared: Arc<Shared>,
    passwords: PasswordPool,
    writer: crate::node::writer::Writer,
    replicator: Arc<Replicator>,
    replica: Replica,
    forwarder: Forwarder,
    addr: String,
}

impl Service {
    /// The service of the node described by `shared`, serving at `addr`; starts its writer
    /// and replication tasks.
    pub fn new(shared: Arc<Shared>, addr: String) -> Self {
        Service {
            writer: crate::node::writer::Writer::start(shared.clone()),
            replicator: Replicator::start(shared.clone()),
            forwarder: Forwarder::new(shared.cluster.clone(), shared.security.clone()),
            passwords: PasswordPool::default(),
            replica: Replica::default(),
            shared,
            addr,
        }
    }

    /// Serves `request` from the client at `client_addr` whose session has seen
    /// `session_clock`; returns the reply and the clock it reflects. Failures become error
    /// replies.
    pub async fn handle(
        &self,
        request: Request,
        client_addr: &str,
        session_clock: u64,
        fresh: bool,
    ) -> (Reply, u64) {
        let (started, op) = (std::time::Instant::now(), request.name());
        let outcome = self.serve(request, client_addr, session_clock, fresh).await;
        let outcome_name = match &outcome {
            Ok(_) => "ok",
            Err(err) => err.code().as_str(),
        };
        self.shared
            .metrics
            .request(op, outcome_name, started.elapsed());
        match outcome {
            Ok(answer) => answer,
            Err(err) => {
                let code = err.code();
                if code == ErrorCode::Internal {
                    tracing::error!(error = %err, "request failed");
                }
                let reply = Reply::Error(crate::wire::WireError {
                    code,
                    message: err.to_string(),
                });
                // A refusal reflects the state it was decided on, which may be newer than the
                // applied watermark: report the store's clock so the session never goes back
                // (if the store answers: else the refusal is that it does not).
                let applied = self.shared.applied();
                let clock = if self.shared.store_answers() {
                    self.shared
                        .store
                        .clock()
                        .await
                        .map_or(applied, |clock| clock.max(applied))
                } else {
                    applied
                };
                (reply, clock)
            }
        }
    }

    async fn serve(
        &self,
        request: Request,
        client_addr: &str,
        session_clock: u64,
        fresh: bool,
    ) -> Result<(Reply, u64)> {
        if !self.shared.store_answers() {
            return Err(Error::refused(
                ErrorCode::Unavailable,
                "this node's Redis does not answer",
            ));
        }
        let here = self.shared.applied();
        match request {
            Request::Status => Ok((self.status().await?, here)),
            Request::Events { since, limit } => {
                let events = self
                    .shared
                    .store
                    .events_after(since, limit.min(EVENTS_PAGE_MAX) as usize)
                    .await?;
                let events = events.into_iter().map(LoggedEvent::redacted).collect();
                Ok((Reply::Events(events), here))
            }
            Request::Replicate {
                epoch,
                prev,
                events,
            } => {
                let reply = self
                    .replica
                    .replicate(&self.shared, epoch, prev, events)
                    .await?;
                Ok((reply, self.shared.applied()))
            }
            Request::Snapshot {
                epoch,
                offset,
                sha256,
                data,
            } => {
                let reply = self
                    .replica
                    .snapshot(&self.shared, epoch, offset, sha256, data)
                    .await?;
                Ok((reply, self.shared.applied()))
            }
            Request::Forward {
                epoch,
                client_addr,
                request,
                password_hash,
                verified_uuid,
            } => {
                self.check_forward(epoch, &request)?;
                if client_addr.len() > crate::limits::CLIENT_ADDR_CHARS_MAX {
                    return Err(Error::refused(
                        ErrorCode::InvalidInput,
                        "the forwarded client address is too long",
                    ));
                }
                if let Some(hash) = &password_hash {
                    crate::password::check_hash(hash)?;
                }
                let prepared = Prepared {
                    password_hash,
                    verified_uuid,
                };
                let outcome = self
                    .serve_coordinated(*request, &client_addr, prepared, fresh)
                    .await;
                self.settled(epoch, outcome).await
            }
            Request::StepDown => Ok((self.step_down().await?, self.shared.applied())),
            request if request.is_write() => self.write(request, client_addr, fresh).await,
            request => self.read(request, session_clock).await,
        }
    }

    /// A write: password work here, then applied by the coordinator (us, or forwarded).
    /// `fresh`: the client sent the request id for the first time (see [`crate::wire::Envelope::fresh`]).
    async fn write(
        &self,
        request: Request,
        client_addr: &str,
        fresh: bool,
    ) -> Result<(Reply, u64)> {
        let state = self.shared.membership.state();
        let Some(coordinator) = usable_coordinator(&state) else {
            return Err(why_unusable(&state));
        };
        if state.view.role == Role::Coordinator {
            let outcome = match self.prepare(&request).await {
                Ok(prepared) => {
                    self.serve_coordinated(request, client_addr, prepared, fresh)
                        .await
                }
                Err(refusal) => Err(refusal),
            };
            return self.settled(state.view.epoch, outcome).await;
        }
        let prepared = self.prepare(&request).await?;
        let forward = Request::Forward {
            epoch: state.view.epoch,
            client_addr: client_addr.to_string(),
            request: Box::new(request),
            password_hash: prepared.password_hash,
            verified_uuid: prepared.verified_uuid,
        };
        self.forward(coordinator, 0, &forward, fresh).await
    }

    /// A read: served here once this node has applied what the client's session has seen
    /// (read-your-writes, monotonic reads); otherwise by the coordinator.
    async fn read(&self, request: Request, session_clock: u64) -> Result<(Reply, u64)> {
        let state = self.shared.membership.state();
        let follows = matches!(state.view.role, Role::Coordinator | Role::Follower)
            && state.view.coordinator.is_some();
        if !follows {
            return Err(no_coordinator());
        }
        // (The coordinator waits too: replicas may apply its events just before it does. It
        // serves even if it does not catch up: a session may have seen a tail it dropped.)
        let caught_up = !self.shared.syncing()
            && self
                .shared
                .wait_applied(session_clock, Duration::from_millis(READ_CATCH_UP_WAIT_MS))
                .await;
        let caught_up = caught_up || state.view.role == Role::Coordinator;
        if caught_up && !self.shared.syncing() {
            return self.serve_local_read(request).await;
        }
        let Some(coordinator) = usable_coordinator(&state) else {
            return Err(why_unusable(&state));
        };
        let forward = Request::Forward {
            epoch: state.view.epoch,
            client_addr: String::new(),
            request: Box::new(request),
            password_hash: None,
            verified_uuid: None,
        };
        self.forward(coordinator, session_clock, &forward, false)
            .await
    }

    async fn forward(
        &self,
        coordinator: std::net::SocketAddr,
        clock: u64,
        forward: &Request,
        fresh: bool,
    ) -> Result<(Reply, u64)> {
        match self
            .forwarder
            .forward(coordinator, clock, forward, fresh)
            .await
        {
            // The coordinator's refusal carries the clock of the state it saw.
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.shared.membership.notify(Input::CoordinatorUnreachable);
                Err(Error::refused(
                    ErrorCode::Unavailable,
                    format!(
                        "coordinator {coordinator} did not answer ({e}); an election may follow"
                    ),
                ))
            }
        }
    }

    /// Checks that a forwarded request may be served here: we coordinate its epoch.
    fn check_forward(&self, epoch: u64, request: &Request) -> Result<()> {
        if request.is_peer_only() {
            return Err(Error::refused(
                ErrorCode::InvalidInput,
                "this request cannot be forwarded",
            ));
        }
        if epoch > crate::limits::EPOCH_MAX {
            return Err(Error::refused(
                ErrorCode::InvalidInput,
                format!("epoch {epoch} is out of range"),
            ));
        }
        let view = self.shared.membership.state().view;
        if epoch > view.epoch {
            self.shared.membership.notify(Input::SawEpoch(epoch));
            return Err(unavailable(format!(
                "epoch {epoch} is newer than ours ({}): stepping down",
                view.epoch
            )));
        }
        if epoch < view.epoch || view.role != Role::Coordinator {
            return Err(unavailable(format!(
                "not the coordinator of epoch {epoch} (this node: {} in epoch {})",
                view.role.as_str(),
                view.epoch
            )));
        }
        Ok(())
    }

    /// Whether this node runs in strict mode.
    fn strict(&self) -> bool {
        self.shared.replication.strict_cluster_size.is_some()
    }

    /// In strict mode, on the coordinator of `epoch`: waits until the epoch is opened (its
    /// [`Change::Open`] applied here) and a majority holds everything this node's store holds
    /// now, so that an answer from that state (a read, a refusal, an earlier result) cannot be
    /// contradicted by a later election. Returns the clock the answer reflects.
    async fn committed(&self, epoch: u64) -> Result<u64> {
        self.writer.opened(&self.shared, epoch).await?;
        let clock = self.shared.store.clock().await?.max(self.shared.applied());
        self.replicator
            .wait_acked(&self.shared, clock, epoch)
            .await?;
        Ok(clock)
    }

    /// A coordinator's outcome for a write: in strict mode a refusal from the directory's
    /// state is a read of it, answered once that state is committed (else the reason it is not).
    async fn settled<T>(&self, epoch: u64, outcome: Result<T>) -> Result<T> {
        match outcome {
            Err(refusal) if self.strict() && refusal.code().is_about_state() => {
                self.committed(epoch).await?;
                Err(refusal)
            }
            other => other,
        }
    }

    /// Serves a request on the coordinator.
    async fn serve_coordinated(
        &self,
        request: Request,
        client_addr: &str,
        prepared: Prepared,
        fresh: bool,
    ) -> Result<(Reply, u64)> {
        if !request.is_write() {
            return self.serve_local_read(request).await;
        }
        let epoch = self.shared.membership.state().view.epoch;
        let (request_id, change) = self.change_for(request, client_addr, prepared).await?;
        match self.writer.write(request_id, change, fresh).await? {
            Applied::Done(result, clock) => {
                self.replicator
                    .wait_acked(&self.shared, clock, epoch)
                    .await?;
                Ok((reply_for(result), clock))
            }
            // The first attempt's event may still await its acknowledgements (or, made in an
            // earlier epoch, be committed only with this one's opening).
            Applied::Duplicate(first) if self.strict() => {
                Ok((reply_for(first), self.committed(epoch).await?))
            }
            Applied::Duplicate(first) => Ok((reply_for(first), self.shared.applied())),
        }
    }

    /// A read from this node's store, with the clock it reflects: the store's clock read after
    /// it, so that a session never sees older state later (monotonic reads) even when a write
    /// landed between the applied watermark and the read.
    ///
    /// In strict mode a coordinator answers only once a majority holds what it read: it
    /// applies its own writes before they are acknowledged, and a read must not show a write
    /// that a successor may drop (a lost majority, then an election). Usually immediate; with
    /// writes in flight, as long as their acknowledgements take.
    async fn serve_local_read(&self, request: Request) -> Result<(Reply, u64)> {
        let view = self
            .strict()
            .then(|| self.shared.membership.state().view)
            .filter(|v| v.role == Role::Coordinator);
        let outcome = self.serve_read(request).await;
        if let Some(view) = view {
            let outcome = self.settled(view.epoch, outcome).await?;
            return Ok((outcome, self.committed(view.epoch).await?));
        }
        let reply = outcome?;
        let clock = self.shared.store.clock().await?.max(self.shared.applied());
        Ok((reply, clock))
    }

    /// Password work on the node the client talked to: hash for a create; check for a modify
    /// or delete against this node's copy of the account (its hash never changes).
    async fn prepare(&self, request: &Request) -> Result<Prepared> {
        match request {
            Request::Create {
                password: Some(digest),
                ..
            } => Ok(Prepared {
                password_hash: Some(self.passwords.hash(digest.to_vec()).await?),
                verified_uuid: None,
            }),
            Request::Modify {
                old: login,
                password,
                ..
            }
            | Request::Delete {
                login, password, ..
            } => {
                let login = normalize_login(login)?;
                match self.shared.store.lookup(&login).await? {
                    Some(account) if account.password_hash.is_some() => {
                        self.check_password(&account, password.clone()).await?;
                        Ok(Prepared {
                            password_hash: None,
                            verified_uuid: Some(account.view.uuid),
                        })
                    }
                    _ => Ok(Prepared::default()),
                }
            }
            _ => Ok(Prepared::default()),
        }
    }

    /// The event a write makes, with its request id.
    async fn change_for(
        &self,
        request: Request,
        client_addr: &str,
        prepared: Prepared,
    ) -> Result<(Uuid, Change)> {
        match request {
            Request::Create {
                login,
                real_name,
                password,
                request_id,
            } => {
                let login = normalize_login(&login)?;
                check_real_name(&real_name)?;
                let password_hash = match (prepared.password_hash, password) {
                    (Some(hash), _) => Some(hash),
                    (None, Some(digest)) => Some(self.passwords.hash(digest.into_vec()).await?),
                    (None, None) => None,
                };
                let change = Change::Create {
                    uuid: Uuid::new_v4(),
                    login,
                    real_name,
                    client_addr: client_addr.to_string(),
                    password_hash,
                };
                Ok((request_id, change))
            }
            Request::Modify {
                old,
                new,
                password,
                request_id,
            } => {
                let old = normalize_login(&old)?;
                let new = normalize_login(&new)?;
                let account = self
                    .account_for_write(&old, password, prepared.verified_uuid, request_id)
                    .await?;
                Ok((
                    request_id,
                    Change::Rename {
                        uuid: account,
                        old,
                        new,
                    },
                ))
            }
            Request::Delete {
                login,
                password,
                request_id,
            } => {
                let login = normalize_login(&login)?;
                let account = self
                    .account_for_write(&login, password, prepared.verified_uuid, request_id)
                    .await?;
                Ok((
                    request_id,
                    Change::Delete {
                        uuid: account,
                        login,
                    },
                ))
            }
            _ => Err(Error::refused(ErrorCode::InvalidInput, "not a write")),
        }
    }

    /// The UUID of the account a modify or delete is about, once its password is checked (here,
    /// unless the forwarding node checked it for this very account). A retry of a write that
    /// already happened finds its first result instead.
    async fn account_for_write(
        &self,
        login: &str,
        password: Option<ByteBuf>,
        verified_uuid: Option<Uuid>,
        request_id: Uuid,
    ) -> Result<Uuid> {
        let account = match self.shared.store.lookup(login).await? {
            Some(account) => account,
            None => match self.shared.store.request_result(request_id).await? {
                // The account is gone because this very request removed or renamed it.
                Some(first) => return Ok(first.uuid),
                None => return Err(not_found(&format!("no account has login {login:?}"))),
            },
        };
        if verified_uuid != Some(account.view.uuid) {
            self.check_password(&account, password).await?;
        }
        Ok(account.view.uuid)
    }

    async fn serve_read(&self, request: Request) -> Result<Reply> {
        let store = &self.shared.store;
        match request {
            Request::Lookup { login } => {
                let login = normalize_login(&login)?;
                match store.lookup(&login).await? {
                    Some(account) => Ok(Reply::Account(account.view)),
                    None => Err(not_found(&format!("no account has login {login:?}"))),
                }
            }
            Request::ReverseLookup { uuid } => match store.reverse_lookup(uuid).await? {
                Some(account) => Ok(Reply::Account(account.view)),
                None => Err(not_found(&format!("no account has UUID {uuid}"))),
            },
            Request::List { what, from } => {
                let (entries, next) = store.logins_page(from, LIST_PAGE_ENTRIES).await?;
                let page = match what {
                    ListKind::Users => Listing::Users(entries.into_keys().collect()),
                    ListKind::Uuids => {
                        let mut uuids: Vec<Uuid> = entries.into_values().collect();
                        uuids.sort();
                        Listing::Uuids(uuids)
                    }
                    ListKind::All => Listing::All(store.accounts_of(&entries).await?),
                };
                Ok(Reply::Listed { page, next })
            }
            _ => Err(Error::refused(ErrorCode::InvalidInput, "not a read")),
        }
    }

    async fn check_password(&self, account: &StoredAccount, given: Option<ByteBuf>) -> Result<()> {
        let Some(stored) = &account.password_hash else {
            return Ok(());
        };
        let Some(digest) = given else {
            return Err(Error::refused(
                ErrorCode::PasswordRequired,
                format!(
                    "account {:?} has a password; give it with --password",
                    account.view.login
                ),
            ));
        };
        if self
            .passwords
            .verify(digest.into_vec(), stored.clone())
            .await?
        {
            Ok(())
        } else {
            Err(Error::refused(
                ErrorCode::WrongPassword,
                format!("wrong password for account {:?}", account.view.login),
            ))
        }
    }

    /// Hands over to the most caught-up follower (see [`Request::StepDown`]): holds new
    /// writes, waits until that follower acknowledged everything decided here (at most
    /// [`HANDOVER_TIMEOUT_MS`]), then tells the cluster task to hand over.
    async fn step_down(&self) -> Result<Reply> {
        let view = self.shared.membership.state().view;
        if view.role != Role::Coordinator {
            let coordinator = view
                .coordinator
                .map_or("none known".to_string(), |c| c.addr.to_string());
            return Err(Error::refused(
                ErrorCode::Unavailable,
                format!("this node is not the coordinator (the coordinator: {coordinator})"),
            ));
        }
        let epoch = view.epoch;
        let started = std::time::Instant::now();
        let _held = self.writer.hold().await;
        loop {
            let view = self.shared.membership.state().view;
            if view.role != Role::Coordinator || view.epoch != epoch {
                return Err(Error::refused(
                    ErrorCode::Unavailable,
                    "this node stopped coordinating before it could hand over",
                ));
            }
            let decided = self.shared.decided();
            let Some((successor, acked)) = self.replicator.most_caught_up(&self.shared, &view)
            else {
                return Err(Error::refused(
                    ErrorCode::Unavailable,
                    "no follower answers this coordinator: none to hand over to",
                ));
            };
            if acked >= decided {
                self.shared.membership.notify(crate::core::Input::HandOver {
                    to: successor.node_id,
                });
                // Writes stay held until this node no longer coordinates: one decided in
                // between could be acknowledged by another replica and not be the successor's.
                let mut views = self.shared.membership.watch();
                let handed = tokio::time::timeout(
                    Duration::from_millis(HANDOVER_TIMEOUT_MS),
                    views.wait_for(|s| s.view.role != Role::Coordinator || s.view.epoch != epoch),
                )
                .await;
                if !matches!(handed, Ok(Ok(_))) {
                    return Err(Error::refused(
                        ErrorCode::Internal,
                        "the cluster task did not take the hand-over",
                    ));
                }
                tracing::info!(successor = %successor.addr, clock = acked, "stepping down: handed over");
                return Ok(Reply::SteppedDown {
                    successor: successor.addr.to_string(),
                    clock: acked,
                });
            }
            if started.elapsed() >= Duration::from_millis(HANDOVER_TIMEOUT_MS) {
                return Err(Error::refused(
                    ErrorCode::AckTimeout,
                    format!(
                        "no follower acknowledged event {decided} within {HANDOVER_TIMEOUT_MS} ms                          (the most caught-up, {}, is at {acked}); still coordinating",
                        successor.addr
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(HANDOVER_POLL_MS)).await;
        }
    }

    /// Starts a backup (see [`crate::backup`]): with every write to this node's Redis held
    /// for the instant it forks, reads the clock, epoch and account count and opens the
    /// snapshot stream, so that they agree. Returns them (length and checksum still zero) and
    /// the stream.
    pub async fn begin_backup(&self) -> Result<(BackupInfo, RdbStream)> {
        if self.shared.syncing() {
            return Err(Error::refused(
                ErrorCode::Unavailable,
                "this node is installing a full snapshot: back up another one, or retry",
            ));
        }
        // A connection of its own: the node's shared one may carry a write that the pause
        // holds, and every read queued behind it would wait with it.
        let store = &crate::store::Store::connect(self.shared.store.url()).await?;
        let started = std::time::Instant::now();
        store.pause_writes(BACKUP_PAUSE_MS).await?;
        let taken = async {
            let clock = store.clock().await?;
            let epoch = store.epoch().await?;
            let accounts = store.count().await?;
            let stream = RdbStream::open(store.url()).await?;
            Ok::<_, Error>((clock, epoch, accounts, stream))
        }
        .await;
        let resumed = store.resume_writes().await;
        let (clock, epoch, accounts, stream) = taken?;
        resumed?;
        if started.elapsed() >= Duration::from_millis(BACKUP_PAUSE_MS) {
            return Err(Error::refused(
                ErrorCode::Unavailable,
                format!(
                    "Redis took longer than {BACKUP_PAUSE_MS} ms to start the snapshot (a disk-based \
                     one?), so writes may have slipped in: the backup would not be consistent"
                ),
            ));
        }
        let info = BackupInfo {
            cluster: self.shared.cluster.clone(),
            node_id: self.shared.node_id,
            clock,
            epoch,
            accounts,
            bytes: 0,
            sha256: ByteBuf::new(),
            made_ms: crate::time::now_ms(),
        };
        Ok((info, stream))
    }

    async fn status(&self) -> Result<Reply> {
        let ClusterState {
            view,
            ignored_datagrams,
        } = self.shared.membership.state();
        let now_ms = self.shared.membership.now_ms();
        let rejected = self.shared.rejections.counts();
        let members = view
            .members
            .iter()
            .filter_map(|m| {
                Some(MemberStatus {
                    rank: m.node.rank?,
                    addr: m.node.addr.to_string(),
                    node_id: m.node.node_id,
                    last_seen_ms_ago: now_ms.saturating_sub(m.last_seen_ms),
                })
            })
            .collect();
        Ok(Reply::Status(StatusView {
            node_id: self.shared.node_id,
            cluster: self.shared.cluster.clone(),
            addr: self.addr.clone(),
            rank: view.me.rank,
            role: view.role,
            epoch: view.epoch,
            coordinator_rank: view.coordinator.and_then(|c| c.rank),
            coordinator_addr: view.coordinator.map(|c| c.addr.to_string()),
            // A snapshot being installed counts once it is (its Redis may hold it earlier).
            clock: if self.shared.syncing() {
                self.shared.applied()
            } else {
                self.shared.store.clock().await?
            },
            accounts: self.shared.store.count().await?,
            members,
            elections_started: view.elections_started,
            ignored_datagrams,
            failed_rounds: view.failed_rounds,
            last_failure: view.last_failure.map(|f| f.as_str().to_string()),
            rtt_ms: view.rtt_ms,
            authenticated: matches!(
                self.shared.security,
                crate::security::Security::Authenticated(_)
            ),
            rejected_datagrams: rejected.datagrams,
            rejected_connections: rejected.connections,
            rejected_requests: rejected.requests,
        }))
    }
}

/// The coordinator to send writes (and reads this node cannot serve) to, if one is known.
/// The coordinator to forward to, if this node follows one it can hear. A follower cut off
/// from the coordinator's messages (a one-way cut) refuses as unavailable, so clients fail
/// over to another server instead of waiting on answers that cannot arrive.
fn usable_coordinator(state: &ClusterState) -> Option<std::net::SocketAddr> {
    match state.view.role {
        Role::Coordinator => state.view.coordinator.map(|c| c.addr),
        Role::Follower if state.view.hears_coordinator => state.view.coordinator.map(|c| c.addr),
        Role::Follower | Role::Joining | Role::Candidate => None,
    }
}

/// Why [`usable_coordinator`] gave none.
fn why_unusable(state: &ClusterState) -> Error {
    if state.view.role == Role::Follower && state.view.coordinator.is_some() {
        unavailable("this node does not hear the coordinator right now: ask another server".into())
    } else {
        no_coordinator()
    }
}

fn no_coordinator() -> Error {
    unavailable("no coordinator is known: an election is under way".to_string())
}

fn reply_for(result: WriteResult) -> Reply {
    match result.kind {
        "create" => Reply::Created { uuid: result.uuid },
        "rename" => Reply::Modified { uuid: result.uuid },
        _ => Reply::Deleted { uuid: result.uuid },
    }
}

fn unavailable(message: String) -> Error {
    Error::refused(ErrorCode::Unavailable, message)
}

fn not_found(message: &str) -> Error {
    Error::refused(ErrorCode::NotFound, message)
}
