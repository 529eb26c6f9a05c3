//! What this machine offers the lab, and how each fault kind will be emulated on it
//! (`idlab doctor` prints this).

use serde::Serialize;
use std::sync::OnceLock;

/// The machine's capabilities.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capabilities {
    /// Running as root (needed for namespaces and firewall rules).
    pub root: bool,
    /// The kernel has `sch_netem`.
    pub netem: bool,
    /// `iptables` works (with the bridge's `physdev` match).
    pub iptables: bool,
    /// `nft` works.
    pub nftables: bool,
    /// Bridged IPv4 can pass iptables (`br_netfilter`).
    pub bridge_netfilter: bool,
    /// A Docker engine answers on `/var/run/docker.sock`.
    pub docker_engine: bool,
    /// Each fault kind and how it will be done here.
    pub faults: Vec<(String, String)>,
}

/// Whether the kernel has netem (probed once per process, in a scratch namespace).
pub fn netem_available() -> bool {
    static NETEM: OnceLock<bool> = OnceLock::new();
    *NETEM.get_or_init(|| {
        let ns = format!("{}{}-probe", crate::plan::NAME_PREFIX, std::process::id());
        let run = |args: &[&str]| crate::cmd::run("probe for netem", "ip", args).is_ok();
        if !run(&["netns", "add", &ns]) {
            return false;
        }
        let ok = run(&["-n", &ns, "link", "add", "d0", "type", "dummy"])
            && crate::cmd::exec_in(
                "probe for netem",
                &ns,
                "tc",
                &["qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms"],
            )
            .is_ok();
        crate::cleanup::remove_namespace(&ns);
        ok
    })
}

fn works(program: &str, args: &[&str]) -> bool {
    crate::cmd::run("probe a tool", program, args).is_ok()
}

/// Looks at this machine.
pub fn probe() -> Capabilities {
    let root = nix::unistd::geteuid().is_root();
    let netem = root && netem_available();
    let iptables = root && works("iptables", &["-m", "physdev", "-h"]);
    let nftables = root && works("nft", &["list", "tables"]);
    let bridge_netfilter =
        std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    let docker_engine = std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok();
    let method = |netem_way: &str, fallback: &str| {
        if netem {
            netem_way.to_string()
        } else {
            fallback.to_string()
        }
    };
    let faults = vec![
        (
            "latency, jitter".into(),
            method("tc netem delay", "iptables NFQUEUE + userspace delayer"),
        ),
        (
            "loss".into(),
            method("tc netem loss", "iptables statistic random drop"),
        ),
        ("bandwidth".into(), method("tc netem rate", "tc tbf")),
        ("link down".into(), "ip link set down (switch side)".into()),
        (
            "partition (drop)".into(),
            "iptables DROP on bridge ports (physdev)".into(),
        ),
        (
            "partition (reject)".into(),
            "iptables REJECT on bridge ports (TCP reset, ICMP unreachable)".into(),
        ),
        ("crash, pause".into(), "SIGKILL, SIGSTOP / SIGCONT".into()),
    ];
    Capabilities {
        root,
        netem,
        iptables,
        nftables,
        bridge_netfilter,
        docker_engine,
        faults,
    }
}

impl Capabilities {
    /// The report as text, one fact per line.
    pub fn to_text(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut out = format!(
            "root:             {}\nnetem:            {}\niptables:         {}\nnftables:         {}\nbridge netfilter: {}\ndocker engine:    {}\n",
            yes(self.root), yes(self.netem), yes(self.iptables), yes(self.nftables), yes(self.bridge_netfilter), yes(self.docker_engine)
        );
        for (fault, how) in &self.faults {
            out += &format!("{fault:<20} {how}\n");
        }
        out
    }
}
