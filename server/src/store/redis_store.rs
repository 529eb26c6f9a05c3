//! The directory in one Redis: an account hash per UUID (`idlab:acct:<uuid>`), the index
//! `idlab:by-login` (login -> uuid), the node's applied clock (`idlab:clock`), its identity
//! (`idlab:meta`) and recent request results (`idlab:req:<id>`). Every write is one Lua script,
//! so a crash never leaves a half-applied event.

use crate::account::AccountView;
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event, LoggedEvent};
use crate::limits::{EVENT_LOG_MAX, REQUEST_ID_TTL_MS};
use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use uuid::Uuid;

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("apply.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static RAISE_EPOCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("raise_epoch.lua")));
static LOOKUP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lookup.lua")));

const BY_LOGIN: &str = "idlab:by-login";
const CLOCK: &str = "idlab:clock";
const EPOCH: &str = "idlab:epoch";
const EVENTS: &str = "idlab:events";
const ACCOUNTS_PER_BATCH: usize = 1000;

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
        let store = Store {
            conn,
            url: url.to_string(),
        };
        store.load_scripts().await?;
        Ok(store)
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

    /// Applies new events in order, each getting the next clock (their `clock` is ignored),
    /// in one round trip. A request id seen before returns its first result instead; a failed
    /// precondition consumes no clock.
    pub async fn apply_new(&self, events: &[Event]) -> Result<Vec<Result<Applied>>> {
        self.apply_batch(events, |_| "assign".to_string()).await
    }

    /// Applies replicated events, each of which must be the next in order; stops being useful
    /// at the first failure (the rest then fail on their clock).
    pub async fn apply_replicated(&self, events: &[Event]) -> Result<Vec<Result<Applied>>> {
        self.apply_batch(events, |e| e.clock.to_string()).await
    }

    async fn apply_batch(
        &self,
        events: &[Event],
        mode: impl Fn(&Event) -> String,
    ) -> Result<Vec<Result<Applied>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for event in events {
            // The log keeps the event without its clock, which the script decides.
            let json = serde_json::to_string(&Event {
                clock: 0,
                ..event.clone()
            })
            .expect("events serialise");
            let call = pipe
                .cmd("EVALSHA")
                .arg(APPLY.get_hash())
                .arg(0)
                .arg(mode(event))
                .arg(json)
                .arg(REQUEST_ID_TTL_MS)
                .arg(EVENT_LOG_MAX)
                .arg(event.change.kind())
                .arg(event.change.uuid().to_string())
                .arg(event.request_id.to_string())
                .arg(event.at_ms);
            match &event.change {
                Change::Create {
                    login,
                    real_name,
                    client_addr,
                    password_hash,
                    ..
                } => call
                    .arg(login)
                    .arg(real_name)
                    .arg(client_addr)
                    .arg(password_hash.as_deref().unwrap_or("")),
                Change::Rename { old, new, .. } => call.arg(old).arg(new),
                Change::Delete { login, .. } => call.arg(login),
            };
        }
        let replies: Vec<Vec<String>> = match pipe.query_async(&mut self.conn.clone()).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                self.load_scripts().await?;
                pipe.query_async(&mut self.conn.clone()).await?
            }
            other => other?,
        };
        Ok(events
            .iter()
            .zip(replies)
            .map(|(event, reply)| apply_outcome(event, &reply))
            .collect())
    }

    /// Makes sure Redis knows the scripts that are sent by hash in pipelines.
    pub async fn load_scripts(&self) -> Result<()> {
        APPLY
            .prepare_invoke()
            .load_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Up to `limit` logged events with a clock above `after`, in clock order.
    pub async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        let raw: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(EVENTS)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?;
        raw.iter().map(|json| parse_logged(json)).collect()
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
        let result: Option<String> = redis::cmd("GET")
            .arg(format!("idlab:req:{request_id}"))
            .query_async(&mut self.conn.clone())
            .await?;
        result.as_deref().map(parse_result).transpose()
    }

    /// The account with this login name.
    pub async fn lookup(&self, login: &str) -> Result<Option<StoredAccount>> {
        let reply: Vec<String> = LOOKUP
            .arg(login)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some((uuid, fields)) = reply.split_first() else {
            return Ok(None);
        };
        let uuid = Uuid::parse_str(uuid).map_err(|e| corrupt(format!("uuid {uuid:?}: {e}")))?;
        let map = fields
            .chunks(2)
            .filter_map(|kv| Some((kv[0].clone(), kv.get(1)?.clone())))
            .collect();
        account_from_fields(uuid, map).map(Some)
    }

    /// The account with this UUID.
    pub async fn reverse_lookup(&self, uuid: Uuid) -> Result<Option<StoredAccount>> {
        let map: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("idlab:acct:{uuid}"))
            .query_async(&mut self.conn.clone())
            .await?;
        if map.is_empty() {
            return Ok(None);
        }
        account_from_fields(uuid, map).map(Some)
    }

    /// Every login name with its UUID, sorted by login name.
    pub async fn logins(&self) -> Result<BTreeMap<String, Uuid>> {
        let map: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(BY_LOGIN)
            .query_async(&mut self.conn.clone())
            .await?;
        map.into_iter()
            .map(|(login, uuid)| {
                let uuid = Uuid::parse_str(&uuid)
                    .map_err(|e| corrupt(format!("index entry {login:?}: {e}")))?;
                Ok((login, uuid))
            })
            .collect()
    }

    /// Every account, sorted by login name, read in pipelined batches.
    pub async fn accounts(&self) -> Result<Vec<AccountView>> {
        let logins = self.logins().await?;
        let uuids: Vec<Uuid> = logins.into_values().collect();
        let mut out = Vec::with_capacity(uuids.len());
        for batch in uuids.chunks(ACCOUNTS_PER_BATCH) {
            let mut pipe = redis::pipe();
            for uuid in batch {
                pipe.cmd("HGETALL").arg(format!("idlab:acct:{uuid}"));
            }
            let maps: Vec<BTreeMap<String, String>> =
                pipe.query_async(&mut self.conn.clone()).await?;
            for (uuid, map) in batch.iter().zip(maps) {
                // Deleted between reading the index and reading the account.
                if !map.is_empty() {
                    out.push(account_from_fields(*uuid, map)?.view);
                }
            }
        }
        Ok(out)
    }

    /// How many accounts are stored.
    pub async fn count(&self) -> Result<u64> {
        Ok(redis::cmd("HLEN")
            .arg(BY_LOGIN)
            .query_async(&mut self.conn.clone())
            .await?)
    }
}

fn apply_outcome(event: &Event, reply: &[String]) -> Result<Applied> {
    match reply {
        [tag, result, clock] if tag == "ok" => {
            let clock = clock
                .parse()
                .map_err(|_| corrupt(format!("apply clock {clock:?}")))?;
            Ok(Applied::Done(parse_result(result)?, clock))
        }
        [tag, result] if tag == "dup" => Ok(Applied::Duplicate(parse_result(result)?)),
        [_, code] if code == "login_exists" => Err(Error::refused(
            ErrorCode::LoginExists,
            format!("login {:?} already exists", login_of(&event.change)),
        )),
        [_, code] if code == "new_name_taken" => Err(Error::refused(
            ErrorCode::NewNameTaken,
            format!("login {:?} is already taken", login_of(&event.change)),
        )),
        [_, code] if code == "not_found" => Err(Error::refused(
            ErrorCode::NotFound,
            format!("no account {}", event.change.uuid()),
        )),
        [_, code, current] if code == "clock" => Err(corrupt(format!(
            "event clock {} does not follow the stored clock {current}",
            event.clock
        ))),
        _ => Err(corrupt(format!("apply replied {reply:?}"))),
    }
}

/// A log entry: `<clock>|<applied ms>|<event JSON without its clock>` (see apply.lua).
fn parse_logged(entry: &str) -> Result<LoggedEvent> {
    let bad = |why: &str| corrupt(format!("logged event {entry:?}: {why}"));
    let mut parts = entry.splitn(3, '|');
    let (Some(clock), Some(applied_ms), Some(json)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not clock|applied|event"));
    };
    let mut event: Event = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    event.clock = clock.parse().map_err(|_| bad("bad clock"))?;
    let applied_ms = applied_ms.parse().map_err(|_| bad("bad applied time"))?;
    Ok(LoggedEvent { event, applied_ms })
}

fn login_of(change: &Change) -> &str {
    match change {
        Change::Create { login, .. } | Change::Delete { login, .. } => login,
        Change::Rename { new, .. } => new,
    }
}

fn parse_result(raw: &str) -> Result<WriteResult> {
    let (kind, uuid) = raw
        .split_once(' ')
        .ok_or_else(|| corrupt(format!("request result {raw:?}")))?;
    let kind = match kind {
        "create" => "create",
        "rename" => "rename",
        "delete" => "delete",
        other => return Err(corrupt(format!("request result kind {other:?}"))),
    };
    let uuid =
        Uuid::parse_str(uuid).map_err(|e| corrupt(format!("request result {raw:?}: {e}")))?;
    Ok(WriteResult { kind, uuid })
}

fn account_from_fields(uuid: Uuid, mut map: BTreeMap<String, String>) -> Result<StoredAccount> {
    let mut take = |field: &str| {
        map.remove(field)
            .ok_or_else(|| corrupt(format!("account {uuid} has no {field}")))
    };
    let number = |field: &str, value: String| {
        value
            .parse::<u64>()
            .map_err(|e| corrupt(format!("account {uuid} {field} {value:?}: {e}")))
    };
    let login = take("login")?;
    let real_name = take("real_name")?;
    let client_addr = take("client_addr")?;
    let created_ms = number("created_ms", take("created_ms")?)?;
    let changed_ms = number("changed_ms", take("changed_ms")?)?;
    let password_hash = map.remove("password_hash");
    Ok(StoredAccount {
        view: AccountView {
            uuid,
            login,
            real_name,
            client_addr,
            created_ms,
            changed_ms,
            has_password: password_hash.is_some(),
        },
        password_hash,
    })
}

fn corrupt(detail: String) -> Error {
    Error::refused(
        ErrorCode::Internal,
        format!("stored data is inconsistent: {detail}"),
    )
}
