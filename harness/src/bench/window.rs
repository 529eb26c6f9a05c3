//! The inconsistency window: from a write's acknowledgement to the moment the last replica
//! holds it. A sampling writer creates keys one after another while other clients load the
//! system; after each acknowledgement a reader per node asks that node's own copy (idserver:
//! a lookup from that node alone, which it serves from its own Redis; etcd: a serializable
//! get from that member, which does not go through the leader; Sentinel: `EXISTS` on that
//! host's Redis) until it holds the key. A node held the key at some moment while the read that
//! found it was in flight: the window is the time from the acknowledgement to the midpoint of
//! that read, for the last node to hold it (within ± half a read's round trip: a few µs on
//! plain links, 20 ms on the delay profile's).

use super::Session;
use etcd_client::GetOptions;
use std::time::{Duration, Instant};

/// Longest a node may take to hold an acknowledged write before the sample counts as timed
/// out.
const GIVE_UP: Duration = Duration::from_secs(2);
/// The most writes a measurement samples.
const MAX_SAMPLES: usize = 2_000;

/// How to read one node's own copy.
#[derive(Clone)]
pub enum Replica {
    /// A client bound to this node alone.
    Idserver(Box<idserver::client::ClientConfig>),
    /// A member's client URL.
    Etcd(String),
    /// A Redis's `host:port`.
    Redis(String),
}

enum Reader {
    Idserver(Box<idserver::client::Client>),
    Etcd(Box<etcd_client::Client>),
    Redis(redis::aio::MultiplexedConnection),
}

impl Replica {
    async fn open(self) -> Result<Reader, String> {
        Ok(match self {
            Replica::Idserver(config) => {
                Reader::Idserver(Box::new(idserver::client::Client::new(*config)))
            }
            Replica::Etcd(endpoint) => {
                let connected = tokio::time::timeout(
                    Duration::from_secs(1),
                    etcd_client::Client::connect([&endpoint], None),
                )
                .await
                .map_err(|_| format!("{endpoint} did not answer"))?;
                Reader::Etcd(Box::new(connected.map_err(|e| e.to_string())?))
            }
            Replica::Redis(addr) => Reader::Redis(super::sentinel::connect(&addr).await?),
        })
    }
}

impl Reader {
    /// Whether this node's copy holds `key`.
    async fn holds(&mut self, key: &str) -> Result<bool, String> {
        match self {
            Reader::Idserver(client) => match client.lookup(key).await {
                Ok(_) => Ok(true),
                Err(e) if e.code() == idserver::ErrorCode::NotFound => Ok(false),
                Err(e) => Err(e.to_string()),
            },
            Reader::Etcd(client) => {
                let options = GetOptions::new().with_serializable().with_keys_only();
                let got = client
                    .get(key, Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(!got.kvs().is_empty())
            }
            Reader::Redis(conn) => {
                let n: u32 = redis::cmd("EXISTS")
                    .arg(key)
                    .query_async(conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(n > 0)
            }
        }
    }

    /// Asks until this node holds `key`: the time from `acked` to the midpoint of the read
    /// that found it (ms, at least 0), None after [`GIVE_UP`].
    async fn until_held(&mut self, key: &str, acked: Instant) -> Option<f64> {
        while acked.elapsed() < GIVE_UP {
            let sent = acked.elapsed().as_secs_f64();
            if let Ok(Ok(true)) = tokio::time::timeout(GIVE_UP, self.holds(key)).await {
                let answered = acked.elapsed().as_secs_f64();
                return Some((sent + answered) / 2.0 * 1000.0);
            }
        }
        None
    }
}

/// What a window measurement found.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    /// Each sampled write's window (ms).
    pub windows_ms: Vec<f64>,
    /// Sampled writes some node did not hold within [`GIVE_UP`].
    pub timed_out: u32,
    /// What went wrong first, if anything did.
    pub first_error: Option<String>,
}

/// Samples writes `<prefix><n>` through `session` until `until`, each followed by the reads of
/// every node in `replicas`.
pub(super) async fn sample(
    session: Session,
    replicas: Vec<Replica>,
    prefix: String,
    until: Instant,
) -> Windows {
    let mut found = Windows::default();
    let mut writer = match session.open().await {
        Ok(writer) => writer,
        Err(e) => {
            found.first_error = Some(e);
            return found;
        }
    };
    let mut readers = Vec::new();
    for replica in replicas {
        match replica.open().await {
            Ok(reader) => readers.push(reader),
            Err(e) => {
                found.first_error = Some(format!("a replica's reader: {e}"));
                return found;
            }
        }
    }
    let mut n = 0;
    while Instant::now() < until && found.windows_ms.len() < MAX_SAMPLES {
        let key = format!("{prefix}{n}");
        n += 1;
        if let Err(e) = writer.write(&key).await {
            found.first_error.get_or_insert(e);
            continue;
        }
        let acked = Instant::now();
        // Every node is asked at once, each reader in a task of its own.
        let asks: Vec<_> = readers
            .drain(..)
            .map(|mut reader| {
                let key = key.clone();
                tokio::spawn(async move {
                    let held = reader.until_held(&key, acked).await;
                    (reader, held)
                })
            })
            .collect();
        let mut last: Option<f64> = Some(0.0);
        for ask in asks {
            match ask.await {
                Ok((reader, held)) => {
                    readers.push(reader);
                    last = last.zip(held).map(|(a, b)| a.max(b));
                }
                Err(e) => {
                    found.first_error = Some(format!("a replica's reader died: {e}"));
                    return found;
                }
            }
        }
        match last {
            Some(ms) => found.windows_ms.push(ms),
            None => found.timed_out += 1,
        }
    }
    found
}
