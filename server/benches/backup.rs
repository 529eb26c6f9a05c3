//! Backup and restore of a large directory: `cargo bench --bench backup [-- ACCOUNTS]`
//! (default 1,000,000).
//!
//! Fills a one-node cluster (credentials on, its own Redis) to ACCOUNTS accounts, then times
//! `idclient --backup` (the library call it makes) from it, `idserver --restore` of the file
//! into an empty data directory (the binary, as operators run it: checksum, load, accounts
//! counted one by one, the append-only file written), and a node started on the restored
//! directory answering a lookup. Prints the times, the file's size and the rates.

#[path = "../tests/common/cluster.rs"]
mod cluster;

use cluster::Cluster;
use std::process::Command;
use std::time::{Duration, Instant};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

#[tokio::main]
async fn main() {
    let accounts: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut cluster = Cluster::new(IDSERVER, 1);
    cluster.start_all();
    cluster.agreed(Duration::from_secs(10)).await;
    let filled = Instant::now();
    cluster.fill(0, accounts).await;
    println!(
        "filled {accounts} accounts in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let file = cluster.dir.path().join("bench.backup");
    let started = Instant::now();
    let info = idserver::backup::fetch(
        &cluster.addr(0).to_string(),
        &cluster.name,
        &cluster.peer_transport(0),
        &file,
    )
    .await
    .expect("backup");
    let backup_s = started.elapsed().as_secs_f64();
    assert_eq!(info.accounts, accounts);
    let mib = info.bytes as f64 / (1024.0 * 1024.0);
    println!(
        "backup: {} accounts, {mib:.1} MiB, {backup_s:.2} s ({:.0} MiB/s, {:.0} accounts/s)",
        info.accounts,
        mib / backup_s,
        info.accounts as f64 / backup_s
    );
    let restored_dir = cluster.dir.path().join("restored");
    let started = Instant::now();
    let out = Command::new(IDSERVER)
        .args(["--cluster", &cluster.name, "--restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("idserver --restore runs");
    let restore_s = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{out:?}");
    println!(
        "restore: {restore_s:.2} s ({:.0} accounts/s): {}",
        info.accounts as f64 / restore_s,
        String::from_utf8_lossy(&out.stdout).trim()
    );
    // The node replaced by one on the restored directory: it serves the same accounts.
    cluster.kill(0);
    let started = Instant::now();
    cluster.start_with_data(0, "restored");
    cluster.agreed(Duration::from_secs(60)).await;
    let status = cluster.status(0).await.expect("status");
    assert_eq!(status.accounts, accounts);
    assert_ne!(status.node_id, info.node_id);
    println!(
        "a node on the restored directory serves {} accounts after {:.2} s",
        status.accounts,
        started.elapsed().as_secs_f64()
    );
}
