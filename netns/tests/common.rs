//! Probes used by the lab tests: sockets opened inside hosts, UDP echo, one-way counting.

#![allow(dead_code)]

use netns::{Host, Lab};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A lab of `n` hosts named h1, h2, …
pub fn lab(n: usize) -> Lab {
    let mut lab = Lab::create().expect("create a lab (the lab tests run as root)");
    for i in 1..=n {
        lab.add_host(&format!("h{i}")).unwrap();
    }
    lab
}

/// A UDP socket bound inside `host` on `port` (0: any).
pub fn udp(host: &Host, port: u16) -> UdpSocket {
    let addr = SocketAddr::from((host.addr(), port));
    host.run_in(move || UdpSocket::bind(addr)).unwrap().unwrap()
}

/// Echoes datagrams on `socket` until `stop_after` passes without any.
pub fn echo(socket: UdpSocket) -> std::thread::JoinHandle<()> {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    })
}

/// Round-trip times (ms) of `count` probes from `from` to the echo at `to`; lost ones are left out.
pub fn rtts_ms(from: &UdpSocket, to: SocketAddr, count: usize, timeout: Duration) -> Vec<f64> {
    from.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    for seq in 0..count as u32 {
        let sent = Instant::now();
        from.send_to(&seq.to_be_bytes(), to).unwrap();
        loop {
            match from.recv_from(&mut buf) {
                Ok((4, _)) if buf[..4] == seq.to_be_bytes() => {
                    out.push(sent.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                Ok(_) => continue, // a late answer to an earlier probe
                Err(_) => break,
            }
        }
    }
    out
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Sends `count` numbered datagrams from `from` to `to` (paced), counts how many `to` got.
pub fn one_way_delivered(from: &UdpSocket, to: &UdpSocket, count: u32) -> u32 {
    let target = to.local_addr().unwrap();
    to.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let receiver = to.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        let mut buf = [0u8; 64];
        while let Ok((n, _)) = receiver.recv_from(&mut buf) {
            if n == 4 {
                seen.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
        seen.len() as u32
    });
    for seq in 0..count {
        from.send_to(&seq.to_be_bytes(), target).unwrap();
        if seq % 50 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    counter.join().unwrap()
}
