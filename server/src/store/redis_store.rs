//! The directory in one Redis: an account hash per UUID (`idlab:acct:<uuid>`), the index
//! `idlab:by-login` (login -> uuid), the node's applied clock (`idlab:clock`), its identity
//! (`idlab:meta`) and recent request results (`idlab:req:<id>`). Every write is one Lua script,
//! so a crash never leaves a half-applied event.

use crate::account::AccountView;
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::limits::REQUEST_ID_TTL_MS;
use redis::aio::MultiplexedConnection;
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

/// What [`Store::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was applied and the clock advanced.
    Done(WriteResult),
    /// The request id was seen before: nothing changed; this is the first result.
    Duplicate(WriteResult),
}

/// A connection to the node's Redis (multiplexed: clones share it).
#[derive(Clone)]
pub struct Store {
    conn: MultiplexedConnection,
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
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Store { conn })
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

    /// Applies `event` if its precondition holds and it is the next one in order.
    pub async fn apply(&self, event: &Event) -> Result<Applied> {
        let mut call = APPLY.prepare_invoke();
        call.arg(event.change.kind())
            .arg(event.clock)
            .arg(event.request_id.to_string())
            .arg(REQUEST_ID_TTL_MS)
            .arg(event.at_ms)
            .arg(event.change.uuid().to_string());
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
        let reply: Vec<String> = call.invoke_async(&mut self.conn.clone()).await?;
        match reply.as_slice() {
            [tag, result] if tag == "ok" => Ok(Applied::Done(parse_result(result)?)),
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
