//! `idkeys`: makes a cluster's credentials: its CA, a certificate per node, the cluster key.

use clap::Parser;
use idserver::security::mint::{CredentialSet, NodeSpec};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Makes the credentials `idserver` and `idclient` need, in one directory:
///
///   ca.pem          the cluster CA (every node's and client's --tls-ca)
///   ca-key.pem      its key: keep it off the nodes, it signs new members
///   cluster.key     the cluster key (every node's --cluster-key-file)
///   NAME.pem        a node's certificate (--tls-cert), naming its addresses
///   NAME-key.pem    its key (--tls-key)
///
/// A CA and cluster key already in the directory are kept: run it again to add a node.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Directory to write to (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The cluster's name (`idserver --cluster`).
    #[arg(long, default_value = idserver::config::DEFAULT_CLUSTER)]
    cluster: String,
    /// A node: NAME=ADDR[,ADDR|DNS-NAME...], the addresses and names peers and clients reach
    /// it at. Repeat for each node.
    #[arg(long = "node", value_name = "NAME=ADDRS", value_parser = parse_node)]
    nodes: Vec<NodeSpec>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 825)]
    days: u64,
}

fn parse_node(text: &str) -> Result<NodeSpec, String> {
    let (name, addrs) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=ADDR[,ADDR...]"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "{name:?}: a node name is letters, digits, '-', '_' or '.'"
        ));
    }
    let mut node = NodeSpec {
        name: name.to_string(),
        ips: Vec::new(),
        dns_names: Vec::new(),
    };
    for addr in addrs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match addr.parse::<IpAddr>() {
            Ok(ip) => node.ips.push(ip),
            Err(_) => node.dns_names.push(addr.to_string()),
        }
    }
    if node.ips.is_empty() && node.dns_names.is_empty() {
        return Err(format!("{text:?}: no address"));
    }
    Ok(node)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let valid_for = Duration::from_secs(args.days * 24 * 3600);
    match CredentialSet::write(&args.dir, &args.cluster, &args.nodes, valid_for) {
        Ok(set) => {
            println!("CA:          {}", set.ca().display());
            println!("cluster key: {}", set.cluster_key().display());
            for node in &args.nodes {
                println!("{}:", node.name);
                for pair in set.node_args(&node.name).chunks(2) {
                    println!("  {} {}", pair[0], pair[1]);
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("idkeys: {err}");
            ExitCode::from(1)
        }
    }
}
