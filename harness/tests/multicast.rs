//! Multicast discovery and election for real: three `idserver` processes and `idclient` in one
//! host of a lab (a network namespace), finding each other by multicast on the host's own lab
//! interface (named with `--mcast-if`, as every multicast use must be). Needs root.

use netns::Lab;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A binary the workspace built beside `idlab`.
fn built(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_idlab")).with_file_name(name)
}

/// Kills the nodes however the test ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &mut self.0 {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

#[test]
fn multicast_discovery_and_election_in_a_lab_host() {
    let mut lab = Lab::create().expect("the multicast test runs as root");
    let host = lab.add_host("h1").unwrap();
    let addr = host.addr().to_string();
    let multicast = [
        "--cluster",
        "mc",
        "--mcast",
        "239.255.51.51:6100",
        "--mcast-if",
        &addr,
    ];
    let dir = tempfile::tempdir().unwrap();
    // With credentials, as users run it: the nodes' datagrams are sealed, and the client's
    // discovery questions (it holds no key) are still answered.
    let creds = idserver::security::mint::CredentialSet::write(
        &dir.path().join("credentials"),
        "mc",
        &[idserver::security::mint::NodeSpec::at(
            "h1",
            host.addr().into(),
        )],
        Duration::from_secs(3600),
    )
    .unwrap();
    let nodes = Nodes(
        (0..3)
            .map(|i| {
                host.command(built("idserver"))
                    .args(["--listen", &addr, "--numport", &(6001 + i).to_string()])
                    .args(multicast)
                    .args(creds.node_args("h1"))
                    .arg("--data-dir")
                    .arg(dir.path().join(format!("n{i}")))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let json = loop {
        let out = host
            .command(built("idclient"))
            .args(multicast)
            .arg("--tls-ca")
            .arg(creds.ca())
            .args(["--json", "--status"])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let members = json["status"]["members"].as_array().map_or(0, Vec::len);
        if json["status"]["coordinator_rank"].is_u64() && members == 3 {
            break json;
        }
        assert!(
            Instant::now() < deadline,
            "no multicast cluster formed: {json}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(nodes);
    assert_eq!(json["status"]["cluster"], "mc");
    assert_eq!(json["status"]["authenticated"], true);
}
