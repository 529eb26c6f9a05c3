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

use super::log_entry;
use crate::account::AccountView;
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event, LoggedEvent};
use crate::limits::{EVENT_LOG_MAX, REQUEST_ID_TTL_MS};
use crate::service::now_ms;
use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use tokio::sync::Mutex;
use uuid::Uuid;

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static RAISE_EPOCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("raise_epoch.lua")));
static LOOKUP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lookup.lua")));
static GUARDED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("guarded.lua")));

const CLOCK: &str = "idlab:clock";
const COUNT: &str = "idlab:count";
/// Prefix of the account hashes (see the module's documentation).
const ACCOUNTS: &str = "idlab:acct:";
/// Prefix of the login index's hashes.
const LOGINS: &str = "idlab:login:";
/// Prefix of the request-result hashes.
const REQUESTS: &str = "idlab:requests:";
/// How many periods' hashes a request id is looked up in (see [`request_keys_around`]).
const PERIODS_AROUND: usize = 3;
/// The one login index hash of the first storage layout (read only to upgrade it).
const OLD_BY_LOGIN: &str = "idlab:by-login";
const EPOCH: &str = "idlab:epoch";
const EVENTS: &str = "idlab:events";
const ACCOUNTS_PER_BATCH: usize = 1000;
/// Largest batch first tried in one round trip, on assumptions (see [`Store::apply_new`]).
const SPECULATE_EVENTS_MAX: usize = 2;
/// The event log is trimmed to EVENT_LOG_MAX whenever the clock crosses a multiple of this.
const EVENT_LOG_TRIM_EVERY: u64 = 1024;

/// An account with its password hash, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// What clients may see.
    pub view: AccountView,
    /// argon2id PHC string, if any.
    pub password_hash: Option<String>,
}

/// The result of a write, as remembered for its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    /// `create`, `rename` or `delete`.
    pub kind: &'static str,
    /// The account written.
    pub uuid: Uuid,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was applied at this clock.
    Done(WriteResult, u64),
    /// The request id was seen before: nothing changed; this is the first result.
    Duplicate(WriteResult),
}

/// A connection to the node's Redis (multiplexed: clones share it; it reconnects by itself,
/// e.g. after a full sync restarted the node's Redis).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    url: String,
    /// Held while writing events, so this node's writes never interleave; holds the stored
    /// clock as the last write left it (`None`: unknown, read it again).
    writes: Arc<Mutex<Option<u64>>>,
    /// The request-result hashes this process has given their expiry.
    expiring: Arc<std::sync::Mutex<ExpiryMarks>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Connects to the Redis at `url` (`redis://host:port/db` or `unix:///path/to.sock`).
    pub async fn connect(url: &str) -> Result<Store> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Store {
            conn,
            url: url.to_string(),
            writes: Arc::default(),
            expiring: Arc::default(),
        })
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

    /// Moves a directory kept in the first storage layout (a hash per account named by its
    /// UUID text, one login index `idlab:by-login`, one request-result hash per period) into
    /// this one, ACCOUNTS_PER_BATCH accounts per transaction: a stop in between loses nothing,
    /// the rest moves at the next start. Returns how many accounts moved.
    pub async fn upgrade_layout(&self) -> Result<u64> {
        let old: bool = redis::cmd("EXISTS")
            .arg(OLD_BY_LOGIN)
            .query_async(&mut self.conn.clone())
            .await?;
        if !old {
            return Ok(0);
        }
        // Request results first: while the old login index exists, a stop in between leaves
        // this upgrade to be run again at the next start.
        self.upgrade_request_results().await?;
        let moved = self.upgrade_accounts().await?;
        if moved > 0 {
            tracing::info!(
                accounts = moved,
                "moved the directory into the packed layout"
            );
        }
        Ok(moved)
    }

    /// The accounts part of [`Store::upgrade_layout`].
    async fn upgrade_accounts(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        let mut moved = 0;
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(OLD_BY_LOGIN)
                .arg(cursor)
                .arg("COUNT")
                .arg(ACCOUNTS_PER_BATCH)
                .query_async(&mut conn)
                .await?;
            let pairs: Vec<(&String, Uuid)> = flat
                .chunks_exact(2)
                .map(|pair| {
                    let uuid = Uuid::parse_str(&pair[1])
                        .map_err(|e| corrupt(format!("old index {:?}: {e}", pair[0])))?;
                    Ok((&pair[0], uuid))
                })
                .collect::<Result<_>>()?;
            let mut read = redis::pipe();
            for (_, uuid) in &pairs {
                read.cmd("HGETALL").arg(format!("{ACCOUNTS}{uuid}"));
            }
            let records: Vec<HashMap<String, String>> = read.query_async(&mut conn).await?;
            let mut write = redis::pipe();
            write.atomic();
            let mut count = 0i64;
            for ((login, uuid), mut fields) in pairs.into_iter().zip(records) {
                let mut take = |name: &str| {
                    fields
                        .remove(name)
                        .ok_or_else(|| corrupt(format!("old account {uuid} has no {name}")))
                };
                let (real_name, client_addr) = (take("real_name")?, take("client_addr")?);
                let number = |value: String| {
                    value
                        .parse::<u64>()
                        .map_err(|e| corrupt(format!("old account {uuid}: {e}")))
                };
                let created_ms = number(take("created_ms")?)?;
                let changed_ms = number(take("changed_ms")?)?;
                let hash = fields.remove("password_hash");
                let fixed = encode_fixed(created_ms, &client_addr, &real_name, &hash);
                write
                    .cmd("HSET")
                    .arg(login_key(login))
                    .arg(login)
                    .arg(uuid.as_bytes())
                    .ignore();
                write
                    .cmd("HSET")
                    .arg(account_key(&uuid))
                    .arg(uuid.as_bytes())
                    .arg(fixed)
                    .arg(&changing_field(&uuid)[..])
                    .arg(encode_changing(changed_ms, login))
                    .ignore();
                write.cmd("DEL").arg(format!("{ACCOUNTS}{uuid}")).ignore();
                write.cmd("HDEL").arg(OLD_BY_LOGIN).arg(login).ignore();
                count += 1;
            }
            write.cmd("INCRBY").arg(COUNT).arg(count).ignore();
            let () = write.query_async(&mut conn).await?;
            moved += count as u64;
            cursor = next;
            if cursor == 0 {
                let left: u64 = redis::cmd("HLEN")
                    .arg(OLD_BY_LOGIN)
                    .query_async(&mut conn)
                    .await?;
                if left == 0 {
                    return Ok(moved);
                }
            }
        }
    }

    /// The request-results part of [`Store::upgrade_layout`].
    async fn upgrade_request_results(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        // Request results: each old period's hash into the new ones, with its expiry.
        for key in self.hash_keys(REQUESTS).await? {
            let Some(Ok(period)) = key.strip_prefix(REQUESTS).map(str::parse::<u64>) else {
                continue; // Already in this layout.
            };
            let results: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            let mut write = redis::pipe();
            write.atomic();
            for (id, result) in results {
                let Ok(id) = Uuid::from_slice(&id) else {
                    continue;
                };
                let new_key = request_key(period, &id);
                write
                    .cmd("HSET")
                    .arg(&new_key)
                    .arg(id.as_bytes())
                    .arg(result)
                    .ignore();
                write
                    .cmd("PEXPIREAT")
                    .arg(&new_key)
                    .arg(request_expiry_ms(period))
                    .ignore();
            }
            write.cmd("DEL").arg(&key).ignore();
            let () = write.query_async(&mut conn).await?;
        }
        Ok(())
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
        let epoch: Option<u64> = redis::cmd("GET")
            .arg(EPOCH)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(epoch.unwrap_or(0))
    }

    /// Stores `epoch` if it is higher than the stored one (an election must never reuse an
    /// epoch after a restart).
    pub async fn raise_epoch(&self, epoch: u64) -> Result<()> {
        let _: u64 = RAISE_EPOCH
            .arg(epoch)
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
        self.apply_new_publishing(events, fresh, |_| {}).await
    }

    /// As [`Store::apply_new`], calling `decided` with each event's outcome as soon as the
    /// outcomes are known: before the batch is written when one round trip read what its
    /// preconditions need (so that the coordinator can send the events to its replicas while
    /// its own Redis writes them), after it when the one-round-trip try succeeded. If the
    /// write then fails, the events were decided but not applied here.
    pub async fn apply_new_publishing(
        &self,
        events: &[Event],
        fresh: &[bool],
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
    async fn hash_keys(&self, prefix: &str) -> Result<Vec<String>> {
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

    /// Every field of every hash whose name starts with `prefix`, read ACCOUNTS_PER_BATCH
    /// hashes per round trip.
    async fn hash_entries(&self, prefix: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut conn = self.conn.clone();
        let mut entries = Vec::new();
        for keys in self.hash_keys(prefix).await?.chunks(ACCOUNTS_PER_BATCH) {
            let mut read = redis::pipe();
            for key in keys {
                read.cmd("HGETALL").arg(key);
            }
            let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = read.query_async(&mut conn).await?;
            entries.extend(hashes.into_iter().flatten());
        }
        Ok(entries)
    }

    /// Every login name with its UUID, sorted by login name.
    pub async fn logins(&self) -> Result<BTreeMap<String, Uuid>> {
        self.hash_entries(LOGINS)
            .await?
            .into_iter()
            .map(|(login, uuid)| {
                let login =
                    String::from_utf8(login).map_err(|e| corrupt(format!("index login: {e}")))?;
                let uuid = Uuid::from_slice(&uuid)
                    .map_err(|e| corrupt(format!("index entry {login:?}: {e}")))?;
                Ok((login, uuid))
            })
            .collect()
    }

    /// Every account, sorted by login name. (Read hash by hash: an account being renamed
    /// meanwhile may be seen under either name.)
    pub async fn accounts(&self) -> Result<Vec<AccountView>> {
        let mut parts: HashMap<Uuid, [Option<Vec<u8>>; 2]> = HashMap::new();
        for (field, value) in self.hash_entries(ACCOUNTS).await? {
            let (uuid, part) = match field.len() {
                16 => (&field[..], 0),
                17 => (&field[..16], 1),
                _ => return Err(corrupt(format!("account field {field:?}"))),
            };
            let uuid = Uuid::from_slice(uuid).expect("16 bytes");
            parts.entry(uuid).or_default()[part] = Some(value);
        }
        let mut out = parts
            .into_iter()
            .map(|(uuid, [fixed, changing])| {
                Ok(account_from(uuid, fixed.as_deref(), changing.as_deref())?.view)
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.login.cmp(&b.login));
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

/// Decides a batch in order from what the store holds (`index`: login -> owner for every
/// login the batch touches; `remembered`: each write's earlier result, if its request id was
/// seen) starting at `clock`: returns the writes, each event's outcome and the last clock.
fn decide<'a>(
    events: &'a [Event],
    mut index: HashMap<&'a str, Option<Uuid>>,
    remembered: Vec<Option<WriteResult>>,
    mut clock: u64,
) -> (Batch<'a>, Vec<Result<Applied>>, u64) {
    let mut first_results: HashMap<Uuid, WriteResult> = HashMap::new();
    let mut batch = Batch::default();
    let mut outcomes = Vec::with_capacity(events.len());
    for (event, remembered) in events.iter().zip(remembered) {
        if let Some(result) = remembered.or_else(|| first_results.get(&event.request_id).copied()) {
            outcomes.push(Ok(Applied::Duplicate(result)));
            continue;
        }
        if let Err(refusal) = check_and_track(&mut index, &event.change) {
            outcomes.push(Err(refusal));
            continue;
        }
        clock += 1;
        let result = batch.add(event, clock);
        first_results.insert(event.request_id, result);
        outcomes.push(Ok(Applied::Done(result, clock)));
    }
    (batch, outcomes, clock)
}

/// The logins a change's precondition reads, with the owner each must have for it to apply.
fn owners_needed(change: &Change) -> Vec<(&str, Option<Uuid>)> {
    match change {
        Change::Create { login, .. } => vec![(login, None)],
        Change::Rename { uuid, old, new } => vec![(old, Some(*uuid)), (new, None)],
        Change::Delete { uuid, login } => vec![(login, Some(*uuid))],
        Change::Open => Vec::new(),
    }
}

/// Checks a change's precondition against `index` (login -> owner, as the events before it
/// in the batch left it) and records its effect there.
fn check_and_track<'a>(
    index: &mut HashMap<&'a str, Option<Uuid>>,
    change: &'a Change,
) -> Result<()> {
    let owner =
        |index: &HashMap<&str, Option<Uuid>>, login: &str| index.get(login).copied().flatten();
    match change {
        Change::Create { uuid, login, .. } => {
            if owner(index, login).is_some() {
                return Err(Error::refused(
                    ErrorCode::LoginExists,
                    format!("login {login:?} already exists"),
                ));
            }
            index.insert(login, Some(*uuid));
        }
        Change::Rename { uuid, old, new } => {
            if owner(index, old) != Some(*uuid) {
                return Err(Error::refused(
                    ErrorCode::NotFound,
                    format!("no account {uuid}"),
                ));
            }
            if owner(index, new).is_some() {
                return Err(Error::refused(
                    ErrorCode::NewNameTaken,
                    format!("login {new:?} is already taken"),
                ));
            }
            index.insert(old, None);
            index.insert(new, Some(*uuid));
        }
        Change::Delete { uuid, login } => {
            if owner(index, login) != Some(*uuid) {
                return Err(Error::refused(
                    ErrorCode::NotFound,
                    format!("no account {uuid}"),
                ));
            }
            index.insert(login, None);
        }
        Change::Open => {}
    }
    Ok(())
}

/// The writes of a batch of events, merged so that each key is written once: per login-index
/// hash one `HSET` and one `HDEL`, the same per account hash, one `HSET` per request-result
/// hash, the account count moved once, one `ZADD` to the log. Only the batch's end state
/// matters, since the transaction is atomic.
#[derive(Default)]
struct Batch<'a> {
    /// login -> its owner after the batch (`None`: removed).
    index: BTreeMap<&'a str, Option<Uuid>>,
    /// account -> what to write of it (`None`: delete it).
    accounts: BTreeMap<Uuid, Option<AccountWrite>>,
    /// How many accounts the batch adds (deletions count down).
    count_delta: i64,
    /// request-result hash -> its period and (request id, result) pairs.
    results: BTreeMap<String, PeriodResults>,
    /// (clock, event) to log.
    log: Vec<(u64, &'a Event)>,
}

/// A request-result hash's period, its slot (see [`request_slot`]) and its (request id,
/// result) pairs.
type PeriodResults = (u64, usize, Vec<(Uuid, [u8; 17])>);

/// The fields of an account to set.
#[derive(Default)]
struct AccountWrite {
    /// The record fixed at creation (only for a new account).
    fixed: Option<Vec<u8>>,
    /// The changing part (changed time and login).
    changing: Vec<u8>,
}

impl<'a> Batch<'a> {
    /// Adds `event` at `clock`; returns the result remembered for its request id.
    fn add(&mut self, event: &'a Event, clock: u64) -> WriteResult {
        self.log.push((clock, event));
        let uuid = match &event.change {
            Change::Create {
                uuid,
                login,
                real_name,
                client_addr,
                password_hash,
            } => {
                self.index.insert(login, Some(*uuid));
                self.count_delta += 1;
                let fixed = encode_fixed(event.at_ms, client_addr, real_name, password_hash);
                self.accounts.insert(
                    *uuid,
                    Some(AccountWrite {
                        fixed: Some(fixed),
                        changing: encode_changing(event.at_ms, login),
                    }),
                );
                *uuid
            }
            Change::Rename { uuid, old, new } => {
                self.index.insert(old, None);
                self.index.insert(new, Some(*uuid));
                // (An account deleted earlier in the batch could not have been renamed.)
                let write = self
                    .accounts
                    .entry(*uuid)
                    .or_insert_with(|| Some(AccountWrite::default()));
                if let Some(write) = write {
                    write.changing = encode_changing(event.at_ms, new);
                }
                *uuid
            }
            Change::Delete { uuid, login } => {
                self.index.insert(login, None);
                self.count_delta -= 1;
                self.accounts.insert(*uuid, None);
                *uuid
            }
            // An epoch's opening changes no account and answers no client request.
            Change::Open => {
                return WriteResult {
                    kind: event.change.kind(),
                    uuid: Uuid::nil(),
                }
            }
        };
        let result = WriteResult {
            kind: event.change.kind(),
            uuid,
        };
        let period = event.at_ms / REQUEST_ID_TTL_MS;
        self.results
            .entry(request_key(period, &event.request_id))
            .or_insert_with(|| (period, request_slot(&event.request_id), Vec::new()))
            .2
            .push((event.request_id, encode_result(result)));
        result
    }

    /// The batch's commands, moving the clock from `from` to `to`; the last one is
    /// `SET idlab:clock <to> GET` (its reply, the clock before, proves no other writer), the
    /// only one whose reply is not ignored.
    ///
    /// A request-result hash gets its expiry (`PEXPIREAT`) unless `marks` says this process
    /// gave it already; the hashes given one here are returned, to be marked once the
    /// commands have run.
    fn into_commands(
        self,
        from: u64,
        to: u64,
        marks: &ExpiryMarks,
    ) -> (redis::Pipeline, Vec<(u64, usize)>) {
        let now = now_ms();
        // Per hash: the fields to set and the fields to remove.
        type Fields = (Vec<(Vec<u8>, Vec<u8>)>, Vec<Vec<u8>>);
        let mut hashes: BTreeMap<String, Fields> = BTreeMap::new();
        for (login, owner) in self.index {
            let (set, removed) = hashes.entry(login_key(login)).or_default();
            match owner {
                Some(uuid) => set.push((login.as_bytes().to_vec(), uuid.as_bytes().to_vec())),
                None => removed.push(login.as_bytes().to_vec()),
            }
        }
        for (uuid, write) in self.accounts {
            let (set, removed) = hashes.entry(account_key(&uuid)).or_default();
            match write {
                None => removed.extend([uuid.as_bytes().to_vec(), changing_field(&uuid).to_vec()]),
                Some(AccountWrite { fixed, changing }) => {
                    if let Some(fixed) = fixed {
                        set.push((uuid.as_bytes().to_vec(), fixed));
                    }
                    set.push((changing_field(&uuid).to_vec(), changing));
                }
            }
        }
        // Commands are made with room for all their arguments: a batch has hundreds, and
        // growing each one's buffers argument by argument cost more than writing them.
        let mut pipe =
            redis::Pipeline::with_capacity(2 * hashes.len() + 2 * self.results.len() + 4);
        for (key, (set, removed)) in hashes {
            if !removed.is_empty() {
                let bytes = removed.iter().map(Vec::len).sum::<usize>();
                let mut hdel = sized("HDEL", 2 + removed.len(), key.len() + bytes);
                hdel.arg(&key).arg(removed);
                pipe.add_command(hdel).ignore();
            }
            if !set.is_empty() {
                let bytes = set.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>();
                let mut hset = sized("HSET", 2 + 2 * set.len(), key.len() + bytes);
                hset.arg(&key);
                for (field, value) in set {
                    hset.arg(field).arg(value);
                }
                pipe.add_command(hset).ignore();
            }
        }
        if self.count_delta != 0 {
            pipe.cmd("INCRBY").arg(COUNT).arg(self.count_delta).ignore();
        }
        let mut given_expiry = Vec::new();
        for (key, (period, slot, results)) in self.results {
            let mut hset = sized(
                "HSET",
                2 + 2 * results.len(),
                key.len() + 33 * results.len(),
            );
            hset.arg(&key);
            for (id, result) in results {
                hset.arg(id.as_bytes()).arg(&result[..]);
            }
            pipe.add_command(hset).ignore();
            if !marks.has(period, slot, now) {
                let mut expire = sized("PEXPIREAT", 3, key.len() + 20);
                expire.arg(&key).arg(request_expiry_ms(period));
                pipe.add_command(expire).ignore();
                given_expiry.push((period, slot));
            }
        }
        let applied_ms = now;
        let entries: Vec<(u64, Vec<u8>)> = self
            .log
            .into_iter()
            .map(|(clock, event)| (clock, log_entry::encode(event, clock, applied_ms)))
            .collect();
        let bytes = entries.iter().map(|(_, e)| 20 + e.len()).sum::<usize>();
        let mut zadd = sized("ZADD", 2 + 2 * entries.len(), EVENTS.len() + bytes);
        zadd.arg(EVENTS);
        for (clock, entry) in entries {
            zadd.arg(clock).arg(entry);
        }
        pipe.add_command(zadd).ignore();
        if from / EVENT_LOG_TRIM_EVERY != to / EVENT_LOG_TRIM_EVERY {
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(EVENTS)
                .arg(0)
                .arg(-(EVENT_LOG_MAX as i64) - 1)
                .ignore();
        }
        pipe.cmd("SET").arg(CLOCK).arg(to).arg("GET");
        (pipe, given_expiry)
    }
}

/// An empty command `name` with room for `args` arguments (its name included) of `bytes`
/// bytes in all besides the name.
fn sized(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// The hash holding the account `uuid`: by its first two bytes, which are random (version 4
/// UUIDs), so 65,536 hashes share the accounts evenly.
fn account_key(uuid: &Uuid) -> String {
    let bytes = uuid.as_bytes();
    format!("{ACCOUNTS}{:02x}{:02x}", bytes[0], bytes[1])
}

/// The field of an account's changing part: its UUID bytes and `l`.
fn changing_field(uuid: &Uuid) -> [u8; 17] {
    let mut field = [b'l'; 17];
    field[..16].copy_from_slice(uuid.as_bytes());
    field
}

/// The login-index hash holding `login`: by the low 16 bits of the 64-bit FNV-1a hash of its
/// UTF-8 bytes (a fixed function: every node and every version finds the same hash).
fn login_key(login: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in login.as_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{LOGINS}{:04x}", hash & 0xffff)
}

/// The hash of request results made in the period-th REQUEST_ID_TTL_MS of Unix time (by the
/// event's time, so that every node keeps the same hashes), one of 4,096 by the request id's
/// first 12 bits.
fn request_key(period: u64, request_id: &Uuid) -> String {
    format!("{REQUESTS}{period}:{:03x}", request_slot(request_id))
}

/// Which of a period's REQUEST_SLOTS hashes keeps the result of `request_id`: its first 12 bits.
fn request_slot(request_id: &Uuid) -> usize {
    let bytes = request_id.as_bytes();
    (usize::from(bytes[0]) << 4) | usize::from(bytes[1] >> 4)
}

/// How many request-result hashes a period has.
const REQUEST_SLOTS: usize = 4096;

/// How long before a request-result hash expires this process stops trusting its mark (the
/// expiry is Redis's to apply, by its own clock): a write after that sets the expiry again.
const EXPIRY_MARK_MARGIN_MS: u64 = 60_000;

/// The request-result hashes this process has given their expiry, one bit per hash of each
/// period, so that a hash gets its `PEXPIREAT` with its first write rather than every one (a
/// command per write in every node's Redis). A missing mark only costs a command; a wrong one
/// would leave a hash without expiry, so marks are set only after the write ran, dropped
/// with the database (see [`Store::forget_clock`]) and not trusted near the expiry, past
/// which a late write would make the hash anew.
#[derive(Default)]
struct ExpiryMarks(BTreeMap<u64, Box<[u64; REQUEST_SLOTS / 64]>>);

impl ExpiryMarks {
    /// Whether the hash `slot` of `period` was given its expiry and will keep it past `now`.
    fn has(&self, period: u64, slot: usize, now: u64) -> bool {
        now + EXPIRY_MARK_MARGIN_MS < request_expiry_ms(period)
            && self
                .0
                .get(&period)
                .is_some_and(|bits| bits[slot / 64] & (1 << (slot % 64)) != 0)
    }

    /// Marks the hashes `given` (period, slot), and forgets periods already expired.
    fn mark(&mut self, given: &[(u64, usize)], now: u64) {
        self.0.retain(|period, _| now < request_expiry_ms(*period));
        for &(period, slot) in given {
            let bits = self
                .0
                .entry(period)
                .or_insert_with(|| Box::new([0; REQUEST_SLOTS / 64]));
            bits[slot / 64] |= 1 << (slot % 64);
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// When the request-result hashes of `period` expire: REQUEST_ID_TTL_MS after its last
/// moment, so that every result is kept at least that long.
fn request_expiry_ms(period: u64) -> u64 {
    (period + 2) * REQUEST_ID_TTL_MS
}

/// The hashes a result of `request_id` still kept at `now_ms` can be in (one period more
/// ahead, for a coordinator whose clock ran ahead of this node's).
fn request_keys_around(now_ms: u64, request_id: &Uuid) -> [String; PERIODS_AROUND] {
    let period = now_ms / REQUEST_ID_TTL_MS;
    [period.saturating_sub(1), period, period + 1].map(|p| request_key(p, request_id))
}

/// The record fixed at an account's creation: CBOR of (created ms, client address, real
/// name, password hash).
fn encode_fixed(
    created_ms: u64,
    client_addr: &str,
    real_name: &str,
    password_hash: &Option<String>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + real_name.len());
    ciborium::into_writer(
        &(created_ms, client_addr, real_name, password_hash),
        &mut out,
    )
    .expect("a record serialises into memory");
    out
}

/// The changing part of an account: its changed time (8 bytes, little-endian) and login.
fn encode_changing(changed_ms: u64, login: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + login.len());
    out.extend_from_slice(&changed_ms.to_le_bytes());
    out.extend_from_slice(login.as_bytes());
    out
}

/// An account from its two stored fields (both must be there).
fn account_from(
    uuid: Uuid,
    fixed: Option<&[u8]>,
    changing: Option<&[u8]>,
) -> Result<StoredAccount> {
    let (Some(fixed), Some(changing)) = (fixed, changing) else {
        return Err(corrupt(format!("account {uuid} lacks part of its record")));
    };
    type Fixed = (u64, String, String, Option<String>);
    let (created_ms, client_addr, real_name, password_hash): Fixed =
        ciborium::from_reader(fixed).map_err(|e| corrupt(format!("account {uuid} record: {e}")))?;
    let (changed, login) = changing
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt(format!("account {uuid} changing part {changing:?}")))?;
    let login = String::from_utf8(login.to_vec())
        .map_err(|e| corrupt(format!("account {uuid} login: {e}")))?;
    Ok(StoredAccount {
        view: AccountView {
            uuid,
            login,
            real_name,
            client_addr,
            created_ms,
            changed_ms: u64::from_le_bytes(*changed),
            has_password: password_hash.is_some(),
        },
        password_hash,
    })
}

/// A request's result as remembered: its kind's initial and the account's 16 UUID bytes (the
/// request id, the field name, is its 16 bytes too: a million results take 40 MB less than as
/// text, which every full sync ships).
fn encode_result(result: WriteResult) -> [u8; 17] {
    let mut raw = [0u8; 17];
    raw[0] = result.kind.as_bytes()[0];
    raw[1..].copy_from_slice(result.uuid.as_bytes());
    raw
}

fn parse_result(raw: &[u8]) -> Result<WriteResult> {
    let bad = || corrupt(format!("request result {raw:?}"));
    let (kind, uuid) = raw.split_first().ok_or_else(bad)?;
    let kind = match kind {
        b'c' => "create",
        b'r' => "rename",
        b'd' => "delete",
        _ => return Err(bad()),
    };
    let uuid = Uuid::from_slice(uuid).map_err(|_| bad())?;
    Ok(WriteResult { kind, uuid })
}

fn corrupt(detail: String) -> Error {
    Error::refused(
        ErrorCode::Internal,
        format!("stored data is inconsistent: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_mark_holds_until_shortly_before_the_expiry_and_is_then_forgotten() {
        let period = 2_000;
        let start = period * REQUEST_ID_TTL_MS;
        let expiry = request_expiry_ms(period);
        let mut marks = ExpiryMarks::default();
        assert!(!marks.has(period, 7, start));
        marks.mark(&[(period, 7)], start);
        assert!(marks.has(period, 7, start));
        assert!(!marks.has(period, 8, start), "another hash");
        assert!(!marks.has(period + 1, 7, start), "another period");
        assert!(marks.has(period, 7, expiry - EXPIRY_MARK_MARGIN_MS - 1));
        assert!(!marks.has(period, 7, expiry - EXPIRY_MARK_MARGIN_MS));
        marks.mark(&[(period + 2, 1)], expiry);
        assert_eq!(marks.0.keys().copied().collect::<Vec<_>>(), [period + 2]);
    }

    #[test]
    fn request_keys_name_the_slot_in_three_hex_digits() {
        let id = Uuid::from_u128(0xabcd_u128 << 112);
        assert_eq!(request_slot(&id), 0xabc);
        assert_eq!(request_key(5, &id), "idlab:requests:5:abc");
    }
}
