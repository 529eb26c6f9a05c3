//! How a node with credentials serves a new client while thousands of connections are held
//! open against it: the time from a fresh client's connect (TCP, TLS handshake) to its
//! lookup's answer, p50/p99, without an attack and under each of two:
//!
//! 1. `trickle`: HELD connections that send one byte of a TLS ClientHello per second and never
//!    finish it (each is dropped at the handshake timeout, and opened again at once);
//! 2. `idle`: HELD connections that finish the TLS handshake and then send nothing (they hold
//!    client slots until the idle timeout).
//!
//! `cargo bench --bench slowloris [-- --held N] [--probes N]` (defaults 5,000 and 300).

#[path = "../tests/common/cluster.rs"]
mod cluster;

use cluster::Cluster;
use idserver::connection::Connection;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `probes` fresh clients, one after another: connect, handshake, look up; latencies in ms.
async fn probe(cluster: &Cluster, probes: usize) -> Vec<f64> {
    let mut latencies = Vec::new();
    for _ in 0..probes {
        let mut client = cluster.client(&[0]);
        let begun = Instant::now();
        client.lookup("present").await.expect("served");
        latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn report(name: &str, held: usize, latencies: &[f64]) {
    println!(
        "{name}: {held} held, {} new clients: connect+TLS+lookup p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
}

/// Keeps `held` connections trickling a ClientHello until `stop`; counts those open.
fn trickle(addr: String, held: usize, stop: Arc<AtomicBool>, open: Arc<AtomicUsize>) {
    for _ in 0..held {
        let addr = addr.clone();
        let stop = stop.clone();
        let open = open.clone();
        tokio::spawn(async move {
            // The first bytes of a TLS 1.3 ClientHello record, never finished.
            let hello = [
                0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                open.fetch_add(1, Ordering::Relaxed);
                for byte in hello.iter().cycle() {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                open.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let held = option("--held", 5_000);
    let probes = option("--probes", 300);
    let mut cluster = Cluster::new(IDSERVER, 1);
    cluster.start_all();
    cluster.agreed(Duration::from_secs(10)).await;
    cluster
        .client(&[0])
        .create("present", "P", None)
        .await
        .unwrap();
    let addr = cluster.addr(0).to_string();

    report("no attack", 0, &probe(&cluster, probes).await);

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    trickle(addr.clone(), held, stop.clone(), open.clone());
    while open.load(Ordering::Relaxed) < held {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past a handshake timeout, so that drops and reconnections are under way.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let latencies = probe(&cluster, probes).await;
    report("trickle", open.load(Ordering::Relaxed), &latencies);
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut idle = Vec::new();
    let began = Instant::now();
    for _ in 0..held {
        match Connection::connect(&addr, 5_000, 1 << 20, &cluster.transport).await {
            Ok(conn) => idle.push(conn),
            Err(e) => {
                println!("idle: connection {} refused: {e}", idle.len());
                break;
            }
        }
    }
    println!(
        "idle: {} TLS connections opened in {:.1} s",
        idle.len(),
        began.elapsed().as_secs_f64()
    );
    let latencies = probe(&cluster, probes).await;
    report("idle", idle.len(), &latencies);
    let status = cluster.status(0).await.unwrap();
    println!(
        "node: rejected {} connections, {} datagrams, {} requests",
        status.rejected_connections, status.rejected_datagrams, status.rejected_requests
    );
}
