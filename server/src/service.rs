//! Serving one request: validate it, check passwords, turn writes into events and apply them in
//! clock order, read the store for lookups. Knows nothing of sockets or frames.

use crate::account::{check_real_name, normalize_login};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::password::PasswordPool;
use crate::store::{Applied, Store, StoredAccount, WriteResult};
use crate::wire::{ListKind, Reply, Request, StatusView};
use serde_bytes::ByteBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Rank of a node that is alone (ranks start at 1).
const SOLE_RANK: u32 = 1;

/// The identity operations over one node's store.
#[derive(Debug)]
pub struct Service {
    store: Store,
    passwords: PasswordPool,
    /// Serialises event creation; holds the last applied clock once known.
    sequencer: Mutex<Option<u64>>,
    node_id: Uuid,
    cluster: String,
    addr: String,
}

impl Service {
    /// A service over `store` for the node `node_id` of `cluster`, serving at `addr`.
    pub fn new(store: Store, node_id: Uuid, cluster: String, addr: String) -> Self {
        Service {
            store,
            passwords: PasswordPool::default(),
            sequencer: Mutex::new(None),
            node_id,
            cluster,
            addr,
        }
    }

    /// Serves `request` from the client at `client_addr`; failures become error replies.
    pub async fn handle(&self, request: Request, client_addr: &str) -> Reply {
        match self.serve(request, client_addr).await {
            Ok(reply) => reply,
            Err(err) => {
                let code = err.code();
                if code == ErrorCode::Internal || code == ErrorCode::Unavailable {
                    tracing::error!(error = %err, "request failed");
                }
                Reply::Error(crate::wire::WireError {
                    code,
                    message: err.to_string(),
                })
            }
        }
    }

    async fn serve(&self, request: Request, client_addr: &str) -> Result<Reply> {
        match request {
            Request::Create {
                login,
                real_name,
                password,
                request_id,
            } => {
                self.create(login, real_name, password, request_id, client_addr)
                    .await
            }
            Request::Lookup { login } => {
                let login = normalize_login(&login)?;
                Ok(Reply::Account(self.account_by_login(&login).await?.view))
            }
            Request::ReverseLookup { uuid } => match self.store.reverse_lookup(uuid).await? {
                Some(account) => Ok(Reply::Account(account.view)),
                None => Err(not_found(&format!("no account has UUID {uuid}"))),
            },
            Request::Modify {
                old,
                new,
                password,
                request_id,
            } => self.modify(old, new, password, request_id).await,
            Request::Delete {
                login,
                password,
                request_id,
            } => self.delete(login, password, request_id).await,
            Request::List { what } => self.list(what).await,
            Request::Status => Ok(Reply::Status(StatusView {
                node_id: self.node_id,
                cluster: self.cluster.clone(),
                addr: self.addr.clone(),
                clock: self.store.clock().await?,
                accounts: self.store.count().await?,
            })),
        }
    }

    async fn create(
        &self,
        login: String,
        real_name: String,
        password: Option<ByteBuf>,
        request_id: Uuid,
        client_addr: &str,
    ) -> Result<Reply> {
        let login = normalize_login(&login)?;
        check_real_name(&real_name)?;
        if let Some(first) = self.store.request_result(request_id).await? {
            return Ok(reply_for(first));
        }
        let password_hash = match password {
            Some(digest) => Some(self.passwords.hash(digest.into_vec()).await?),
            None => None,
        };
        let change = Change::Create {
            uuid: Uuid::new_v4(),
            login,
            real_name,
            client_addr: client_addr.to_string(),
            password_hash,
        };
        self.commit(request_id, change).await
    }

    async fn modify(
        &self,
        old: String,
        new: String,
        password: Option<ByteBuf>,
        request_id: Uuid,
    ) -> Result<Reply> {
        let old = normalize_login(&old)?;
        let new = normalize_login(&new)?;
        if let Some(first) = self.store.request_result(request_id).await? {
            return Ok(reply_for(first));
        }
        let account = self.account_by_login(&old).await?;
        self.check_password(&account, password).await?;
        let change = Change::Rename {
            uuid: account.view.uuid,
            old,
            new,
        };
        self.commit(request_id, change).await
    }

    async fn delete(
        &self,
        login: String,
        password: Option<ByteBuf>,
        request_id: Uuid,
    ) -> Result<Reply> {
        let login = normalize_login(&login)?;
        if let Some(first) = self.store.request_result(request_id).await? {
            return Ok(reply_for(first));
        }
        let account = self.account_by_login(&login).await?;
        self.check_password(&account, password).await?;
        let change = Change::Delete {
            uuid: account.view.uuid,
            login,
        };
        self.commit(request_id, change).await
    }

    async fn list(&self, what: ListKind) -> Result<Reply> {
        Ok(match what {
            ListKind::Users => Reply::Users(self.store.logins().await?.into_keys().collect()),
            ListKind::Uuids => {
                let mut uuids: Vec<Uuid> = self.store.logins().await?.into_values().collect();
                uuids.sort();
                Reply::Uuids(uuids)
            }
            ListKind::All => Reply::All(self.store.accounts().await?),
        })
    }

    async fn account_by_login(&self, login: &str) -> Result<StoredAccount> {
        self.store
            .lookup(login)
            .await?
            .ok_or_else(|| not_found(&format!("no account has login {login:?}")))
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

    /// Gives `change` the next clock and applies it; one event at a time.
    async fn commit(&self, request_id: Uuid, change: Change) -> Result<Reply> {
        let mut applied = self.sequencer.lock().await;
        let last = match *applied {
            Some(clock) => clock,
            None => self.store.clock().await?,
        };
        let event = Event {
            clock: last + 1,
            epoch: 0,
            origin_rank: SOLE_RANK,
            request_id,
            at_ms: now_ms(),
            change,
        };
        match self.store.apply(&event).await {
            Ok(Applied::Done(result)) => {
                *applied = Some(event.clock);
                tracing::debug!(clock = event.clock, kind = result.kind, uuid = %result.uuid, "applied");
                Ok(reply_for(result))
            }
            Ok(Applied::Duplicate(first)) => {
                *applied = Some(last);
                Ok(reply_for(first))
            }
            Err(err @ Error::Refused { code, .. }) if code != ErrorCode::Internal => {
                *applied = Some(last);
                Err(err)
            }
            Err(err) => {
                // Unknown whether it was applied: read the clock again next time.
                *applied = None;
                Err(err)
            }
        }
    }
}

fn reply_for(result: WriteResult) -> Reply {
    match result.kind {
        "create" => Reply::Created { uuid: result.uuid },
        "rename" => Reply::Modified { uuid: result.uuid },
        _ => Reply::Deleted { uuid: result.uuid },
    }
}

fn not_found(message: &str) -> Error {
    Error::refused(ErrorCode::NotFound, message)
}

/// Wall-clock time in milliseconds since the Unix epoch (for record timestamps only; the
/// protocol never orders by it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
