//! The directory in one Redis, laid out so that a snapshot is mostly small packed hashes
//! (Redis keeps a hash of up to `hash-max-listpack-entries` short fields as one blob, which a
//! snapshot copies whole instead of entry by entry):
//!
//! - accounts in 65,536 hashes `idlab:acct:<first 2 UUID bytes, hex>`: field = the 16 UUID
//!   bytes -> the record fixed at creation, field = UUID bytes + `l` -> the changing part
//!   (changed time and login);
//! - the login index in 65,536 hashes `idlab:login:<16 bits of the login's FNV-1a hash, hex>`:
//!   login -> 16 UUID bytes; `idlab:count`, the number of accounts;
//! - recent request results in hashes `idlab:requests:<period>:<first 12 bits of the request
//!   id, hex>` (see [`request_key`]);
//! - the node's applied clock (`idlab:clock`), epoch (`idlab:epoch`), identity (`idlab:meta`)
//!   and the bounded event log (`idlab:events`, packed entries: see [`super::log_entry`]).
//!
//! Events are written in `MULTI`/`EXEC` transactions (or, for a lone write, a script that
//! checks its preconditions first) that also move the clock, so a crash never leaves a
//! half-applied event; the node is its Redis's only writer.
//!
//! This file holds the connection, the clock and epoch, applying events and reading; key names
//! and encodings are in [`super::keys`], deciding and building a batch in [`super::batch`], the
//! first layout's upgrade in [`super::layout`].

use super::batch::*;
use super::keys::*;
use super::log_entry;
use super::records::{Applied, StoredAccount, WriteResult};
use crate::account::AccountView;
use crate::error::{Error, Result};
use crate::event::{Event, LoggedEvent};
use crate::limits::{
    ACCOUNTS_PER_BATCH, LIST_SHARDS_PER_READ, SPECULATE_EVENTS_MAX, STORE_CONNECT_MS,
    STORE_CONNECT_WAIT_MS, STORE_PROBE_MS,
};
use crate::time::now_ms;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static RAISE_EPOCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("raise_epoch.lua")));
static LOOKUP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lookup.lua")));
static GUARDED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("guarded.lua")));

/// A connection to the node's Redis (multiplexed: clones share it; it reconnects by itself,
/// e.g. after a full sync restarted the node's Redis).
#[derive(Clone)]
pub struct Store {
    pub(super) conn: ConnectionManager,
    pub(super) url: String,
    /// Held while writing events, so this node's writes never interleave; holds the stored
    /// clock as the last write left it (`None`: unknown, read it again).
    pub(super) writes: Arc<Mutex<Option<u64>>>,
    /// The request-result hashes this process has given their expiry.
    pub(super) expiring: Arc<std::sync::Mutex<ExpiryMarks>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// `7.0.15` as (7, 0).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_then_minor() {
        assert_eq!(major_minor("7.0.15"), Some((7, 0)));
        assert_eq!(major_minor("7.2"), Some((7, 2)));
        assert!(major_minor("6.2.14").unwrap() < REDIS_VERSION_MIN);
        assert!(major_minor("10.0.0").unwrap() > REDIS_VERSION_MIN);
        assert_eq!(major_minor("unstable"), None);
        assert_eq!(major_minor("7"), None);
    }
}

/// The oldest Redis (major, minor) the server runs on: its own Redis keeps a multi-part
/// append-only file (`appendonlydir`), new in 7.0, and 7.0 is what the tests run.
pub const REDIS_VERSION_MIN: (u32, u32) = (7, 0);

/// An account's two fields as read (fixed, changing), either missing.
type AccountParts = (Option<Vec<u8>>, Option<Vec<u8>>);

impl Store {
    /// Connects to the Redis at `url` (`redis://host:port/db` or `unix:///path/to.sock`),
    /// trying again for up to [`STORE_CONNECT_WAIT_MS`] while it is not up yet.
    ///
    /// Once connected, a connection that breaks is made again on the next command that fails,
    /// at once and each attempt bounded by [`STORE_CONNECT_MS`]: the connection manager's own
    /// back-off (a first retry after one to two seconds) would keep the node off a Redis that
    /// came back in a few hundred milliseconds (a container started again) for longer than its
    /// peers wait before electing another coordinator. Callers retry failed writes themselves.
    pub async fn connect(url: &str) -> Result<Store> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Duration::from_millis(STORE_CONNECT_MS));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(STORE_CONNECT_WAIT_MS);
        let conn = loop {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(conn) => break conn,
                Err(e) if e.is_io_error() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(STORE_PROBE_MS)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Store {
            conn,
            url: url.to_string(),
            writes: Arc::default(),
            expiring: Arc::default(),
        })
    }

    /// Refuses a Redis older than [`REDIS_VERSION_MIN`] (or one that does not say its
    /// version), naming the version found.
    pub async fn check_version(&self) -> Result<()> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn.clone())
            .await?;
        let found = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .map(str::trim);
        match found.and_then(major_minor) {
            Some(version) if version >= REDIS_VERSION_MIN => Ok(()),
            _ => Err(Error::Config(format!(
                "the Redis at {} is version {}; idserver needs Redis {}.{} or newer",
                super::redact_url(&self.url),
                found.unwrap_or("(not reported)"),
                REDIS_VERSION_MIN.0,
                REDIS_VERSION_MIN.1
            ))),
        }
    }

    /// Holds every client's writes in this Redis (`CLIENT PAUSE … WRITE`) for at most
    /// `timeout_ms`, or until [`Store::resume_writes`]; reads go on.
    pub async fn pause_writes(&self, timeout_ms: u64) -> Result<()> {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(timeout_ms)
            .arg("WRITE")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Ends [`Store::pause_writes`].
    pub async fn resume_writes(&self) -> Result<()> {
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Keys in the database (0: an empty one).
    pub async fn keys(&self) -> Result<u64> {
        Ok(redis::cmd("DBSIZE")
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Accounts counted one by one (the entries of every login-index hash), unlike
    /// [`Store::count`], which reads the counter kept with them: a restore checks one
    /// against the other.
    pub async fn count_logins(&self) -> Result<u64> {
        let mut total = 0u64;
        let shards: Vec<u32> = (0..super::keys::LOGIN_SHARDS).collect();
        for chunk in shards.chunks(4096) {
            let mut pipe = redis::pipe();
            for n in chunk {
                pipe.cmd("HLEN").arg(super::keys::login_shard_key(*n));
            }
            let lens: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
            total += lens.iter().sum::<u64>();
        }
        Ok(total)
    }

    /// Waits until Redis answers again (after a restart), up to `timeout`.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pong: redis::RedisResult<String> =
                redis::cmd("PING").query_async(&mut self.conn.clone()).await;
            match pong {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    /// Waits up to `timeout` until Redis's append-only file holds all its data: no rewrite
    /// running or pending, the last one not failed (or the file off). Returns whether it does.
    /// After a full sync Redis rebuilds the file from the loaded data, and until that is done
    /// a restart would bring the data from before the sync back.
    pub async fn wait_persisted(&self, timeout: std::time::Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut self.conn.clone())
                .await?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
            };
            let busy = field("aof_rewrite_in_progress") == Some("1")
                || field("aof_rewrite_scheduled") == Some("1")
                || field("aof_last_bgrewrite_status") == Some("err");
            if field("aof_enabled") != Some("1") || !busy {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Replaces this database with the one at `source_url` without stopping this Redis: copies
    /// every key (DUMP / RESTORE, with its TTL) into the next database (the spare), swaps the two
    /// (`SWAPDB`, atomic: readers never see a half-copied database) and empties the spare.
    pub async fn replace_from(&self, source_url: &str) -> Result<()> {
        let info: String = redis::cmd("CLIENT")
            .arg("INFO")
            .query_async(&mut self.conn.clone())
            .await?;
        let db: u32 = info
            .split_whitespace()
            .find_map(|field| field.strip_prefix("db=")?.parse().ok())
            .ok_or_else(|| corrupt(format!("CLIENT INFO without a db: {info:?}")))?;
        let spare = db + 1;
        let mut target = redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let mut source = redis::Client::open(source_url)?
            .get_multiplexed_async_connection()
            .await?;
        let _: () = redis::cmd("SELECT")
            .arg(spare)
            .query_async(&mut target)
            .await?;
        let _: () = redis::cmd("FLUSHDB").query_async(&mut target).await?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(ACCOUNTS_PER_BATCH)
                .query_async(&mut source)
                .await?;
            if !keys.is_empty() {
                let mut read = redis::pipe();
                for key in &keys {
                    read.cmd("PTTL").arg(key).cmd("DUMP").arg(key);
                }
                let dumped: Vec<redis::Value> = read.query_async(&mut source).await?;
                let mut write = redis::pipe();
                for (key, pair) in keys.iter().zip(dumped.chunks(2)) {
                    let ttl: i64 = redis::from_redis_value(&pair[0])?;
                    let payload: Option<Vec<u8>> = redis::from_redis_value(&pair[1])?;
                    // Expired between SCAN and DUMP.
                    let Some(payload) = payload else { continue };
                    write
                        .cmd("RESTORE")
                        .arg(key)
                        .arg(ttl.max(0))
                        .arg(payload)
                        .arg("REPLACE")
                        .ignore();
                }
                let _: () = write.query_async(&mut target).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let _: () = redis::cmd("SWAPDB")
            .arg(db)
            .arg(spare)
            .query_async(&mut target)
            .await?;
        let _: () = redis::cmd("FLUSHDB")
            .arg("ASYNC")
            .query_async(&mut target)
            .await?;
        Ok(())
    }

    /// The URL this store connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Records this node's cluster and id at first start and returns the stored node id;
    /// refuses a Redis that belongs to another cluster.
    pub async fn claim(&self, cluster: &str, fresh_node_id: Uuid) -> Result<Uuid> {
        let reply: Vec<String> = CLAIM
            .arg(cluster)
            .arg(fresh_node_id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.as_slice() {
            [tag, found] if tag == "foreign" => Err(Error::ForeignRedis {
                expected: cluster.to_string(),
                found: found.clone(),
            }),
            [_, id] => Uuid::parse_str(id).map_err(|e| corrupt(format!("node id {id:?}: {e}"))),
            _ => Err(corrupt(format!("claim replied {reply:?}"))),
        }
    }

    /// Overwrites the node id (after a snapshot brought in the coordinator's).
    pub async fn set_node_id(&self, node_id: Uuid) -> Result<()> {
        let _: () = redis::cmd("HSET")
            .arg("idlab:meta")
            .arg("node_id")
            .arg(node_id.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The clock of the last event applied (0 for a fresh store).
    pub async fn clock(&self) -> Result<u64> {
        let clock: Option<u64> = redis::cmd("GET")
            .arg(CLOCK)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(clock.unwrap_or(0))
    }

    /// The highest election epoch this node stored (0 for a fresh store).
    pub async fn epoch(&self) -> Result<u64> {
        let epoch: Option<String> = redis::cmd("GET")
            .arg(EPOCH)
            .query_async(&mut self.conn.clone())
            .await?;
        epoch.map_or(Ok(0), |text| parse_epoch(&text))
    }

    /// Stores `epoch` if it is higher than the stored one (an election must never reuse an
    /// epoch after a restart).
    pub async fn raise_epoch(&self, epoch: u64) -> Result<()> {
        let _: String = RAISE_EPOCH
            .arg(epoch.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Applies new events in order, each getting the next clock (their `clock` is ignored).
    /// A request id seen before returns its first result instead (not looked for when the
    /// event's `fresh` flag says its id was never sent before); a failed precondition
    /// consumes no clock.
    ///
    /// A batch of up to SPECULATE_EVENTS_MAX (a lone write, when the node is not busy) is
    /// first tried in one round trip: decided here on the assumption that every write will
    /// pass (its logins as the write needs them, its request id new) and sent with those
    /// assumptions to a script that checks them and only then runs the batch's commands. If
    /// an assumption is wrong, nothing is written and the batch takes the general path: one
    /// round trip reads what the preconditions need (the clock, the logins, the request ids),
    /// the batch is decided on what was read, and one `MULTI`/`EXEC` writes it.
    pub async fn apply_new(
        &self,
        events: &[Event],
        fresh: &[bool],
    ) -> Result<Vec<Result<Applied>>> {
        self.apply_new_publishing(events, fresh, 0, |_| {}).await
    }

    /// As [`Store::apply_new`], calling `decided` with each event's outcome as soon as the
    /// outcomes are known: before the batch is written when one round trip read what its
    /// preconditions need (so that the coordinator can send the events to its replicas while
    /// its own Redis writes them), after it when the one-round-trip try succeeded. If the
    /// write then fails, the events were decided but not applied here.
    ///
    /// `applied` is the clock the node applied to this store: one found holding less lost
    /// events it had confirmed (a Redis back from a crash without its last writes), and
    /// nothing is made on it (the error is [`Error::StoreBehind`]): new events would take
    /// the clocks of events the replicas hold.
    pub async fn apply_new_publishing(
        &self,
        events: &[Event],
        fresh: &[bool],
        applied: u64,
        decided: impl FnOnce(&[Result<Applied>]),
    ) -> Result<Vec<Result<Applied>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        assert_eq!(events.len(), fresh.len(), "one fresh flag per event");
        let mut known = self.writes.lock().await;
        if let (Some(clock), true) = (*known, events.len() <= SPECULATE_EVENTS_MAX) {
            if let Some(outcomes) = self
                .apply_expecting(&mut known, clock, events, fresh)
                .await?
            {
                decided(&outcomes);
                return Ok(outcomes);
            }
        }
        let logins: Vec<&str> = events
            .iter()
            .flat_map(|e| owners_needed(&e.change))
            .map(|(login, _)| login)
            .collect();
        let now = now_ms();
        let mut read = redis::pipe();
        read.cmd("GET").arg(CLOCK);
        for login in &logins {
            read.cmd("HGET").arg(login_key(login)).arg(*login);
        }
        // Only the ids that may have been sent before are looked for.
        let looked_for = events.iter().zip(fresh).filter(|(_, fresh)| !**fresh);
        for (event, _) in looked_for.clone() {
            for key in request_keys_around(now, &event.request_id) {
                read.cmd("HGET").arg(key).arg(event.request_id.as_bytes());
            }
        }
        let replies: Vec<redis::Value> = self.query(&mut known, read).await?;
        let (clock, rest) = replies
            .split_first()
            .ok_or_else(|| corrupt("no reply to a read".into()))?;
        let clock: Option<u64> = redis::from_redis_value(clock)?;
        let stored = clock.unwrap_or(0);
        if stored < applied {
            *known = None;
            return Err(Error::StoreBehind { stored, applied });
        }
        if rest.len() != logins.len() + PERIODS_AROUND * looked_for.count() {
            return Err(corrupt(format!("{} replies to a read", replies.len())));
        }
        let (owners, results) = rest.split_at(logins.len());
        let mut index: HashMap<&str, Option<Uuid>> = HashMap::new();
        for (login, owner) in logins.iter().zip(owners) {
            let owner: Option<Vec<u8>> = redis::from_redis_value(owner)?;
            let owner = owner
                .map(|u| Uuid::from_slice(&u).map_err(|e| corrupt(format!("index {login:?}: {e}"))))
                .transpose()?;
            index.entry(login).or_insert(owner);
        }
        let mut remembered = Vec::with_capacity(events.len());
        let mut found = results.chunks(PERIODS_AROUND);
        for fresh in fresh {
            let mut first = None;
            let raws = if *fresh {
                &[][..]
            } else {
                found.next().unwrap_or_default()
            };
            for raw in raws {
                let raw: Option<Vec<u8>> = redis::from_redis_value(raw)?;
                if let (None, Some(raw)) = (&first, raw) {
                    first = Some(parse_result(&raw)?);
                }
            }
            remembered.push(first);
        }
        let first_clock = clock.unwrap_or(0);
        let (batch, outcomes, clock) = decide(events, index, remembered, first_clock);
        decided(&outcomes);
        if clock > first_clock {
            self.commit(&mut known, batch, first_clock, clock).await?;
        }
        *known = Some(clock);
        Ok(outcomes)
    }

    /// The one-round-trip try of [`Store::apply_new`]: `None` if an assumption did not hold
    /// (then nothing was written).
    async fn apply_expecting(
        &self,
        known: &mut Option<u64>,
        clock: u64,
        events: &[Event],
        fresh: &[bool],
    ) -> Result<Option<Vec<Result<Applied>>>> {
        let mut checks: Vec<[Vec<u8>; 4]> = Vec::new();
        let check = |op: &str, key: &str, field: &[u8], value: &[u8]| {
            [op.into(), key.into(), field.to_vec(), value.to_vec()]
        };
        let stored = if clock == 0 {
            String::new()
        } else {
            clock.to_string()
        };
        checks.push(check("get", CLOCK, b"", stored.as_bytes()));
        let mut index: HashMap<&str, Option<Uuid>> = HashMap::new();
        let now = now_ms();
        for (event, fresh) in events.iter().zip(fresh) {
            for (login, owner) in owners_needed(&event.change) {
                if index.contains_key(login) {
                    continue; // An earlier write in the batch decides this one's view.
                }
                index.insert(login, owner);
                let key = login_key(login);
                checks.push(match owner {
                    None => check("hfree", &key, login.as_bytes(), b""),
                    Some(uuid) => check("heq", &key, login.as_bytes(), uuid.as_bytes()),
                });
            }
            if !fresh {
                for key in request_keys_around(now, &event.request_id) {
                    checks.push(check("hfree", &key, event.request_id.as_bytes(), b""));
                }
            }
        }
        let unknown = vec![None; events.len()];
        let (batch, outcomes, last) = decide(events, index, unknown, clock);
        let mut script = GUARDED.prepare_invoke();
        script.arg(checks.len());
        for [op, key, field, value] in &checks {
            script.arg(op).arg(key).arg(field).arg(value);
        }
        let mut given_expiry = Vec::new();
        if last > clock {
            let (commands, given) = batch.into_commands(clock, last, &self.marks());
            given_expiry = given;
            for command in commands.cmd_iter() {
                let args: Vec<&[u8]> = command
                    .args_iter()
                    .filter_map(|arg| match arg {
                        redis::Arg::Simple(bytes) => Some(bytes),
                        redis::Arg::Cursor => None,
                    })
                    .collect();
                script.arg(args.len()).arg(args);
            }
        }
        let ran: redis::RedisResult<u8> = script.invoke_async(&mut self.conn.clone()).await;
        match ran {
            Ok(1) => {
                *known = Some(last);
                self.marks().mark(&given_expiry, now_ms());
                Ok(Some(outcomes))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                *known = None;
                Err(e.into())
            }
        }
    }

    /// Applies replicated events, which must follow the stored clock without a gap, in one
    /// `MULTI`/`EXEC` (one round trip). Their preconditions held on the coordinator that made
    /// them; the caller has checked that the histories agree up to them.
    pub async fn apply_replicated(&self, events: &[Event]) -> Result<u64> {
        let mut known = self.writes.lock().await;
        let stored = match *known {
            Some(clock) => clock,
            None => self.clock().await?,
        };
        let Some(last) = events.last() else {
            return Ok(stored);
        };
        for (i, event) in events.iter().enumerate() {
            if event.clock != stored + 1 + i as u64 {
                return Err(corrupt(format!(
                    "replicated event clock {} does not follow the stored clock {}",
                    event.clock,
                    stored + i as u64
                )));
            }
        }
        let mut batch = Batch::default();
        for event in events {
            batch.add(event, event.clock);
        }
        self.commit(&mut known, batch, stored, last.clock).await?;
        *known = Some(last.clock);
        Ok(last.clock)
    }

    /// Forgets what this process remembers of the database (after it was replaced, or its
    /// Redis restarted): the next write reads the clock from Redis again and sets the expiry
    /// of every request-result hash it writes.
    pub async fn forget_clock(&self) {
        let mut known = self.writes.lock().await;
        *known = None;
        self.marks().clear();
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, ExpiryMarks> {
        self.expiring.lock().expect("expiry marks lock poisoned")
    }

    /// Runs `pipe`; any failure makes the remembered clock unknown.
    async fn query<T: redis::FromRedisValue>(
        &self,
        known: &mut Option<u64>,
        pipe: redis::Pipeline,
    ) -> Result<T> {
        let reply = pipe.query_async(&mut self.conn.clone()).await;
        if reply.is_err() {
            *known = None;
        }
        Ok(reply?)
    }

    /// Writes `batch` in one transaction that moves the clock from `from` to `to`, and checks
    /// that nothing else moved it meanwhile (this node is its Redis's only writer).
    async fn commit(
        &self,
        known: &mut Option<u64>,
        batch: Batch<'_>,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let (mut write, given_expiry) = batch.into_commands(from, to, &self.marks());
        write.atomic();
        let (before,): (Option<u64>,) = self.query(known, write).await?;
        if before.unwrap_or(0) != from {
            *known = None;
            return Err(corrupt(format!(
                "the stored clock moved from {from} to {before:?} under this node's write"
            )));
        }
        self.marks().mark(&given_expiry, now_ms());
        Ok(())
    }

    /// Up to `limit` logged events with a clock above `after`, in clock order.
    pub async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        let raw: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
            .arg(EVENTS)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?;
        raw.iter()
            .map(|entry| {
                log_entry::decode(entry).map_err(|why| {
                    corrupt(format!(
                        "logged event {:?}: {why}",
                        String::from_utf8_lossy(entry)
                    ))
                })
            })
            .collect()
    }

    /// The logged event with this clock, if the log still holds it.
    pub async fn event_at(&self, clock: u64) -> Result<Option<LoggedEvent>> {
        Ok(self
            .events_after(clock.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|e| e.event.clock == clock))
    }

    /// The epoch of the event at `clock` in the log (0 if the log does not hold it).
    pub async fn last_epoch(&self, clock: u64) -> u64 {
        match self.event_at(clock).await {
            Ok(Some(logged)) => logged.event.epoch,
            _ => 0,
        }
    }

    /// The first result of the write with this request id, if it is still remembered.
    pub async fn request_result(&self, request_id: Uuid) -> Result<Option<WriteResult>> {
        let mut read = redis::pipe();
        for key in request_keys_around(now_ms(), &request_id) {
            read.cmd("HGET").arg(key).arg(request_id.as_bytes());
        }
        let found: Vec<Option<Vec<u8>>> = read.query_async(&mut self.conn.clone()).await?;
        found
            .iter()
            .flatten()
            .next()
            .map(|r| parse_result(r))
            .transpose()
    }

    /// The account with this login name.
    pub async fn lookup(&self, login: &str) -> Result<Option<StoredAccount>> {
        let reply: Vec<Option<Vec<u8>>> = LOOKUP
            .arg(login_key(login))
            .arg(login)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let [Some(uuid), fixed, changing] = reply.as_slice() else {
            return Ok(None);
        };
        let uuid = Uuid::from_slice(uuid).map_err(|e| corrupt(format!("index {login:?}: {e}")))?;
        account_from(uuid, fixed.as_deref(), changing.as_deref()).map(Some)
    }

    /// The account with this UUID.
    pub async fn reverse_lookup(&self, uuid: Uuid) -> Result<Option<StoredAccount>> {
        let (fixed, changing): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(account_key(&uuid))
            .arg(uuid.as_bytes())
            .arg(&changing_field(&uuid)[..])
            .query_async(&mut self.conn.clone())
            .await?;
        if fixed.is_none() && changing.is_none() {
            return Ok(None);
        }
        account_from(uuid, fixed.as_deref(), changing.as_deref()).map(Some)
    }

    /// The name of every hash that starts with `prefix` (`SCAN`, a page at a time).
    pub(super) async fn hash_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(ACCOUNTS_PER_BATCH)
                .arg("TYPE")
                .arg("hash")
                .query_async(&mut conn)
                .await?;
            keys.extend(page);
            cursor = next;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }

    /// One page of the login index: the entries of its hashes from number `from` on (of
    /// [`LOGIN_SHARDS`]), read [`LIST_SHARDS_PER_READ`] at a time until at least `at_least`
    /// entries are in, sorted by login name; and the hash to go on from (`None`: none left).
    /// The hashes are the same on every node, so a page can be asked of any node.
    pub async fn logins_page(
        &self,
        from: u32,
        at_least: usize,
    ) -> Result<(BTreeMap<String, Uuid>, Option<u32>)> {
        let mut conn = self.conn.clone();
        let mut page = BTreeMap::new();
        let mut shard = from.min(LOGIN_SHARDS);
        let mut per_read = LIST_SHARDS_PER_READ;
        while shard < LOGIN_SHARDS && page.len() < at_least {
            let end = (shard + per_read).min(LOGIN_SHARDS);
            let mut read = redis::pipe();
            for n in shard..end {
                read.cmd("HGETALL").arg(login_shard_key(n));
            }
            let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = read.query_async(&mut conn).await?;
            for (login, uuid) in hashes.into_iter().flatten() {
                let login =
                    String::from_utf8(login).map_err(|e| corrupt(format!("index login: {e}")))?;
                let uuid = Uuid::from_slice(&uuid)
                    .map_err(|e| corrupt(format!("index entry {login:?}: {e}")))?;
                page.insert(login, uuid);
            }
            // Read no more hashes than the entries so far say it takes to fill the page, so
            // that a large directory still gives pages of about `at_least`.
            let read = u64::from(end - from.min(LOGIN_SHARDS));
            let per_shard = (page.len() as u64).div_ceil(read).max(1);
            let missing = at_least.saturating_sub(page.len()) as u64;
            per_read = missing
                .div_ceil(per_shard)
                .clamp(1, u64::from(LIST_SHARDS_PER_READ)) as u32;
            shard = end;
        }
        Ok((page, (shard < LOGIN_SHARDS).then_some(shard)))
    }

    /// The accounts of these login index entries, in their order (one missing meanwhile, by a
    /// delete, is left out).
    pub async fn accounts_of(&self, entries: &BTreeMap<String, Uuid>) -> Result<Vec<AccountView>> {
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(entries.len());
        let uuids: Vec<Uuid> = entries.values().copied().collect();
        for chunk in uuids.chunks(ACCOUNTS_PER_BATCH) {
            let mut read = redis::pipe();
            for uuid in chunk {
                read.cmd("HMGET")
                    .arg(account_key(uuid))
                    .arg(uuid.as_bytes())
                    .arg(&changing_field(uuid)[..]);
            }
            let parts: Vec<AccountParts> = read.query_async(&mut conn).await?;
            for (uuid, (fixed, changing)) in chunk.iter().zip(parts) {
                if fixed.is_some() || changing.is_some() {
                    out.push(account_from(*uuid, fixed.as_deref(), changing.as_deref())?.view);
                }
            }
        }
        Ok(out)
    }

    /// How many accounts are stored.
    pub async fn count(&self) -> Result<u64> {
        let count: Option<u64> = redis::cmd("GET")
            .arg(COUNT)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(count.unwrap_or(0))
    }
}

/// `url` fit for logs and errors: a password in it (`redis://user:password@host`) is replaced
/// by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// The stored epoch: a decimal integer, or (written by an older version, whose script went
/// through Lua's doubles) a number in exponent form such as `1e+17`, read as the integer it
/// stands for.
fn parse_epoch(text: &str) -> Result<u64> {
    if let Ok(epoch) = text.parse::<u64>() {
        return Ok(epoch);
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => {
            tracing::warn!(
                stored = text,
                "the stored epoch is in exponent form; reading it as an integer"
            );
            // `as` saturates: 1.8446744073709552e19 reads as u64::MAX.
            Ok(value as u64)
        }
        _ => Err(corrupt(format!("stored epoch {text:?} is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_redis_url_never_reaches_a_log() {
        assert_eq!(
            redact_url("redis://app:s3cret@10.0.0.5:6379/2"),
            "redis://app:***@10.0.0.5:6379/2"
        );
        assert_eq!(
            redact_url("redis://:s3cret@host:6379"),
            "redis://:***@host:6379"
        );
        assert_eq!(redact_url("rediss://token@host"), "rediss://***@host");
        assert_eq!(redact_url("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(
            redact_url("unix:///run/redis.sock"),
            "unix:///run/redis.sock"
        );
        assert_eq!(parse_epoch("1e+17").unwrap(), 100_000_000_000_000_000);
        assert_eq!(parse_epoch("1.8446744073709552e+19").unwrap(), u64::MAX);
        assert!(parse_epoch("nope").is_err());
    }
}
