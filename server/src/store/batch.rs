//! A batch of new events, decided and built: each write is checked in order against what the
//! store holds and what the batch's earlier writes did (a login taken, an account gone), and
//! the batch's Redis commands are built for one `MULTI`/`EXEC`.

use super::keys::*;
use super::log_entry;
use super::records::{Applied, WriteResult};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::limits::{EVENT_LOG_MAX, EVENT_LOG_TRIM_EVERY, REQUEST_ID_TTL_MS};
use crate::time::now_ms;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Decides a batch in order from what the store holds (`index`: login -> owner for every
/// login the batch touches; `remembered`: each write's earlier result, if its request id was
/// seen) starting at `clock`: returns the writes, each event's outcome and the last clock.
pub(super) fn decide<'a>(
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
pub(super) fn owners_needed(change: &Change) -> Vec<(&str, Option<Uuid>)> {
    match change {
        Change::Create { login, .. } => vec![(login, None)],
        Change::Rename { uuid, old, new } => vec![(old, Some(*uuid)), (new, None)],
        Change::Delete { uuid, login } => vec![(login, Some(*uuid))],
        Change::Open => Vec::new(),
    }
}

/// Checks a change's precondition against `index` (login -> owner, as the events before it
/// in the batch left it) and records its effect there.
pub(super) fn check_and_track<'a>(
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
pub(super) struct Batch<'a> {
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
pub(super) type PeriodResults = (u64, usize, Vec<(Uuid, [u8; 17])>);

/// The fields of an account to set.
#[derive(Default)]
pub(super) struct AccountWrite {
    /// The record fixed at creation (only for a new account).
    fixed: Option<Vec<u8>>,
    /// The changing part (changed time and login).
    changing: Vec<u8>,
}

impl<'a> Batch<'a> {
    /// Adds `event` at `clock`; returns the result remembered for its request id.
    pub(super) fn add(&mut self, event: &'a Event, clock: u64) -> WriteResult {
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
    pub(super) fn into_commands(
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
pub(super) fn sized(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args, name.len() + bytes);
    cmd.arg(name);
    cmd
}
