//! The workload: client sessions that send operations and record each one (invoke, answer,
//! times) in the history. A load is a set of sessions choosing operations from a seeded
//! generator; it never checks answers itself (the checkers do).

use crate::history::{now_ms, OpRecord, Outcome};
use crate::limits::CLIENT_REPLY_MS;
use crate::scenario::{LoadSpec, OpKind};
use idserver::client::{Client, ClientConfig};
use idserver::connection::Transport;
use idserver::password::client_digest;
use idserver::wire::{Reply, Request};
use idserver::ErrorCode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_bytes::ByteBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The history every session appends to.
pub type History = Arc<Mutex<Vec<OpRecord>>>;

/// One client session (one [`Client`], one session clock).
pub struct Session {
    id: u32,
    host: u32,
    client: Client,
    history: History,
}

/// One operation to send.
#[derive(Debug, Clone)]
pub struct Op {
    /// Which.
    pub kind: OpKind,
    /// Its login.
    pub login: String,
    /// A modify's new login.
    pub new_login: Option<String>,
    /// A password to send.
    pub password: Option<String>,
}

impl Session {
    /// A session on client host `host` that tries `servers` in order.
    pub fn new(
        id: u32,
        host: u32,
        servers: Vec<String>,
        cluster: &str,
        transport: Transport,
        history: History,
    ) -> Session {
        let client = Client::new(ClientConfig {
            servers,
            cluster: cluster.to_string(),
            connect_timeout_ms: 300,
            reply_timeout_ms: CLIENT_REPLY_MS,
            retry_for_ms: 3_000,
            transport,
        });
        Session {
            id,
            host,
            client,
            history,
        }
    }

    /// Sends `op`, records it, and returns the record.
    pub async fn run(&mut self, op: &Op) -> OpRecord {
        let password = op
            .password
            .as_deref()
            .map(|p| ByteBuf::from(client_digest(p)));
        let request_id = op.kind.is_write().then(Uuid::new_v4);
        let request = match op.kind {
            OpKind::Create => Request::Create {
                login: op.login.clone(),
                real_name: format!("session {}", self.id),
                password,
                request_id: request_id.expect("writes have ids"),
            },
            OpKind::Lookup => Request::Lookup {
                login: op.login.clone(),
            },
            OpKind::Modify => Request::Modify {
                old: op.login.clone(),
                new: op.new_login.clone().unwrap_or_default(),
                password,
                request_id: request_id.expect("writes have ids"),
            },
            OpKind::Delete => Request::Delete {
                login: op.login.clone(),
                password,
                request_id: request_id.expect("writes have ids"),
            },
        };
        let invoke_ms = now_ms();
        // A write's request id was made just above: its first attempt may say so.
        let result = if request_id.is_some() {
            self.client.call_new(request).await
        } else {
            self.client.call(request).await
        };
        let complete_ms = now_ms();
        let (outcome, uuid, error) = match result {
            Ok(Reply::Created { uuid })
            | Ok(Reply::Modified { uuid })
            | Ok(Reply::Deleted { uuid }) => (Outcome::Ok, Some(uuid), None),
            Ok(Reply::Account(view)) => (Outcome::Ok, Some(view.uuid), None),
            Ok(other) => (
                Outcome::Timeout,
                None,
                Some(format!("unexpected reply {other:?}")),
            ),
            Err(e) => (
                classify(e.code()),
                None,
                Some(e.code().as_str().to_string()),
            ),
        };
        let record = OpRecord {
            session: self.id,
            host: self.host,
            kind: op.kind,
            login: op.login.clone(),
            new_login: op.new_login.clone(),
            request_id,
            invoke_ms,
            complete_ms,
            outcome,
            uuid,
            error,
            server: self.client.bound_server().map(String::from),
            clock: self.client.session_clock(),
        };
        self.history
            .lock()
            .expect("history lock")
            .push(record.clone());
        record
    }
}

/// Whether a failure shows the operation took no effect (definite) or leaves it unknown.
fn classify(code: ErrorCode) -> Outcome {
    match code {
        ErrorCode::LoginExists
        | ErrorCode::NotFound
        | ErrorCode::WrongPassword
        | ErrorCode::PasswordRequired
        | ErrorCode::NewNameTaken
        | ErrorCode::InvalidInput
        | ErrorCode::WrongCluster
        | ErrorCode::VersionMismatch
        | ErrorCode::Forbidden => Outcome::Fail,
        ErrorCode::Unreachable
        | ErrorCode::Unavailable
        | ErrorCode::AckTimeout
        | ErrorCode::BadFrame
        | ErrorCode::Internal
        | ErrorCode::Unknown => Outcome::Timeout,
    }
}

/// Chooses a session's operations: weights from the mix, logins from a fixed key space or, with
/// `keys = 0`, fresh logins for creates and the session's own accounts for the rest.
pub struct Generator {
    rng: ChaCha8Rng,
    spec: LoadSpec,
    prefix: String,
    made: Vec<String>,
    next: u64,
}

impl Generator {
    /// The generator of session `session` of load `load`, seeded from the run's seed.
    pub fn new(seed: u64, load: usize, session: u32, spec: LoadSpec) -> Generator {
        let stream = seed ^ ((load as u64) << 32) ^ u64::from(session).wrapping_mul(0x9e37_79b9);
        Generator {
            rng: ChaCha8Rng::seed_from_u64(stream),
            spec,
            prefix: format!("l{load}s{session}n"),
            made: Vec::new(),
            next: 0,
        }
    }

    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }

    fn key(&mut self) -> String {
        format!("k{}", self.rng.gen_range(0..self.spec.keys))
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let m = self.spec.mix;
        let total = m.create + m.lookup + m.modify + m.delete;
        let pick = self.rng.gen_range(0..total);
        let kind = if pick < m.create {
            OpKind::Create
        } else if pick < m.create + m.lookup {
            OpKind::Lookup
        } else if pick < m.create + m.lookup + m.modify {
            OpKind::Modify
        } else {
            OpKind::Delete
        };
        if self.spec.keys > 0 {
            let login = self.key();
            let new_login = (kind == OpKind::Modify).then(|| self.key());
            return Op {
                kind,
                login,
                new_login,
                password: None,
            };
        }
        if kind == OpKind::Create || self.made.is_empty() {
            let login = self.fresh();
            self.made.push(login.clone());
            return Op {
                kind: OpKind::Create,
                login,
                new_login: None,
                password: None,
            };
        }
        let at = self.rng.gen_range(0..self.made.len());
        let login = self.made[at].clone();
        match kind {
            OpKind::Modify => {
                let new = self.fresh();
                self.made[at] = new.clone();
                Op {
                    kind,
                    login,
                    new_login: Some(new),
                    password: None,
                }
            }
            OpKind::Delete => {
                self.made.swap_remove(at);
                Op {
                    kind,
                    login,
                    new_login: None,
                    password: None,
                }
            }
            _ => Op {
                kind,
                login,
                new_login: None,
                password: None,
            },
        }
    }

    /// Pause before the next operation.
    pub fn think(&self) -> Duration {
        Duration::from_millis(self.spec.think_ms)
    }
}

/// Runs one session of a load until `until_ms` (Unix ms); returns how many operations it sent.
pub async fn run_session(mut session: Session, mut generator: Generator, until_ms: u64) -> u64 {
    let mut sent = 0;
    while now_ms() < until_ms {
        let op = generator.next_op();
        session.run(&op).await;
        sent += 1;
        let think = generator.think();
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Mix;

    fn spec(keys: u32) -> LoadSpec {
        LoadSpec {
            clients: 1,
            duration_ms: 1,
            mix: Mix {
                create: 2,
                lookup: 1,
                modify: 1,
                delete: 1,
            },
            keys,
            spread: false,
            background: false,
            think_ms: 0,
            from: 0,
            via: Vec::new(),
        }
    }

    fn ops(seed: u64, keys: u32) -> Vec<(OpKind, String)> {
        let mut g = Generator::new(seed, 0, 3, spec(keys));
        (0..50)
            .map(|_| {
                let op = g.next_op();
                (op.kind, op.login)
            })
            .collect()
    }

    #[test]
    fn a_seed_replays_the_same_operations() {
        assert_eq!(ops(7, 0), ops(7, 0));
        assert_eq!(ops(7, 4), ops(7, 4));
        assert_ne!(ops(7, 4), ops(8, 4));
    }

    #[test]
    fn without_a_key_space_sessions_touch_only_what_they_created() {
        let mut g = Generator::new(1, 0, 0, spec(0));
        let mut live = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let op = g.next_op();
            match op.kind {
                OpKind::Create => assert!(live.insert(op.login)),
                OpKind::Lookup => assert!(live.contains(&op.login)),
                OpKind::Modify => {
                    assert!(live.remove(&op.login));
                    assert!(live.insert(op.new_login.unwrap()));
                }
                OpKind::Delete => assert!(live.remove(&op.login)),
            }
        }
    }
}
