//! Failover and start-up times of real 3-node clusters on loopback with the default timings.
//!
//! `cargo bench --bench failover [-- RUNS]` (default 30 runs). Each run starts a fresh cluster
//! (own Redis per node), measures spawn -> one agreed coordinator, then kill -9 of the
//! coordinator -> every survivor agrees on a new one (status polled every millisecond).

#[path = "../tests/common/cluster.rs"]
mod cluster;

use cluster::Cluster;
use std::time::{Duration, Instant};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name}: runs {} p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms.last().unwrap()
    );
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let mut startup = Vec::new();
    let mut failover = Vec::new();
    for run in 0..runs {
        let mut cluster = Cluster::new(IDSERVER, 3);
        let spawned = Instant::now();
        cluster.start_all();
        let old = cluster.agreed(Duration::from_secs(10)).await;
        startup.push(spawned.elapsed().as_secs_f64() * 1000.0);
        // Let it run a while, and kill at a random point of the heartbeat cycle.
        tokio::time::sleep(Duration::from_millis(300 + (run as u64 * 7) % 20)).await;
        let killed = Instant::now();
        cluster.kill(old);
        let new = cluster.agreed(Duration::from_secs(10)).await;
        failover.push(killed.elapsed().as_secs_f64() * 1000.0);
        assert_ne!(new, old);
    }
    summary("start-up to agreed coordinator", startup);
    summary("kill -9 of coordinator to agreed successor", failover);
}
