//! Failover under load: clients write while the node they write through (idserver's
//! coordinator, etcd's leader, Redis's primary) has its host crash (SIGKILL to the system's
//! processes there). Measured from the kill: the acknowledgement of the first write sent after
//! it (a write in flight at the kill may still be answered by a member that forwarded it, and
//! says nothing of the outage), and the
//! moment every survivor names the same new leader; then every write acknowledged during the
//! run is read back, and those missing are listed (acknowledged, then lost). The node starts
//! again on its data and the system is whole before the next kill.

use super::{Running, System, Writer};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent writers during a failover.
const WRITERS: u32 = 4;
/// Writing before the kill (steady state).
const BEFORE_KILL: Duration = Duration::from_millis(500);
/// Writing after the survivors agree and a write was acknowledged.
const AFTER_FAILOVER: Duration = Duration::from_millis(300);
/// Longest a failover, or the system's becoming whole again, may take.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the survivors are asked whom they follow.
const POLL: Duration = Duration::from_millis(10);

/// One leader's crash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failover {
    /// The system.
    pub system: System,
    /// Which kill of the run (0-based).
    pub kill: u32,
    /// The node killed (1-based, as the lab names hosts).
    pub killed: String,
    /// From the kill to the acknowledgement of the first write sent after it (ms); None if
    /// none was within the timeout.
    pub first_ack_ms: Option<f64>,
    /// From the kill to every survivor naming the same new leader (ms).
    pub agreed_ms: Option<f64>,
    /// Writes acknowledged during the run.
    pub acked: u64,
    /// Acknowledged writes the system no longer holds.
    pub lost: Vec<String>,
}

/// `kills` failovers of `running`, one after another; `progress` hears a line for each.
pub(super) async fn failovers(
    running: &mut Running,
    system: System,
    kills: u32,
    tag: &str,
    progress: &dyn Fn(&str),
) -> Result<Vec<Failover>> {
    let all: Vec<usize> = (0..super::NODES as usize).collect();
    let mut done = Vec::new();
    for kill in 0..kills {
        let leader = wait_for(FAILOVER_TIMEOUT, || running.leader_among(&all))
            .await
            .ok_or_else(|| Error::Setup(format!("{} named no leader", system.as_str())))?;
        let prefix = format!("{tag}-k{kill}-");
        let load = Load::start(running, &prefix);
        tokio::time::sleep(BEFORE_KILL).await;
        let killed_at = Instant::now();
        running.kill(leader)?;
        let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
        let deadline = killed_at + FAILOVER_TIMEOUT;
        let (mut first_ack, mut agreed) = (None, None);
        while (first_ack.is_none() || agreed.is_none()) && Instant::now() < deadline {
            if first_ack.is_none() {
                first_ack = load.first_ack_after(killed_at);
            }
            if agreed.is_none() && running.leader_among(&survivors).await.is_some() {
                agreed = Some(killed_at.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(AFTER_FAILOVER).await;
        let acked = load.stop().await;
        let lost = running.missing(&prefix, acked.clone()).await?;
        let failover = Failover {
            system,
            kill,
            killed: format!("n{}", leader + 1),
            first_ack_ms: first_ack.map(ms),
            agreed_ms: agreed.map(ms),
            acked: acked.len() as u64,
            lost,
        };
        progress(&format!(
            "failover {} {:<16} kill n{}: first ack {}  agreed {}  {} acked, {} lost",
            kill + 1,
            system.as_str(),
            leader + 1,
            shown(failover.first_ack_ms),
            shown(failover.agreed_ms),
            failover.acked,
            failover.lost.len()
        ));
        done.push(failover);
        running.restart(leader)?;
        if wait_for(FAILOVER_TIMEOUT, || async {
            running.whole().await.then_some(())
        })
        .await
        .is_none()
        {
            return Err(Error::Setup(format!(
                "{} was not whole again within {FAILOVER_TIMEOUT:?} after n{} restarted",
                system.as_str(),
                leader + 1
            )));
        }
    }
    Ok(done)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn shown(ms: Option<f64>) -> String {
    ms.map_or("none".into(), |ms| format!("{ms:.0} ms"))
}

/// Polls `check` until it gives a value or `within` has passed.
async fn wait_for<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writers writing until stopped, each acknowledged write kept with when it was sent and when
/// acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(running: &Running, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..WRITERS)
            .map(|w| {
                let (stop, acked, session) = (stop.clone(), acked.clone(), running.session());
                let prefix = format!("{prefix}{w}-");
                running.runtime().spawn(async move {
                    let mut writer: Option<Writer> = None;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if writer.is_none() {
                            writer = session.clone().open().await.ok();
                        }
                        let Some(w) = writer.as_mut() else {
                            tokio::time::sleep(POLL).await;
                            continue;
                        };
                        let key = format!("{prefix}{n}");
                        n += 1;
                        let sent = Instant::now();
                        match w.write(&key).await {
                            Ok(()) => acked.lock().expect("acked writes lock").push((
                                key,
                                sent,
                                Instant::now(),
                            )),
                            // (Each client retries as its documentation says; a pause here
                            // keeps a refusing system from being flooded.)
                            Err(_) => tokio::time::sleep(POLL).await,
                        }
                    }
                })
            })
            .collect();
        Load { stop, acked, tasks }
    }

    /// When the first write sent after `at` was acknowledged, measured from `at`.
    fn first_ack_after(&self, at: Instant) -> Option<Duration> {
        self.acked
            .lock()
            .expect("acked writes lock")
            .iter()
            .rev()
            .take_while(|(_, _, acked)| *acked > at)
            .filter(|(_, sent, _)| *sent > at)
            .map(|(_, _, acked)| *acked - at)
            .min()
    }

    /// Stops the writers; every write acknowledged.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let acked = self.acked.lock().expect("acked writes lock");
        acked.iter().map(|(key, _, _)| key.clone()).collect()
    }
}
