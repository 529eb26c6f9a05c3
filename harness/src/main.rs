//! `idlab`: the lab's command line. For now it reports what this machine offers the lab
//! (`doctor`) and removes what killed runs left behind (`clean`); running scenario files comes
//! with the scenario runner.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status when the machine cannot host a lab (not root, no iptables or bridge netfilter).
const EXIT_SETUP: u8 = 2;

/// Fault lab for idserver clusters in Linux network namespaces.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report what this machine offers the lab (root, netem, iptables, nftables, bridge
    /// netfilter, a Docker engine) and how each fault kind will be emulated. Exit status 2 if a
    /// lab cannot run here.
    Doctor {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove the namespaces (and every process, link and rule in them) left by lab runs whose
    /// process is gone, e.g. killed with SIGKILL.
    Clean,
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Doctor { json } => {
            let report = netns::capability::probe();
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("the report serialises")
                );
            } else {
                print!("{}", report.to_text());
            }
            if report.root && report.iptables && report.bridge_netfilter {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_SETUP)
            }
        }
        Command::Clean => {
            let removed = netns::cleanup::remove_leftovers();
            for ns in &removed {
                println!("removed {ns}");
            }
            println!("{} leftover namespace(s) removed", removed.len());
            ExitCode::SUCCESS
        }
    }
}
