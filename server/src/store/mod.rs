//! Storage: the node's own Redis, and the `redis-server` child the node may run for it.
//!
//! - `redis_store`: the [`Store`] (connection, clock and epoch, applying events, reads);
//!   `keys`: key names and field encodings; `batch`: deciding and building a batch of new
//!   events; `layout`: upgrading the first storage layout; `log_entry`: the packed event log;
//!   `records`: what the store hands back.
//! - `child`: the `redis-server` a node runs; `snapshot`: reading a snapshot out of Redis
//!   ([`RdbStream`]); `feed`: feeding one into Redis as it arrives ([`SnapshotFeed`]).

mod batch;
mod child;
mod feed;
mod keys;
mod layout;
mod log_entry;
mod records;
mod redis_store;
mod snapshot;

pub use child::{child_processes, idle_priority, tuning_args, RedisChild};
pub use log_entry::{decode as decode_log_entry, encode as encode_log_entry};

/// Reads `data` as the store reads its records (for [`crate::fuzz`]): the first byte picks an
/// account record (fixed and changing parts, split at the second byte's value) or a request
/// result. Errors are the point; a panic is a bug.
pub fn decode_records(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let _ = keys::parse_result(rest);
        return;
    }
    let at = usize::from(rest.first().copied().unwrap_or(0)).min(rest.len());
    let (fixed, changing) = rest.split_at(at);
    let _ = keys::account_from(uuid::Uuid::nil(), Some(fixed), Some(changing));
}
pub use feed::SnapshotFeed;
pub use records::{Applied, StoredAccount, WriteResult};
pub use redis_store::{redact_url, Store};
pub use snapshot::RdbStream;
