//! How the directory is laid out in Redis: key names, the hashes accounts, logins and request
//! results are spread over, and the encoding of their fields (see [`super::redis_store`] for
//! the layout as a whole).

use super::records::{StoredAccount, WriteResult};
use crate::account::AccountView;
use crate::error::{Error, ErrorCode, Result};
use crate::limits::REQUEST_ID_TTL_MS;
use std::collections::BTreeMap;
use uuid::Uuid;

pub(super) const CLOCK: &str = "idlab:clock";
pub(super) const COUNT: &str = "idlab:count";
/// Prefix of the account hashes (see the module's documentation).
pub(super) const ACCOUNTS: &str = "idlab:acct:";
/// Prefix of the login index's hashes.
pub(super) const LOGINS: &str = "idlab:login:";
/// Prefix of the request-result hashes.
pub(super) const REQUESTS: &str = "idlab:requests:";
/// How many periods' hashes a request id is looked up in (see [`request_keys_around`]).
pub(super) const PERIODS_AROUND: usize = 3;
/// The one login index hash of the first storage layout (read only to upgrade it).
pub(super) const OLD_BY_LOGIN: &str = "idlab:by-login";
pub(super) const EPOCH: &str = "idlab:epoch";
pub(super) const EVENTS: &str = "idlab:events";

/// The hash holding the account `uuid`: by its first two bytes, which are random (version 4
/// UUIDs), so 65,536 hashes share the accounts evenly.
pub(super) fn account_key(uuid: &Uuid) -> String {
    let bytes = uuid.as_bytes();
    format!("{ACCOUNTS}{:02x}{:02x}", bytes[0], bytes[1])
}

/// The field of an account's changing part: its UUID bytes and `l`.
pub(super) fn changing_field(uuid: &Uuid) -> [u8; 17] {
    let mut field = [b'l'; 17];
    field[..16].copy_from_slice(uuid.as_bytes());
    field
}

/// The login-index hash holding `login`: by the low 16 bits of the 64-bit FNV-1a hash of its
/// UTF-8 bytes (a fixed function: every node and every version finds the same hash).
pub(super) fn login_key(login: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in login.as_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    login_shard_key((hash & 0xffff) as u32)
}

/// How many hashes the login index is spread over.
pub const LOGIN_SHARDS: u32 = 1 << 16;

/// The name of login index hash number `n` (of [`LOGIN_SHARDS`]).
pub(super) fn login_shard_key(n: u32) -> String {
    format!("{LOGINS}{n:04x}")
}

/// The hash of request results made in the period-th REQUEST_ID_TTL_MS of Unix time (by the
/// event's time, so that every node keeps the same hashes), one of 4,096 by the request id's
/// first 12 bits.
pub(super) fn request_key(period: u64, request_id: &Uuid) -> String {
    format!("{REQUESTS}{period}:{:03x}", request_slot(request_id))
}

/// Which of a period's REQUEST_SLOTS hashes keeps the result of `request_id`: its first 12 bits.
pub(super) fn request_slot(request_id: &Uuid) -> usize {
    let bytes = request_id.as_bytes();
    (usize::from(bytes[0]) << 4) | usize::from(bytes[1] >> 4)
}

/// How many request-result hashes a period has.
pub(super) const REQUEST_SLOTS: usize = 4096;

/// How long before a request-result hash expires this process stops trusting its mark (the
/// expiry is Redis's to apply, by its own clock): a write after that sets the expiry again.
pub(super) const EXPIRY_MARK_MARGIN_MS: u64 = 60_000;

/// The request-result hashes this process has given their expiry, one bit per hash of each
/// period, so that a hash gets its `PEXPIREAT` with its first write rather than every one (a
/// command per write in every node's Redis). A missing mark only costs a command; a wrong one
/// would leave a hash without expiry, so marks are set only after the write ran, dropped
/// with the database (see [`Store::forget_clock`]) and not trusted near the expiry, past
/// which a late write would make the hash anew.
#[derive(Default)]
pub(super) struct ExpiryMarks(BTreeMap<u64, Box<[u64; REQUEST_SLOTS / 64]>>);

impl ExpiryMarks {
    /// Whether the hash `slot` of `period` was given its expiry and will keep it past `now`.
    pub(super) fn has(&self, period: u64, slot: usize, now: u64) -> bool {
        now + EXPIRY_MARK_MARGIN_MS < request_expiry_ms(period)
            && self
                .0
                .get(&period)
                .is_some_and(|bits| bits[slot / 64] & (1 << (slot % 64)) != 0)
    }

    /// Marks the hashes `given` (period, slot), and forgets periods already expired.
    pub(super) fn mark(&mut self, given: &[(u64, usize)], now: u64) {
        self.0.retain(|period, _| now < request_expiry_ms(*period));
        for &(period, slot) in given {
            let bits = self
                .0
                .entry(period)
                .or_insert_with(|| Box::new([0; REQUEST_SLOTS / 64]));
            bits[slot / 64] |= 1 << (slot % 64);
        }
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// When the request-result hashes of `period` expire: REQUEST_ID_TTL_MS after its last
/// moment, so that every result is kept at least that long.
pub(super) fn request_expiry_ms(period: u64) -> u64 {
    (period + 2) * REQUEST_ID_TTL_MS
}

/// The hashes a result of `request_id` still kept at `now_ms` can be in (one period more
/// ahead, for a coordinator whose clock ran ahead of this node's).
pub(super) fn request_keys_around(now_ms: u64, request_id: &Uuid) -> [String; PERIODS_AROUND] {
    let period = now_ms / REQUEST_ID_TTL_MS;
    [period.saturating_sub(1), period, period + 1].map(|p| request_key(p, request_id))
}

/// The record fixed at an account's creation: CBOR of (created ms, client address, real
/// name, password hash).
pub(super) fn encode_fixed(
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
pub(super) fn encode_changing(changed_ms: u64, login: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + login.len());
    out.extend_from_slice(&changed_ms.to_le_bytes());
    out.extend_from_slice(login.as_bytes());
    out
}

/// An account from its two stored fields (both must be there).
pub(super) fn account_from(
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
pub(super) fn encode_result(result: WriteResult) -> [u8; 17] {
    let mut raw = [0u8; 17];
    raw[0] = result.kind.as_bytes()[0];
    raw[1..].copy_from_slice(result.uuid.as_bytes());
    raw
}

pub(super) fn parse_result(raw: &[u8]) -> Result<WriteResult> {
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

pub(super) fn corrupt(detail: String) -> Error {
    Error::refused(
        ErrorCode::Internal,
        format!("stored data is inconsistent: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn an_expiry_mark_holds_until_shortly_before_the_expiry_and_is_then_forgotten() {
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
    pub(super) fn request_keys_name_the_slot_in_three_hex_digits() {
        let id = Uuid::from_u128(0xabcd_u128 << 112);
        assert_eq!(request_slot(&id), 0xabc);
        assert_eq!(request_key(5, &id), "idlab:requests:5:abc");
    }
}
