//! Serving one request: validate it, check passwords, turn writes into events and apply them in
//! clock order, read the store for lookups. Knows nothing of sockets or frames.

use crate::account::{check_real_name, normalize_login};
use crate::cluster::{ClusterHandle, ClusterState};
use crate::core::{Input, Role};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::forward::Forwarder;
use crate::password::PasswordPool;
use crate::store::{Applied, Store, StoredAccount, WriteResult};
use crate::wire::{ListKind, MemberStatus, Reply, Request, StatusView};
use serde_bytes::ByteBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use uuid::Uuid;

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
    membership: ClusterHandle,
    forwarder: Forwarder,
}

impl Service {
    /// A service over `store` for the node `node_id` of `cluster`, serving at `addr`, with
    /// `membership` saying who the coordinator is.
    pub fn new(
        store: Store,
        node_id: Uuid,
        cluster: String,
        addr: String,
        membership: ClusterHandle,
    ) -> Self {
        Service {
            store,
            passwords: PasswordPool::default(),
            sequencer: Mutex::new(None),
            node_id,
            forwarder: Forwarder::new(cluster.clone()),
            cluster,
            addr,
            membership,
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

    /// Where a request is served: status here; anything else by the coordinator, locally if
    /// that is us, else forwarded to it; nowhere while no coordinator is known.
    async fn serve(&self, request: Request, client_addr: &str) -> Result<Reply> {
        match request {
            Request::Status => self.status().await,
            Request::Forward {
                epoch,
                client_addr,
                request,
            } => self.serve_forwarded(epoch, &client_addr, *request).await,
            request => {
                let state = self.membership.state();
                match (state.view.role, state.view.coordinator) {
                    (Role::Coordinator, _) => self.serve_here(request, client_addr).await,
                    (Role::Follower, Some(coordinator)) => {
                        let forward = Request::Forward {
                            epoch: state.view.epoch,
                            client_addr: client_addr.to_string(),
                            request: Box::new(request),
                        };
                        match self.forwarder.forward(coordinator.addr, &forward).await {
                            Ok(Reply::Error(e)) => Err(Error::refused(e.code, e.message)),
                            Ok(reply) => Ok(reply),
                            Err(e) => {
                                self.membership.notify(Input::CoordinatorUnreachable);
                                Err(unavailable(format!(
                                    "coordinator {} did not answer ({e}); an election may follow",
                                    coordinator.addr
                                )))
                            }
                        }
                    }
                    _ => Err(unavailable(
                        "no coordinator is known: an election is under way".to_string(),
                    )),
                }
            }
        }
    }

    /// A request a follower passed on: served only by the coordinator of the same epoch.
    async fn serve_forwarded(
        &self,
        epoch: u64,
        client_addr: &str,
        request: Request,
    ) -> Result<Reply> {
        if matches!(request, Request::Forward { .. } | Request::Status) {
            return Err(Error::refused(
                ErrorCode::InvalidInput,
                "a forwarded request cannot be forwarded again",
            ));
        }
        let view = self.membership.state().view;
        if epoch > view.epoch {
            self.membership.notify(Input::SawEpoch(epoch));
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
        self.serve_here(request, client_addr).await
    }

    async fn serve_here(&self, request: Request, client_addr: &str) -> Result<Reply> {
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
            Request::Status | Request::Forward { .. } => Err(Error::refused(
                ErrorCode::InvalidInput,
                "not a directory operation",
            )),
        }
    }

    async fn status(&self) -> Result<Reply> {
        let ClusterState {
            view,
            ignored_datagrams,
        } = self.membership.state();
        let now_ms = self.membership.now_ms();
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
            node_id: self.node_id,
            cluster: self.cluster.clone(),
            addr: self.addr.clone(),
            rank: view.me.rank,
            role: view.role.as_str().to_string(),
            epoch: view.epoch,
            coordinator_rank: view.coordinator.and_then(|c| c.rank),
            coordinator_addr: view.coordinator.map(|c| c.addr.to_string()),
            clock: self.store.clock().await?,
            accounts: self.store.count().await?,
            members,
            elections_started: view.elections_started,
            ignored_datagrams,
        }))
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
        let view = self.membership.state().view;
        let event = Event {
            clock: last + 1,
            epoch: view.epoch,
            origin_rank: view.me.rank.unwrap_or(0),
            request_id,
            at_ms: now_ms(),
            change,
        };
        match self.store.apply(&event).await {
            Ok(Applied::Done(result)) => {
                *applied = Some(event.clock);
                self.membership.notify(Input::ClockAdvanced(event.clock));
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

fn unavailable(message: String) -> Error {
    Error::refused(ErrorCode::Unavailable, message)
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
