//! Redis in a container for real: the lab's Docker engine (the host's, or a private `dockerd`
//! in a namespace of its own), the Redis image built locally from the host's `redis-server`
//! (no registry), a container started through testcontainers on no network, reached inside
//! its own network namespace, frozen and thawed, and removed with nothing left; `idlab clean`
//! removes a dead run's containers and keeps a live one's. Needs root
//! and `docker.io` (`scripts/install-deps` installs it).

use harness::containers::{Engine, RUN_LABEL};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

/// PING over TCP to 127.0.0.1:6379 inside the network namespace of process `pid`; the reply
/// line, or the error (a frozen Redis times out).
fn ping_inside(pid: u32) -> Result<String, String> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
        let addr: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(line.trim_end().to_string())
    })
    .join()
    .expect("the ping thread does not panic")
}

#[tokio::test]
async fn a_redis_container_from_the_local_image_answers_freezes_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let engine = Engine::connect_or_start(work.path()).expect("a Docker engine (needs root)");
    let tag = engine
        .build_redis_image(&harness::containers::host_redis_server().unwrap())
        .unwrap();
    assert!(tag.starts_with("idlab-redis:"), "{tag}");
    // The same binary gives the same image: built once.
    assert_eq!(
        engine
            .build_redis_image(&harness::containers::host_redis_server().unwrap())
            .unwrap(),
        tag
    );
    let (repository, version) = tag.split_once(':').unwrap();

    // testcontainers talks to the same engine, and never needs to pull: the image is there.
    std::env::set_var("DOCKER_HOST", engine.host());
    let run = uuid::Uuid::new_v4().to_string();
    let container = GenericImage::new(repository, version)
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_network("none")
        .with_label(RUN_LABEL, &run)
        .with_cmd(["--port", "6379", "--save", "", "--appendonly", "no"])
        .start()
        .await
        .expect("the container starts");
    let labelled = format!("{RUN_LABEL}={run}");
    assert_eq!(engine.containers_labelled(&labelled).unwrap().len(), 1);
    let pid = engine.pid_of(container.id()).unwrap();
    assert_eq!(ping_inside(pid), Ok("+PONG".to_string()));

    // `pause-redis` in container mode: the cgroup freezer; Redis answers nothing, then again.
    container.pause().await.unwrap();
    assert!(ping_inside(pid).is_err(), "a frozen Redis answered");
    container.unpause().await.unwrap();
    assert_eq!(ping_inside(pid), Ok("+PONG".to_string()));

    container.rm().await.unwrap();
    assert!(engine.containers_labelled(&labelled).unwrap().is_empty());

    // `idlab clean` removes the containers of a run whose process is gone (pid 4194304 is
    // above Linux's pid limit), and keeps those of a run that lives (this one).
    let dead_run = "idl-4194304-0";
    let live_run = format!("idl-{}-0", std::process::id());
    for run in [dead_run, live_run.as_str()] {
        engine
            .docker(&["create", "--label", &format!("{RUN_LABEL}={run}"), &tag])
            .unwrap();
    }
    let cleaned = std::process::Command::new(env!("CARGO_BIN_EXE_idlab"))
        .args(["clean", "--docker-work"])
        .arg(work.path())
        .env("DOCKER_HOST", engine.host())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cleaned.stdout);
    assert!(cleaned.status.success(), "{cleaned:?}");
    assert!(text.contains(&format!("(run {dead_run})")), "{text}");
    let dead_label = format!("{RUN_LABEL}={dead_run}");
    assert!(engine.containers_labelled(&dead_label).unwrap().is_empty());
    let live_label = format!("{RUN_LABEL}={live_run}");
    let live = engine.containers_labelled(&live_label).unwrap();
    assert_eq!(live.len(), 1, "a live run's container is kept");
    engine.docker(&["rm", "-f", &live[0]]).unwrap();
    let private = engine.is_private();
    drop(engine);
    if private {
        // The private engine's namespace went with it.
        let namespaces = netns::cmd::run("list namespaces", "ip", &["netns", "list"]).unwrap();
        let ours = format!("idlab-dockerd-{}", std::process::id());
        assert!(!namespaces.contains(&ours), "{namespaces}");
    }
}
