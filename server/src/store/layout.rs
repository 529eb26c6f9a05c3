//! The upgrade from the first storage layout (one login index, UUID text keys) to the
//! current one, run at start-up and after a full sync from an older coordinator.

use super::keys::*;
use super::redis_store::Store;
use crate::error::Result;
use crate::limits::ACCOUNTS_PER_BATCH;
use std::collections::HashMap;
use uuid::Uuid;

impl Store {
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
}
