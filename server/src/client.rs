//! The client library: one connection at a time to one of the known servers, failing over to
//! the next on a network error or an "unavailable" answer. Writes keep their request id across
//! retries, so a retry never writes twice.

use crate::account::AccountView;
use crate::config::DEFAULT_CLUSTER;
use crate::connection::{Connection, Transport};
use crate::discovery::Discovery;
use crate::error::{Error, ErrorCode, Result};
use crate::event::LoggedEvent;
use crate::limits::{
    CLIENT_CONNECT_TIMEOUT_MS, CLIENT_LAST_TRY_MS, CLIENT_REPLY_TIMEOUT_MS, CLIENT_RETRY_FOR_MS,
    CLIENT_RETRY_PAUSE_MS, CONNECTION_REUSE_IDLE_MAX_MS, EVENTS_PAGE_MAX, REPLY_FRAME_BYTES_MAX,
    REQUEST_FRAME_BYTES_MAX,
};
use crate::password::client_digest;
use crate::wire::{decode, encode, Envelope, ListKind, Listing, Reply, Request, StatusView};
use serde_bytes::ByteBuf;
use std::time::Duration;
use uuid::Uuid;

/// Where and how a client connects.
///
/// Defaults: no servers, cluster `idlab`, 1 s to connect, 10 s for a reply, retry for 3 s,
/// plain TCP (set `transport` to TLS with the cluster's CA for a cluster that has one).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Servers as `host:port`, tried in this order.
    pub servers: Vec<String>,
    /// The cluster the client means to talk to.
    pub cluster: String,
    /// How long to wait for a connection to one server.
    pub connect_timeout_ms: u64,
    /// How long to wait for one reply.
    pub reply_timeout_ms: u64,
    /// How long to keep retrying while servers answer "unavailable" or none answers.
    pub retry_for_ms: u64,
    /// TLS (verifying servers against the cluster's CA) or plain TCP.
    pub transport: Transport,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            servers: Vec::new(),
            cluster: DEFAULT_CLUSTER.to_string(),
            connect_timeout_ms: CLIENT_CONNECT_TIMEOUT_MS,
            reply_timeout_ms: CLIENT_REPLY_TIMEOUT_MS,
            retry_for_ms: CLIENT_RETRY_FOR_MS,
            transport: Transport::InsecurePlaintext,
        }
    }
}

/// A client session.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    /// Index into `config.servers` of the server we are bound to, with its connection.
    bound: Option<(usize, Connection)>,
    seq: u64,
    session_clock: u64,
}

impl Client {
    /// A client for the servers in `config` (nothing is connected until the first call).
    pub fn new(config: ClientConfig) -> Self {
        Client {
            config,
            bound: None,
            seq: 0,
            session_clock: 0,
        }
    }

    /// A client for one server at `addr` (`host:port`) of the default cluster.
    pub fn to(addr: impl Into<String>) -> Self {
        Client::new(ClientConfig {
            servers: vec![addr.into()],
            ..ClientConfig::default()
        })
    }

    /// The server currently bound to, if any.
    pub fn bound_server(&self) -> Option<&str> {
        self.bound
            .as_ref()
            .map(|(i, _)| self.config.servers[*i].as_str())
    }

    /// A client for the servers `discovery` finds, fastest first, connecting over
    /// `transport`.
    pub async fn discover(
        discovery: &Discovery,
        cluster: &str,
        transport: Transport,
    ) -> Result<Client> {
        let found = discovery.run(cluster).await?;
        Ok(Client::new(ClientConfig {
            servers: found.servers.iter().map(|s| s.to_string()).collect(),
            cluster: cluster.to_string(),
            transport,
            ..ClientConfig::default()
        }))
    }

    /// The servers this client knows, in the order it tries them.
    pub fn servers(&self) -> &[String] {
        &self.config.servers
    }

    /// Sends `request` to the bound server, failing over to the others in order, and retrying
    /// the whole list for a while when every server is unavailable or unreachable. A write
    /// keeps its request id throughout, so it is applied at most once.
    pub async fn call(&mut self, request: Request) -> Result<Reply> {
        self.call_marked(request, false).await
    }

    /// As [`Client::call`], for a write whose request id the caller has just made and never
    /// sent: its first attempt says so, which spares the coordinator looking for an earlier
    /// result; every later attempt (failover, retry) is an ordinary retry. Passing a request
    /// id sent before here may apply the write twice.
    pub async fn call_new(&mut self, request: Request) -> Result<Reply> {
        self.call_marked(request, true).await
    }

    async fn call_marked(&mut self, request: Request, mut fresh: bool) -> Result<Reply> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.retry_for_ms);
        loop {
            match self.call_each(&request, &mut fresh, deadline).await {
                Err(err) if err.code().is_retryable() && err.code() != ErrorCode::AckTimeout => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(err);
                    }
                    tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_PAUSE_MS)).await;
                }
                result => return result,
            }
        }
    }

    /// One pass over the servers.
    /// `fresh`: whether the request id was never sent; cleared by the first attempt.
    /// `deadline`: when retrying ends; no wait for a connection or reply runs past it by more
    /// than one reply timeout, so a hung server costs no more than a dead one.
    async fn call_each(
        &mut self,
        request: &Request,
        fresh: &mut bool,
        deadline: tokio::time::Instant,
    ) -> Result<Reply> {
        let count = self.config.servers.len();
        if count == 0 {
            return Err(Error::refused(
                ErrorCode::Unreachable,
                "no server to talk to",
            ));
        }
        let first = self.bound.as_ref().map_or(0, |(i, _)| *i);
        let mut failures = Vec::new();
        let mut unavailable = None;
        for step in 0..count {
            let index = (first + step) % count;
            let attempt = self
                .call_one(index, request, std::mem::take(fresh), deadline)
                .await;
            match attempt {
                Ok(Reply::Error(err)) if err.code == ErrorCode::Unavailable => {
                    unavailable = Some(Error::refused(err.code, err.message));
                }
                Ok(Reply::Error(err)) => return Err(Error::refused(err.code, err.message)),
                Ok(reply) => return Ok(reply),
                Err(err) => {
                    self.bound = None;
                    failures.push(format!("{}: {err}", self.config.servers[index]));
                }
            }
        }
        Err(unavailable.unwrap_or_else(|| {
            Error::refused(
                ErrorCode::Unreachable,
                format!("no server answered ({})", failures.join("; ")),
            )
        }))
    }

    async fn call_one(
        &mut self,
        index: usize,
        request: &Request,
        fresh: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Reply> {
        // Past the deadline every server still gets one short try.
        let left_ms = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis() as u64;
        let left_ms = left_ms.max(CLIENT_LAST_TRY_MS);
        // A connection unused for long may be one the server is closing: open a new one.
        let stale = Duration::from_millis(CONNECTION_REUSE_IDLE_MAX_MS);
        if self
            .bound
            .as_ref()
            .is_none_or(|(i, conn)| *i != index || conn.idle_for() >= stale)
        {
            let addr = &self.config.servers[index];
            let connect_ms = self.config.connect_timeout_ms.min(left_ms);
            let conn = Connection::connect(
                addr,
                connect_ms,
                REPLY_FRAME_BYTES_MAX,
                &self.config.transport,
            )
            .await?;
            self.bound = Some((index, conn));
        }
        self.seq += 1;
        let (_, conn) = self.bound.as_mut().expect("bound above");
        let reply_timeout = Duration::from_millis(self.config.reply_timeout_ms.min(left_ms));
        let (reply, clock) = exchange(
            conn,
            &self.config.cluster,
            self.seq,
            self.session_clock,
            request,
            fresh,
            reply_timeout,
        )
        .await?;
        self.session_clock = self.session_clock.max(clock);
        Ok(reply)
    }

    /// The highest clock this session has seen: reads anywhere reflect at least this much.
    pub fn session_clock(&self) -> u64 {
        self.session_clock
    }

    /// Creates an account; returns its new UUID.
    pub async fn create(
        &mut self,
        login: &str,
        real_name: &str,
        password: Option<&str>,
    ) -> Result<Uuid> {
        let request = Request::Create {
            login: login.to_string(),
            real_name: real_name.to_string(),
            password: password.map(digest),
            request_id: Uuid::new_v4(),
        };
        match self.call_new(request).await? {
            Reply::Created { uuid } => Ok(uuid),
            other => Err(unexpected(&other)),
        }
    }

    /// The account with this login name.
    pub async fn lookup(&mut self, login: &str) -> Result<AccountView> {
        self.account(Request::Lookup {
            login: login.to_string(),
        })
        .await
    }

    /// The account with this UUID.
    pub async fn reverse_lookup(&mut self, uuid: Uuid) -> Result<AccountView> {
        self.account(Request::ReverseLookup { uuid }).await
    }

    async fn account(&mut self, request: Request) -> Result<AccountView> {
        match self.call(request).await? {
            Reply::Account(view) => Ok(view),
            other => Err(unexpected(&other)),
        }
    }

    /// Renames `old` to `new`; returns the (unchanged) UUID.
    pub async fn modify(&mut self, old: &str, new: &str, password: Option<&str>) -> Result<Uuid> {
        let request = Request::Modify {
            old: old.to_string(),
            new: new.to_string(),
            password: password.map(digest),
            request_id: Uuid::new_v4(),
        };
        match self.call_new(request).await? {
            Reply::Modified { uuid } => Ok(uuid),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes an account; returns the UUID it had.
    pub async fn delete(&mut self, login: &str, password: Option<&str>) -> Result<Uuid> {
        let request = Request::Delete {
            login: login.to_string(),
            password: password.map(digest),
            request_id: Uuid::new_v4(),
        };
        match self.call_new(request).await? {
            Reply::Deleted { uuid } => Ok(uuid),
            other => Err(unexpected(&other)),
        }
    }

    /// Every login name, sorted.
    pub async fn users(&mut self) -> Result<Vec<String>> {
        let mut users = self
            .list(ListKind::Users, |page| match page {
                Listing::Users(page) => Ok(page),
                other => Err(other),
            })
            .await?;
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// Every UUID, sorted.
    pub async fn uuids(&mut self) -> Result<Vec<Uuid>> {
        let mut uuids = self
            .list(ListKind::Uuids, |page| match page {
                Listing::Uuids(page) => Ok(page),
                other => Err(other),
            })
            .await?;
        uuids.sort();
        uuids.dedup();
        Ok(uuids)
    }

    /// Every account, sorted by login name.
    pub async fn all(&mut self) -> Result<Vec<AccountView>> {
        let mut accounts = self
            .list(ListKind::All, |page| match page {
                Listing::All(page) => Ok(page),
                other => Err(other),
            })
            .await?;
        accounts.sort_by(|a, b| a.login.cmp(&b.login));
        accounts.dedup_by(|a, b| a.login == b.login);
        Ok(accounts)
    }

    /// The pages of a listing asked one after another, their entries together (`entries`
    /// takes a page's, or gives back a page of another kind). Pages name the same login index hashes
    /// on every node, so a failover between two pages loses nothing.
    async fn list<T>(
        &mut self,
        what: ListKind,
        entries: impl Fn(Listing) -> std::result::Result<Vec<T>, Listing>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut from = 0;
        loop {
            let (page, next) = match self.call(Request::List { what, from }).await? {
                Reply::Listed { page, next } => (page, next),
                other => return Err(unexpected(&other)),
            };
            all.extend(entries(page).map_err(|other| {
                Error::refused(
                    ErrorCode::BadFrame,
                    format!("unexpected listing page {other:?}"),
                )
            })?);
            match next {
                None => return Ok(all),
                Some(next) if next > from => from = next,
                Some(next) => {
                    return Err(Error::refused(
                        ErrorCode::BadFrame,
                        format!("a listing page from {from} named {next} as the next"),
                    ))
                }
            }
        }
    }

    /// Events the bound server applied with a clock above `since` (at most `limit`), asked
    /// for a page of at most [`EVENTS_PAGE_MAX`] at a time (a server answers no more).
    pub async fn events(&mut self, since: u64, limit: u32) -> Result<Vec<LoggedEvent>> {
        let mut all = Vec::new();
        let mut after = since;
        while all.len() < limit as usize {
            let asked = (limit - all.len() as u32).min(EVENTS_PAGE_MAX);
            let page = match self
                .call(Request::Events {
                    since: after,
                    limit: asked,
                })
                .await?
            {
                Reply::Events(events) => events,
                other => return Err(unexpected(&other)),
            };
            if page.len() > asked as usize {
                return Err(Error::refused(
                    ErrorCode::BadFrame,
                    format!("{} events answered where {asked} were asked", page.len()),
                ));
            }
            let full = page.len() == asked as usize;
            match page.last() {
                Some(last) if last.event.clock > after => after = last.event.clock,
                _ => return Ok(all),
            }
            all.extend(page);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// Asks the coordinator to hand over to its most caught-up follower (see
    /// [`Request::StepDown`]; needs a node certificate); returns the successor's address and
    /// the clock it had acknowledged. Sent to the servers in turn: followers refuse it.
    pub async fn step_down(&mut self) -> Result<(String, u64)> {
        match self.call(Request::StepDown).await? {
            Reply::SteppedDown { successor, clock } => Ok((successor, clock)),
            other => Err(unexpected(&other)),
        }
    }

    /// The bound server's view of itself.
    pub async fn status(&mut self) -> Result<StatusView> {
        match self.call(Request::Status).await? {
            Reply::Status(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }
}

/// Sends one request carrying the session clock `clock` on `conn`; returns the reply and the
/// clock it reflects.
pub(crate) async fn exchange(
    conn: &mut Connection,
    cluster: &str,
    seq: u64,
    clock: u64,
    request: &Request,
    fresh: bool,
    reply_timeout: Duration,
) -> Result<(Reply, u64)> {
    let frame = request_frame(cluster, seq, clock, request, fresh)?;
    exchange_frame(conn, seq, &frame, reply_timeout).await
}

/// The frame of request number `seq` carrying the session clock `clock` (and, for a write,
/// whether its request id is sent for the first time: see [`Envelope::fresh`]).
pub fn request_frame(
    cluster: &str,
    seq: u64,
    clock: u64,
    request: &Request,
    fresh: bool,
) -> Result<Vec<u8>> {
    let mut envelope = Envelope::new(cluster, seq, request);
    envelope.clock = clock;
    envelope.fresh = fresh;
    Ok(encode(&envelope, REQUEST_FRAME_BYTES_MAX)?)
}

/// Sends request number `seq`, already framed, on `conn`; returns the reply and the clock it
/// reflects.
pub(crate) async fn exchange_frame(
    conn: &mut Connection,
    seq: u64,
    frame: &[u8],
    reply_timeout: Duration,
) -> Result<(Reply, u64)> {
    let exchange = async {
        conn.write_frame(frame).await?;
        conn.read_frame().await
    };
    let payload = tokio::time::timeout(reply_timeout, exchange)
        .await
        .map_err(|_| Error::refused(ErrorCode::Unreachable, "no reply in time"))??
        .ok_or_else(|| Error::refused(ErrorCode::Unreachable, "server closed the connection"))?;
    let envelope: Envelope<Reply> = decode(&payload)?;
    if envelope.seq != seq && !matches!(envelope.body, Reply::Error(_)) {
        return Err(Error::refused(
            ErrorCode::BadFrame,
            format!(
                "reply to request {} arrived for request {seq}",
                envelope.seq
            ),
        ));
    }
    Ok((envelope.body, envelope.clock))
}

fn digest(password: &str) -> ByteBuf {
    ByteBuf::from(client_digest(password))
}

fn unexpected(reply: &Reply) -> Error {
    Error::refused(ErrorCode::BadFrame, format!("unexpected reply {reply:?}"))
}
