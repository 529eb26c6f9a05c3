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

pub use child::{child_processes, idle_priority, RedisChild};
pub use feed::SnapshotFeed;
pub use records::{Applied, StoredAccount, WriteResult};
pub use redis_store::{redact_url, Store};
pub use snapshot::RdbStream;
