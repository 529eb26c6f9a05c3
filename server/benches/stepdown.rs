//! Step-down (`idclient --step-down`) on a real 3-node cluster on loopback, per mode: the time
//! from asking the coordinator to hand over to the first write acknowledged by its successor.
//!
//! `cargo bench --bench stepdown [-- RUNS]` (default 20 per mode). One cluster per mode;
//! each run hands over from whichever node coordinates, then a client that knows every server
//! creates an account (failing over from the old coordinator by itself); the clock stops at
//! its acknowledgement.

#[path = "../tests/common/cluster.rs"]
mod cluster;

use cluster::Cluster;
use idserver::client::{Client, ClientConfig};
use std::time::{Duration, Instant};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    for mode in ["whitepaper", "strict"] {
        let mut cluster = Cluster::new(IDSERVER, 3);
        cluster.extra_args = vec!["--mode".into(), mode.into()];
        cluster.start_all();
        let mut coordinator = cluster.agreed(Duration::from_secs(10)).await;
        let mut writer = cluster.client(&[0, 1, 2]);
        writer.create("warm-up", "W", None).await.unwrap();
        let mut took = Vec::new();
        for run in 0..runs {
            // A few writes in between, as in service.
            for n in 0..10 {
                writer
                    .create(&format!("{mode}-{run}-{n}"), "", None)
                    .await
                    .unwrap();
            }
            let mut operator = Client::new(ClientConfig {
                servers: vec![cluster.addr(coordinator).to_string()],
                cluster: cluster.name.clone(),
                transport: cluster.peer_transport(coordinator),
                ..ClientConfig::default()
            });
            let started = Instant::now();
            let (successor, _) = operator.step_down().await.unwrap();
            writer
                .create(&format!("{mode}-{run}-after"), "", None)
                .await
                .unwrap();
            took.push(started.elapsed().as_secs_f64() * 1000.0);
            coordinator = (0..3)
                .find(|i| cluster.addr(*i).to_string() == successor)
                .unwrap();
            // The next hand-over starts from a settled cluster.
            assert_eq!(cluster.agreed(Duration::from_secs(10)).await, coordinator);
        }
        took.sort_by(f64::total_cmp);
        println!(
            "{mode}: step-down to first acknowledged write on the successor: runs {} \
             p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            took.len(),
            percentile(&took, 0.5),
            percentile(&took, 0.99),
            took.last().unwrap()
        );
    }
}
