//! Storage behaviour: a Redis of another cluster, state across restarts (a Redis the node
//! did not start, in a container: `external_redis.rs`).

mod common;

use common::{calls_of, config, redis_conn, redis_set, TestServer};
use idserver::client::{Client, ClientConfig};
use idserver::node::server::RunningServer;
use idserver::store::{RedisChild, Store, WriteResult};
use idserver::{Error, ErrorCode};
use uuid::Uuid;

#[tokio::test]
async fn a_redis_of_another_cluster_is_refused() {
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisChild::start(redis_dir.path(), "redis-server", "everysec")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = RunningServer::start(config(dir.path(), "blue", Some(redis.url())))
        .await
        .unwrap();
    let node_id = first.node_id();
    first.shutdown().await.unwrap();

    let err = RunningServer::start(config(dir.path(), "green", Some(redis.url())))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ForeignRedis { expected, found } if expected == "green" && found == "blue"),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::WrongCluster);

    let again = RunningServer::start(config(dir.path(), "blue", Some(redis.url())))
        .await
        .unwrap();
    assert_eq!(again.node_id(), node_id, "the node id is kept in Redis");
    again.shutdown().await.unwrap();
    redis.stop().await.unwrap();
}

#[tokio::test]
async fn data_and_node_id_survive_a_clean_restart() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let uuid = c.create("iris", "Iris", Some("pw")).await.unwrap();
    let node_id = t.server.node_id();
    let redis_pid = t.server.redis_pid().await.unwrap();
    let TestServer {
        server,
        cluster,
        dir,
    } = t;
    server.shutdown().await.unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{redis_pid}")).exists(),
        "own redis stopped"
    );

    let server = RunningServer::start(config(dir.path(), &cluster, None))
        .await
        .unwrap();
    assert_eq!(server.node_id(), node_id);
    let mut c = Client::new(ClientConfig {
        servers: vec![server.local_addr().to_string()],
        cluster,
        ..ClientConfig::default()
    });
    let account = c.lookup("iris").await.unwrap();
    assert_eq!((account.uuid, account.has_password), (uuid, true));
    c.delete("iris", Some("pw")).await.unwrap();
    assert_eq!(
        c.status().await.unwrap().clock,
        2,
        "the clock continued after the restart"
    );
    server.shutdown().await.unwrap();
}

async fn redis_with(dir: &std::path::Path, keys: &[(&str, &str)]) -> RedisChild {
    let redis = RedisChild::start(dir, "redis-server", "everysec")
        .await
        .unwrap();
    for (key, value) in keys {
        redis_set(&redis.url(), key, value).await;
    }
    redis
}

async fn keys_of(redis: &RedisChild) -> Vec<String> {
    // Still (or again) a writable, standalone Redis.
    redis_set(&redis.url(), "written-after", "1").await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis_conn(&redis.url()).await)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_snapshot_is_fed_into_a_running_redis_and_a_cut_one_changes_nothing() {
    use idserver::store::{RdbStream, SnapshotFeed};
    let (source_dir, target_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = redis_with(source_dir.path(), &[("a", "1"), ("b", "2")]).await;
    let target = redis_with(target_dir.path(), &[("old", "x")]).await;
    let mut pieces = Vec::new();
    let mut stream = RdbStream::open(&source.url()).await.unwrap();
    while let Some(piece) = stream.next_piece(64).await.unwrap() {
        pieces.push(piece);
    }
    assert!(pieces.len() > 1, "a small piece size splits the snapshot");

    // Cut short: the target keeps what it had.
    let mut feed = SnapshotFeed::start(&target.url()).await.unwrap();
    feed.piece(&pieces[0]).await.unwrap();
    feed.abandon().await;
    assert_eq!(keys_of(&target).await, ["old", "written-after"]);

    // Whole: the target holds the source's data, and only that.
    let mut feed = SnapshotFeed::start(&target.url()).await.unwrap();
    for piece in &pieces {
        feed.piece(piece).await.unwrap();
    }
    feed.finish().await.unwrap();
    assert_eq!(keys_of(&target).await, ["a", "b", "written-after"]);
}

#[tokio::test]
async fn a_directory_in_the_first_layout_is_moved_and_served() {
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisChild::start(redis_dir.path(), "redis-server", "everysec")
        .await
        .unwrap();
    let url = redis.url();
    let (ada, bob, request) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let period = idserver::time::now_ms() / idserver::limits::REQUEST_ID_TTL_MS;
    let mut result = vec![b'c'];
    result.extend_from_slice(ada.as_bytes());
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg("idlab:by-login")
        .arg(&["ada", &ada.to_string(), "bob", &bob.to_string()])
        .cmd("HSET")
        .arg(format!("idlab:acct:{ada}"))
        .arg(&[
            "login",
            "ada",
            "real_name",
            "Ada",
            "client_addr",
            "127.0.0.1:1",
        ])
        .arg(&[
            "created_ms",
            "1000",
            "changed_ms",
            "2000",
            "password_hash",
            "$argon2id$x",
        ])
        .cmd("HSET")
        .arg(format!("idlab:acct:{bob}"))
        .arg(&[
            "login",
            "bob",
            "real_name",
            "",
            "client_addr",
            "127.0.0.1:2",
        ])
        .arg(&["created_ms", "3000", "changed_ms", "3000"])
        .cmd("SET")
        .arg("idlab:clock")
        .arg(3)
        .cmd("HSET")
        .arg(format!("idlab:requests:{period}"))
        .arg(request.as_bytes())
        .arg(result)
        .query_async(&mut redis_conn(&url).await)
        .await
        .unwrap();

    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.upgrade_layout().await.unwrap(), 2);
    let found = store.lookup("ada").await.unwrap().expect("ada moved");
    assert_eq!(
        (
            found.view.uuid,
            found.view.real_name.as_str(),
            found.view.created_ms
        ),
        (ada, "Ada", 1000)
    );
    assert_eq!(found.view.changed_ms, 2000);
    assert_eq!(found.password_hash.as_deref(), Some("$argon2id$x"));
    let found = store.reverse_lookup(bob).await.unwrap().expect("bob moved");
    assert_eq!(
        (found.view.login.as_str(), found.password_hash),
        ("bob", None)
    );
    assert_eq!(store.count().await.unwrap(), 2);
    let (index, next) = store.logins_page(0, 10).await.unwrap();
    assert_eq!(next, None, "two accounts fit one page");
    assert_eq!(store.accounts_of(&index).await.unwrap().len(), 2);
    assert_eq!(
        store.request_result(request).await.unwrap(),
        Some(WriteResult {
            kind: "create",
            uuid: ada
        })
    );
    assert_eq!(store.clock().await.unwrap(), 3, "the clock stays");
    let old_left: u64 = redis::cmd("EXISTS")
        .arg("idlab:by-login")
        .arg(format!("idlab:acct:{ada}"))
        .arg(format!("idlab:requests:{period}"))
        .query_async(&mut redis_conn(&url).await)
        .await
        .unwrap();
    assert_eq!(old_left, 0, "the first layout's keys are gone");
    assert_eq!(
        store.upgrade_layout().await.unwrap(),
        0,
        "nothing moves twice"
    );
    redis.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_result_hash_gets_its_expiry_once_and_again_in_a_new_database() {
    use idserver::event::{Change, Event};
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisChild::start(redis_dir.path(), "redis-server", "everysec")
        .await
        .unwrap();
    let url = redis.url();
    let store = Store::connect(&url).await.unwrap();
    // Request ids sharing their first 12 bits: their results share one hash.
    let mut n = 0u128;
    let mut batch = |size: usize| -> Vec<Event> {
        (0..size)
            .map(|_| {
                n += 1;
                Event {
                    clock: 0,
                    epoch: 1,
                    origin_rank: 1,
                    request_id: Uuid::from_u128((0xabc << 116) | n),
                    at_ms: idserver::time::now_ms(),
                    change: Change::Create {
                        uuid: Uuid::new_v4(),
                        login: format!("user{n}"),
                        real_name: String::new(),
                        client_addr: "127.0.0.1:1".into(),
                        password_hash: None,
                    },
                }
            })
            .collect()
    };
    let ttl_of_results = || async {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("idlab:requests:*")
            .query_async(&mut redis_conn(&url).await)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "one hash: {keys:?}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut redis_conn(&url).await)
            .await
            .unwrap();
        ttl
    };
    for size in [1, 2, 5, 30] {
        let events = batch(size);
        let applied = store.apply_new(&events, &vec![false; size]).await.unwrap();
        assert!(applied.iter().all(Result::is_ok));
    }
    assert_eq!(
        calls_of(&url, "pexpireat").await,
        1,
        "set with the first write only"
    );
    assert!(ttl_of_results().await > 0);

    // The database replaced under the node (as a full sync does): the hash is made anew and
    // gets its expiry again.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut redis_conn(&url).await)
        .await
        .unwrap();
    store.forget_clock().await;
    let events = batch(3);
    store.apply_new(&events, &[true; 3]).await.unwrap();
    assert_eq!(calls_of(&url, "pexpireat").await, 2);
    assert!(ttl_of_results().await > 0, "the new hash has no expiry");
}

/// The stored epoch is an exact integer at any size. It went through Lua's doubles: an epoch
/// of 10^17 was stored as `1e+17` and u64::MAX as `1.8446744073709552e+19`, which no later
/// start could read ("failed to talk to Redis"), so a single datagram with a huge epoch kept a
/// cluster from ever starting again. A value an older version stored that way still reads.
#[tokio::test]
async fn epochs_are_stored_exactly_at_any_size_and_never_lowered() {
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisChild::start(redis_dir.path(), "redis-server", "everysec")
        .await
        .unwrap();
    let store = Store::connect(&redis.url()).await.unwrap();
    assert_eq!(store.epoch().await.unwrap(), 0);
    for (raise, stored) in [
        (9, 9),
        (10, 10),
        (9, 10),
        (100_000_000_000_000_000, 100_000_000_000_000_000),
        (99_999_999_999_999_999, 100_000_000_000_000_000),
        (100_000_000_000_000_001, 100_000_000_000_000_001),
        (u64::MAX, u64::MAX),
        (7, u64::MAX),
    ] {
        store.raise_epoch(raise).await.unwrap();
        assert_eq!(
            store.epoch().await.unwrap(),
            stored,
            "after raising to {raise}"
        );
    }
    redis_set(&redis.url(), "idlab:epoch", "1e+17").await;
    assert_eq!(store.epoch().await.unwrap(), 100_000_000_000_000_000);
    store.raise_epoch(100_000_000_000_000_002).await.unwrap();
    assert_eq!(store.epoch().await.unwrap(), 100_000_000_000_000_002);
    redis.stop().await.unwrap();
}
