//! Building labs: hosts reach each other, multicast reaches every host, a lab cleans up after
//! itself, and a killed run's leftovers are found and removed. Needs root.

mod common;

use common::{echo, lab, rtts_ms, udp};
use netns::cleanup::{lab_namespaces, remove_leftovers};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn hosts_reach_each_other_and_their_names_carry_the_run_id() {
    let lab = lab(3);
    let (h1, h2) = (lab.host("h1").unwrap(), lab.host("h2").unwrap());
    assert_eq!(h2.addr(), Ipv4Addr::new(198, 18, 0, 2));
    let server = udp(h2, 7000);
    let echoing = echo(server);
    let client = udp(h1, 0);
    let rtts = rtts_ms(
        &client,
        SocketAddr::from((h2.addr(), 7000)),
        20,
        Duration::from_millis(500),
    );
    assert_eq!(rtts.len(), 20);
    let namespaces = lab_namespaces();
    for host in lab.hosts() {
        assert!(host.ns().starts_with(lab.id()));
        assert!(namespaces.contains(&host.ns().to_string()));
    }
    // A command inside a host sees only the host's interfaces.
    let out = h1
        .command("ip")
        .args(["-o", "addr", "show", "eth0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("198.18.0.1/15"));
    let id = format!("{}-", lab.id());
    drop(lab);
    drop(echoing);
    assert!(
        lab_namespaces().iter().all(|n| !n.starts_with(&id)),
        "dropping the lab removed its namespaces"
    );
}

#[test]
fn multicast_from_one_host_reaches_every_other() {
    let lab = lab(4);
    let group = Ipv4Addr::new(239, 18, 0, 1);
    let receivers: Vec<UdpSocket> = lab.hosts()[1..]
        .iter()
        .map(|host| {
            let addr = host.addr();
            host.run_in(move || {
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                        .unwrap();
                socket.set_reuse_address(true).unwrap();
                socket
                    .bind(&SocketAddr::from((group, 7100)).into())
                    .unwrap();
                socket.join_multicast_v4(&group, &addr).unwrap();
                UdpSocket::from(socket)
            })
            .unwrap()
        })
        .collect();
    let sender_host = &lab.hosts()[0];
    let sender = udp(sender_host, 0);
    socket2::SockRef::from(&sender)
        .set_multicast_if_v4(&sender_host.addr())
        .unwrap();
    sender.send_to(b"hello", (group, 7100)).unwrap();
    for receiver in &receivers {
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = receiver.recv_from(&mut buf).expect("multicast arrives");
        assert_eq!(
            (&buf[..n], from.ip()),
            (&b"hello"[..], sender_host.addr().into())
        );
    }
}

#[test]
fn a_killed_runs_leftovers_are_removed() {
    if std::env::var_os("NETNS_HOLD_A_LAB").is_some() {
        // The child: make a lab with a fault, say so, and wait to be killed.
        let lab = lab(2);
        lab.cut("h1", "h2", netns::PartitionMode::Drop).unwrap();
        println!("READY {}", lab.id());
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_runs_leftovers_are_removed",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("NETNS_HOLD_A_LAB", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let id = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "the child never got ready"
        );
        // libtest prints "test <name> ... " without a newline before the child's own line.
        if let Some((_, id)) = line.trim().split_once("READY ") {
            break id.to_string();
        }
    };
    assert_eq!(
        lab_namespaces()
            .iter()
            .filter(|n| n.starts_with(&id))
            .count(),
        3
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let removed = remove_leftovers();
    assert_eq!(
        removed.iter().filter(|n| n.starts_with(&id)).count(),
        3,
        "{removed:?}"
    );
    assert!(lab_namespaces().iter().all(|n| !n.starts_with(&id)));
}

#[test]
fn the_capability_report_matches_what_labs_use() {
    let report = netns::capability::probe();
    assert!(
        report.root && report.iptables && report.bridge_netfilter,
        "{}",
        report.to_text()
    );
    let lab = lab(1);
    assert_eq!(lab.uses_netem(), report.netem);
    assert!(report.to_text().contains("latency"));
}
