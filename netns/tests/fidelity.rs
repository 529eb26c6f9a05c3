//! Fidelity of the emulated faults, measured with real packets between hosts. These measure
//! time: nextest runs them one at a time (see .config/nextest.toml) so that the other core's
//! load does not bend the figures. Needs root.

mod common;

use common::{echo, lab, median, one_way_delivered, rtts_ms, udp};
use netns::{Direction, LinkConditions, PartitionMode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP listener in `host` on `port` that reads `bytes` from its first connection, on a thread.
fn tcp_sink(
    host: &netns::Host,
    port: u16,
    bytes: usize,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listen = SocketAddr::from((host.addr(), port));
    let listener = host
        .run_in(move || TcpListener::bind(listen))
        .unwrap()
        .unwrap();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        while total < bytes {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed early");
            total += n;
        }
    });
    (listen, sink)
}

fn latency(ms: u32) -> LinkConditions {
    LinkConditions {
        latency_ms: ms,
        ..LinkConditions::default()
    }
}

#[test]
fn twenty_ms_on_a_link_gives_forty_ms_round_trips_and_zero_gives_under_one() {
    let lab = lab(2);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    let _echo = echo(udp(h2, 7000));
    let client = udp(h1, 0);
    let to = SocketAddr::from((h2.addr(), 7000));
    let mut base = rtts_ms(&client, to, 200, Duration::from_millis(500));
    assert!(
        median(&mut base) < 1.0,
        "no impairment: median {:.3} ms",
        median(&mut base)
    );

    lab.set_link("h1", Direction::Both, latency(20)).unwrap();
    let mut rtts = rtts_ms(&client, to, 200, Duration::from_millis(500));
    assert_eq!(rtts.len(), 200);
    let m = median(&mut rtts);
    // ±10%: the delayer wakes within a fraction of a millisecond; scheduling on 2 cores adds less.
    assert!(
        (36.0..=44.0).contains(&m),
        "median RTT {m:.2} ms for 20 ms each way"
    );
    eprintln!("fidelity: 20 ms one-way on one link -> RTT median {m:.2} ms over 200 probes");

    lab.clear_links().unwrap();
    let mut after = rtts_ms(&client, to, 50, Duration::from_millis(500));
    assert!(median(&mut after) < 1.0, "cleared");
}

#[test]
fn ten_percent_loss_on_one_direction_drops_about_ten_percent_that_way_only() {
    const PROBES: u32 = 4000;
    let lab = lab(2);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    let (a, b) = (udp(h1, 0), udp(h2, 0));
    let lossy = LinkConditions {
        loss_pct: 10.0,
        ..LinkConditions::default()
    };
    lab.set_link("h2", Direction::ToHost, lossy).unwrap();
    let delivered = one_way_delivered(&a, &b, PROBES);
    let loss = 100.0 * f64::from(PROBES - delivered) / f64::from(PROBES);
    // 4000 Bernoulli trials at 10%: one standard deviation is 0.47%; 7-13% is over 6 of them.
    assert!((7.0..=13.0).contains(&loss), "one-way loss {loss:.2}%");
    eprintln!("fidelity: 10% loss toward h2 -> {loss:.2}% one-way over {PROBES} probes");
    let back = one_way_delivered(&b, &a, PROBES);
    assert_eq!(back, PROBES, "the other direction loses nothing");
    lab.clear_links().unwrap();
    assert_eq!(one_way_delivered(&a, &b, 1000), 1000, "0% loses nothing");
}

#[test]
fn latency_holds_under_bulk_tcp_and_throughput_stays_usable() {
    const BYTES: usize = 100 * 1024 * 1024;
    let lab = lab(2);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    lab.set_link("h1", Direction::Both, latency(10)).unwrap();
    let (listen, sink) = tcp_sink(h2, 7200, BYTES);
    let _echo = echo(udp(h2, 7000));
    let probe = udp(h1, 0);
    let started = Instant::now();
    let sender = std::thread::spawn({
        let h1 = h1.clone();
        move || {
            let mut conn = h1
                .run_in(move || TcpStream::connect(listen))
                .unwrap()
                .unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..BYTES / chunk.len() {
                conn.write_all(&chunk).unwrap();
            }
        }
    });
    let mut rtts = rtts_ms(
        &probe,
        SocketAddr::from((h2.addr(), 7000)),
        100,
        Duration::from_secs(1),
    );
    sender.join().unwrap();
    sink.join().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let mbytes_per_s = BYTES as f64 / 1e6 / seconds;
    let m = median(&mut rtts);
    eprintln!("fidelity: 100 MB over 10 ms links: {mbytes_per_s:.1} MB/s; probe RTT median {m:.2} ms during it");
    // 10 ms each way on h1's link: 20 ms round trip, plus queueing behind the bulk flow.
    assert!(m >= 19.0, "latency held under load: {m:.2} ms");
    assert!(
        mbytes_per_s > 5.0,
        "throughput usable: {mbytes_per_s:.1} MB/s"
    );
}

#[test]
fn partitions_stop_the_cut_direction_only_and_heal() {
    let lab = lab(3);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    let (a, b) = (udp(h1, 0), udp(h2, 0));
    lab.cut("h1", "h2", PartitionMode::Drop).unwrap();
    assert_eq!(one_way_delivered(&a, &b, 200), 0, "nothing crosses the cut");
    assert_eq!(
        one_way_delivered(&b, &a, 200),
        200,
        "the other way is untouched"
    );
    lab.heal().unwrap();
    assert_eq!(one_way_delivered(&a, &b, 200), 200, "healed");

    lab.isolate("h2", PartitionMode::Drop).unwrap();
    let c = udp(lab.host("h3").unwrap(), 0);
    assert_eq!(one_way_delivered(&c, &b, 100), 0);
    assert_eq!(one_way_delivered(&a, &c, 100), 100, "others still talk");
    lab.split(&[vec!["h1".into()], vec!["h3".into()]], PartitionMode::Drop)
        .unwrap();
    assert_eq!(one_way_delivered(&a, &c, 100), 0, "sides cut");
    lab.heal().unwrap();
    assert_eq!(one_way_delivered(&c, &b, 100), 100);
}

#[test]
fn a_cut_stops_established_connections_and_reject_refuses_at_once() {
    let lab = lab(2);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    let listen = SocketAddr::from((h2.addr(), 7300));
    let listener = h2
        .run_in(move || TcpListener::bind(listen))
        .unwrap()
        .unwrap();
    let mut client = h1
        .run_in(move || TcpStream::connect(listen))
        .unwrap()
        .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"before").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(server.read(&mut buf).unwrap(), 6);

    lab.cut("h1", "h2", PartitionMode::Drop).unwrap();
    client.write_all(b"during").unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        server.read(&mut buf).is_err(),
        "no data crosses a cut, also on an open connection"
    );
    lab.heal().unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        server.read(&mut buf).unwrap(),
        6,
        "retransmitted after healing"
    );

    lab.cut("h1", "h2", PartitionMode::Reject).unwrap();
    let started = Instant::now();
    let refused = h1
        .run_in(move || TcpStream::connect_timeout(&listen, Duration::from_secs(3)))
        .unwrap();
    assert!(refused.is_err(), "connect across a reject cut fails");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "and fails at once (reset), not by timeout"
    );
}

#[test]
fn a_link_can_go_down_and_come_back() {
    let lab = lab(2);
    let (a, b) = (
        udp(lab.host("h1").unwrap(), 0),
        udp(lab.host("h2").unwrap(), 0),
    );
    lab.set_link(
        "h2",
        Direction::Both,
        LinkConditions {
            down: true,
            ..LinkConditions::default()
        },
    )
    .unwrap();
    assert_eq!(one_way_delivered(&a, &b, 50), 0);
    lab.clear_links().unwrap();
    // The host re-learns its neighbour (ARP) once the carrier is back.
    let deadline = Instant::now() + Duration::from_secs(3);
    while one_way_delivered(&a, &b, 1) == 0 {
        assert!(Instant::now() < deadline, "the link never came back");
    }
    assert_eq!(one_way_delivered(&a, &b, 50), 50);
}

#[test]
fn jitter_spreads_delays_around_the_latency() {
    let lab = lab(2);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    let _echo = echo(udp(h2, 7000));
    let client = udp(h1, 0);
    let jittery = LinkConditions {
        latency_ms: 20,
        jitter_ms: 5,
        ..LinkConditions::default()
    };
    lab.set_link("h1", Direction::Both, jittery).unwrap();
    let mut rtts = rtts_ms(
        &client,
        SocketAddr::from((h2.addr(), 7000)),
        200,
        Duration::from_millis(500),
    );
    let m = median(&mut rtts);
    let (low, high) = (rtts[rtts.len() / 20], rtts[rtts.len() * 19 / 20]);
    eprintln!("fidelity: 20 ± 5 ms each way -> RTT median {m:.2} ms, 5th-95th percentile {low:.2}-{high:.2} ms");
    // Two draws of ±5 ms: RTTs spread over 30-50 ms around 40.
    assert!((36.0..=44.0).contains(&m), "median {m:.2}");
    assert!(
        high - low > 4.0 && low >= 29.0 && high <= 52.0,
        "spread {low:.2}-{high:.2}"
    );
}

#[test]
fn a_bandwidth_cap_limits_bulk_throughput() {
    const BYTES: usize = 20 * 1024 * 1024;
    let lab = lab(2);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    // 80 Mbit/s = 10 MB/s toward h2.
    let capped = LinkConditions {
        rate_kbit: Some(80_000),
        ..LinkConditions::default()
    };
    lab.set_link("h2", Direction::ToHost, capped).unwrap();
    let (listen, sink) = tcp_sink(h2, 7400, BYTES);
    let started = Instant::now();
    let mut conn = h1
        .run_in(move || TcpStream::connect(listen))
        .unwrap()
        .unwrap();
    conn.write_all(&vec![1u8; BYTES]).unwrap();
    sink.join().unwrap();
    let rate = BYTES as f64 / 1e6 / started.elapsed().as_secs_f64();
    eprintln!(
        "fidelity: 80 Mbit/s cap -> {rate:.2} MB/s over {} MB",
        BYTES >> 20
    );
    assert!(
        (8.0..=11.5).contains(&rate),
        "{rate:.2} MB/s for a 10 MB/s cap"
    );
}
