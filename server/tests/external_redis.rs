//! A node on a Redis it did not start (`--redis`), that Redis in a container started through
//! testcontainers from the lab's image (built locally from this host's `redis-server`; no
//! registry), listening on a unix socket in a directory of this host, so no network is needed.
//! The Docker engine is the one the lab uses: `DOCKER_HOST`, the default socket, or a private
//! `dockerd` started for the test and stopped after it (needs root and `docker.io`, which
//! `scripts/install-deps` installs). One test: the engine and testcontainers' client are one per
//! process.

mod common;

use common::cluster::Cluster;
use common::config;
use harness::containers::RedisContainers;
use idserver::client::{Client, ClientConfig};
use idserver::node::server::RunningServer;
use std::time::{Duration, Instant};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");
const SETTLE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_uses_a_redis_container_leaves_it_running_and_full_syncs_into_it() {
    let work = tempfile::tempdir().unwrap();
    let kit = RedisContainers::prepare(
        work.path(),
        &harness::containers::host_redis_server().unwrap(),
    )
    .expect("a Docker engine and the Redis image (needs root and docker.io)");
    let run = format!("idserver-tests-{}", std::process::id());

    // One server on a Redis container: it writes there, and the container outlives it.
    let data = tempfile::tempdir().unwrap();
    let (redis, url) = kit
        .start_on_socket(&run, &format!("{run}-single"), data.path())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = RunningServer::start(config(dir.path(), "ext", Some(url.clone())))
        .await
        .unwrap();
    assert!(
        server.redis_pid().await.is_none(),
        "no own redis with --redis"
    );
    let mut c = Client::new(ClientConfig {
        servers: vec![server.local_addr().to_string()],
        cluster: "ext".into(),
        ..ClientConfig::default()
    });
    let uuid = c.create("henry", "Henry", None).await.unwrap();
    server.shutdown().await.unwrap();
    let store = idserver::store::Store::connect(&url).await.unwrap();
    assert_eq!(
        store.lookup("henry").await.unwrap().unwrap().view.uuid,
        uuid,
        "the container still holds what the node wrote"
    );
    kit.remove(redis).await.unwrap();

    // A late node on a Redis container holding something already: a full sync replaces the
    // database as a whole (into the spare database, then SWAPDB), and the node keeps its id.
    const ACCOUNTS: usize = 25_000;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start(0);
    cluster.start(1);
    let c = cluster.agreed(SETTLE).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32 {
        let mut client = cluster.client(&[c]);
        tasks.spawn(async move {
            for n in (t..ACCOUNTS).step_by(32) {
                client.create(&format!("ext{n}"), "", None).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    let clock = cluster.converged(SETTLE).await;
    let data = tempfile::tempdir().unwrap();
    let (redis, url) = kit
        .start_on_socket(&run, &format!("{run}-late"), data.path())
        .await
        .unwrap();
    let store = idserver::store::Store::connect(&url).await.unwrap();
    let mut conn = common::redis_conn(&url).await;
    common::redis_set(&url, "leftover", "x").await;
    cluster.start_with_args(2, "external", &["--redis".to_string(), url.clone()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.status(2).await.map(|s| s.clock) != Some(clock) {
        assert!(
            Instant::now() < deadline,
            "the node on the Redis container never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.count().await.unwrap(), ACCOUNTS as u64);
    let leftover: Option<String> = redis::cmd("GET")
        .arg("leftover")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(leftover, None, "the database was replaced as a whole");
    let _: () = redis::cmd("SELECT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let spare: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(spare, 0, "the spare database is emptied after the swap");
    let mut client = cluster.client(&[2]);
    client.lookup("ext24999").await.unwrap();
    assert_ne!(
        cluster.status(2).await.unwrap().node_id,
        cluster.status(c).await.unwrap().node_id,
        "the node kept its own id"
    );
    cluster.kill(2);
    kit.remove(redis).await.unwrap();
    assert_eq!(kit.remove_run(&run).unwrap(), 0, "no container left");
}
