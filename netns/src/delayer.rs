//! The userspace delayer for kernels without `tc netem`: packets sent to NFQUEUE by the lab's
//! rules are held for the delay of the port they came in by plus the port they leave by, then
//! accepted. It runs on its own thread inside the switch namespace, started and stopped with
//! the lab. Packets between one pair of ports keep their order (jitter never reorders).
//!
//! On a host of its own (the lab over SSH, [`Delayer::start_here`]) it delays the packets of
//! the host's interface instead: those the host sends by the interface's `from_host` delay
//! (OUTPUT), those it receives by its `to_host` delay (INPUT).

use crate::error::{Error, Result};
use nfq::{Queue, Verdict};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Receive buffer of the queue's netlink socket: bulk TCP queues tens of thousands of packets
/// per second, and an overflowing socket drops them.
const RCVBUF_BYTES: libc::c_int = 64 * 1024 * 1024;
/// Packets the kernel may hold for us at once (a 20 ms delay at 100k packets/s is 2,000).
const QUEUE_PACKETS_MAX: u32 = 131_072;
/// Longest wait between looks at the stop flag.
const IDLE_WAIT_MS: u64 = 20;
/// NETLINK_NETFILTER, the netlink family of NFQUEUE.
const NETLINK_NETFILTER: libc::c_int = 12;

/// One port's delays: (latency, jitter) in ms for packets from its host and to its host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortDelay {
    /// Packets entering the switch from the host.
    pub from_host: (u32, u32),
    /// Packets leaving the switch to the host.
    pub to_host: (u32, u32),
}

/// Which interfaces a packet's delays are looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keying {
    /// The bridge ports it entered and leaves the switch by (FORWARD in the switch).
    Bridge,
    /// The interface it leaves or enters this host by (OUTPUT and INPUT).
    Host,
}

/// The running delayer.
#[derive(Debug)]
pub struct Delayer {
    ports: Arc<Mutex<BTreeMap<u32, PortDelay>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Delayer {
    /// Starts the delayer on queue `queue_num` inside namespace `ns`; returns once it listens.
    pub fn start(ns: &str, queue_num: u16) -> Result<Delayer> {
        let path = format!("/run/netns/{ns}");
        let ns_file =
            std::fs::File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
        Self::spawn(Some(ns_file), queue_num, Keying::Bridge)
    }

    /// Starts the delayer on queue `queue_num` in this process's namespace, delaying the
    /// packets of interfaces by index ([`Delayer::set`]): `from_host` for those sent by the
    /// interface, `to_host` for those received.
    pub fn start_here(queue_num: u16) -> Result<Delayer> {
        Self::spawn(None, queue_num, Keying::Host)
    }

    fn spawn(ns_file: Option<std::fs::File>, queue_num: u16, keying: Keying) -> Result<Delayer> {
        let ports = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (thread_ports, thread_stop) = (ports.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("lab-delayer".into())
            .spawn(move || {
                let entered = match &ns_file {
                    Some(ns) => nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| Error::io("enter the switch namespace", e.into())),
                    None => Ok(()),
                };
                let opened = entered.and_then(|_| open_queue(queue_num));
                match opened {
                    Ok((queue, fd)) => {
                        let _ = ready_tx.send(Ok(()));
                        run(queue, fd, keying, &thread_ports, &thread_stop);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::io("start the delayer thread", e))?;
        ready_rx
            .recv()
            .map_err(|_| Error::Invalid("the delayer thread died at start".into()))??;
        Ok(Delayer {
            ports,
            stop,
            thread: Some(thread),
        })
    }

    /// Replaces the per-port delays (by switch port interface index).
    pub fn set(&self, ports: BTreeMap<u32, PortDelay>) {
        *self.ports.lock().expect("delayer lock poisoned") = ports;
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The NFQUEUE-family netlink sockets this process has open.
fn netfilter_sockets() -> BTreeSet<RawFd> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.into_iter()
        .filter(|fd| {
            sockopt(*fd, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
                && sockopt(*fd, libc::SO_PROTOCOL) == Some(NETLINK_NETFILTER)
        })
        .collect()
}

fn sockopt(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

/// Opens and binds the queue; returns it with its socket (found among the fds it opened, since
/// the crate does not expose it) after raising the socket's receive buffer.
fn open_queue(queue_num: u16) -> Result<(Queue, RawFd)> {
    let before = netfilter_sockets();
    let mut queue = Queue::open().map_err(|e| Error::io("open an NFQUEUE socket", e))?;
    let fd = netfilter_sockets()
        .difference(&before)
        .next()
        .copied()
        .ok_or_else(|| Error::Invalid("cannot find the NFQUEUE socket just opened".into()))?;
    // SAFETY: fd is our open netlink socket; the value is a valid int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &RCVBUF_BYTES as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "raise the NFQUEUE socket's buffer",
            std::io::Error::last_os_error(),
        ));
    }
    let fail = |what: &str, e: std::io::Error| Error::io(format!("{what} NFQUEUE {queue_num}"), e);
    queue.bind(queue_num).map_err(|e| fail("bind", e))?;
    // Metadata only: the packet stays in the kernel until its verdict.
    queue
        .set_copy_range(queue_num, 0)
        .map_err(|e| fail("configure", e))?;
    queue
        .set_queue_max_len(queue_num, QUEUE_PACKETS_MAX)
        .map_err(|e| fail("size", e))?;
    queue.set_nonblocking(true);
    Ok((queue, fd))
}

fn run(
    mut queue: Queue,
    fd: RawFd,
    keying: Keying,
    ports: &Mutex<BTreeMap<u32, PortDelay>>,
    stop: &AtomicBool,
) {
    let mut rng = SmallRng::from_entropy();
    // Held packets per (in port, out port), in release order.
    let mut held: BTreeMap<(u32, u32), VecDeque<(Instant, nfq::Message)>> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    let (port_in, port_out) = match keying {
                        Keying::Bridge => (msg.get_physindev(), msg.get_physoutdev()),
                        Keying::Host => (msg.get_indev(), msg.get_outdev()),
                    };
                    let delay = {
                        let ports = ports.lock().expect("delayer lock poisoned");
                        // A switch port's host sends what enters by it; a host's interface
                        // sends what leaves by it.
                        let (sent_by, received_by) = match keying {
                            Keying::Bridge => (port_in, port_out),
                            Keying::Host => (port_out, port_in),
                        };
                        let from = ports.get(&sent_by).map_or((0, 0), |p| p.from_host);
                        let to = ports.get(&received_by).map_or((0, 0), |p| p.to_host);
                        sample(&mut rng, from) + sample(&mut rng, to)
                    };
                    let pair = held.entry((port_in, port_out)).or_default();
                    let mut release = Instant::now() + delay;
                    if let Some((last, _)) = pair.back() {
                        release = release.max(*last);
                    }
                    msg.set_verdict(Verdict::Accept);
                    pair.push_back((release, msg));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the delayer failed to receive");
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for pair in held.values_mut() {
            while pair.front().is_some_and(|(at, _)| *at <= now) {
                let (_, msg) = pair.pop_front().expect("checked");
                if let Err(e) = queue.verdict(msg) {
                    tracing::warn!(error = %e, "the delayer failed to release a packet");
                }
            }
            if let Some((at, _)) = pair.front() {
                next = Some(next.map_or(*at, |n| n.min(*at)));
            }
        }
        let wait = next.map_or(Duration::from_millis(IDLE_WAIT_MS), |at| {
            at.saturating_duration_since(Instant::now())
        });
        wait_readable(fd, wait.min(Duration::from_millis(IDLE_WAIT_MS)));
    }
    // Stopping: let everything still held through.
    for (_, msg) in held.into_values().flatten() {
        let _ = queue.verdict(msg);
    }
}

/// A delay drawn uniformly from latency ± jitter (never negative).
fn sample(rng: &mut SmallRng, (latency_ms, jitter_ms): (u32, u32)) -> Duration {
    let latency_us = i64::from(latency_ms) * 1000;
    let jitter_us = i64::from(jitter_ms) * 1000;
    let offset = if jitter_us > 0 {
        rng.gen_range(-jitter_us..=jitter_us)
    } else {
        0
    };
    Duration::from_micros((latency_us + offset).max(0) as u64)
}

fn wait_readable(fd: RawFd, timeout: Duration) {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let spec = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    unsafe {
        libc::ppoll(&mut pollfd, 1, &spec, std::ptr::null());
    }
}
