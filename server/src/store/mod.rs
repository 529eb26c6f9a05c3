//! Storage: the node's own Redis, and the `redis-server` child the node may run for it.

mod child;
mod feed;
mod log_entry;
mod redis_store;
mod snapshot;

pub use child::{child_processes, idle_priority, RedisChild};
pub use feed::SnapshotFeed;
pub use redis_store::{Applied, Store, StoredAccount, WriteResult};
pub use snapshot::RdbStream;
