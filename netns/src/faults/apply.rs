//! Link faults and partitions, on the switch side of each host's link.
//!
//! Link figures are per link and one way: 10 ms on every link is 20 ms from host to host and
//! 40 ms for a round trip. With `tc netem` (when the kernel has it) conditions are netem qdiscs.
//! Without it, loss is an iptables `statistic` drop and latency an iptables `NFQUEUE` rule whose
//! packets the userspace [`crate::delayer`] holds for the delay of both the port they came in by
//! and the port they leave by (a bridged packet passes FORWARD once). Bandwidth is `tbf`.
//! Partitions are iptables rules on the bridge ports (drop, or reject with ICMP / TCP RST);
//! they stop established connections too. All rules live in the chain `IDLAB` of the switch
//! namespace and are replaced in one `iptables-restore` transaction.

use super::state::{Direction, FaultState, LinkConditions, PartitionMode};
use crate::cmd::{exec_in, ip_in, run_with_input};
use crate::delayer::{Delayer, PortDelay};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::lab::Lab;
use std::collections::BTreeMap;

const NFQUEUE_NUM: u16 = 0;

impl Lab {
    /// Sets the conditions of one direction (or both) of `host`'s link.
    pub fn set_link(
        &self,
        host: &str,
        direction: Direction,
        conditions: LinkConditions,
    ) -> Result<()> {
        let index = self.host(host)?.index;
        self.change(|state| state.set_link(index, direction, conditions))
    }

    /// Clears every link's conditions.
    pub fn clear_links(&self) -> Result<()> {
        self.change(|state| {
            state.clear_links();
            Ok(())
        })
    }

    /// Cuts `host` off from every other host, both ways.
    pub fn isolate(&self, host: &str, mode: PartitionMode) -> Result<()> {
        let index = self.host(host)?.index;
        let all: Vec<u32> = self.hosts.iter().map(|h| h.index).collect();
        self.change(|state| {
            state.isolate(index, all, mode);
            Ok(())
        })
    }

    /// Splits the hosts into sides that cannot reach each other (hosts in no side keep
    /// reaching everyone).
    pub fn split(&self, sides: &[Vec<String>], mode: PartitionMode) -> Result<()> {
        let sides: Vec<Vec<u32>> = sides
            .iter()
            .map(|side| {
                side.iter()
                    .map(|name| self.host(name).map(|h| h.index))
                    .collect()
            })
            .collect::<Result<_>>()?;
        self.change(|state| {
            state.split(&sides, mode);
            Ok(())
        })
    }

    /// Cuts one direction only: `from` can no longer reach `to`.
    pub fn cut(&self, from: &str, to: &str, mode: PartitionMode) -> Result<()> {
        self.cut_to(from, &[to], mode)
    }

    /// Cuts one direction from `from` to each of `to`, all at once.
    pub fn cut_to(&self, from: &str, to: &[&str], mode: PartitionMode) -> Result<()> {
        let from = self.host(from)?.index;
        let to: Vec<u32> = to
            .iter()
            .map(|name| self.host(name).map(|h| h.index))
            .collect::<Result<_>>()?;
        self.change(|state| {
            for to in to {
                state.cut(from, to, mode);
            }
            Ok(())
        })
    }

    /// Removes the cuts between `a` and `b`, both ways, leaving every other cut in place.
    pub fn mend(&self, a: &str, b: &str) -> Result<()> {
        let (a, b) = (self.host(a)?.index, self.host(b)?.index);
        self.change(|state| {
            state.mend(a, b);
            Ok(())
        })
    }

    /// Whether a partition cuts `a` and `b` apart, in either direction.
    pub fn is_cut(&self, a: &str, b: &str) -> bool {
        let (Ok(a), Ok(b)) = (self.host(a), self.host(b)) else {
            return false;
        };
        let state = self.faults.lock().expect("fault state lock poisoned");
        state.is_cut(a.index, b.index)
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<()> {
        self.change(|state| {
            state.heal();
            Ok(())
        })
    }

    fn change(&self, edit: impl FnOnce(&mut FaultState) -> Result<()>) -> Result<()> {
        let mut state = self.faults.lock().expect("fault state lock poisoned");
        let mut next = state.clone();
        edit(&mut next)?;
        self.apply(&state, &next)?;
        *state = next;
        Ok(())
    }

    /// Gives `host`'s link the conditions in force again (its link was made anew: a container
    /// restarted in a new namespace).
    pub(crate) fn reapply_link(&self, host: &Host) -> Result<()> {
        let state = self.faults.lock().expect("fault state lock poisoned");
        if !self.netem {
            self.configure_delayer(&state)?;
        }
        self.apply_link(host, state.link(host.index))
    }

    /// Moves the rules from `before` to `state`: the firewall rules in one transaction, and the
    /// queueing disciplines and link state of the hosts whose links changed (each takes a few
    /// processes: touching only those keeps a partition's step short).
    fn apply(&self, before: &FaultState, state: &FaultState) -> Result<()> {
        let sw = self.switch_ns.as_str();
        if !self.netem && before.links != state.links {
            self.configure_delayer(state)?;
        }
        let mut rules = String::from("*filter\n:IDLAB - [0:0]\n-F IDLAB\n");
        for ((from, to), mode) in &state.cuts {
            let ports = format!("-m physdev --physdev-in v{from} --physdev-out v{to}");
            match mode {
                PartitionMode::Drop => rules += &format!("-A IDLAB {ports} -j DROP\n"),
                PartitionMode::Reject => {
                    rules +=
                        &format!("-A IDLAB -p tcp {ports} -j REJECT --reject-with tcp-reset\n");
                    rules += &format!(
                        "-A IDLAB {ports} -j REJECT --reject-with icmp-port-unreachable\n"
                    );
                }
            }
        }
        if !self.netem {
            for (index, [from_host, to_host]) in &state.links {
                for (flag, conditions) in [("--physdev-in", from_host), ("--physdev-out", to_host)]
                {
                    if conditions.loss_pct > 0.0 {
                        let p = conditions.loss_pct / 100.0;
                        rules += &format!(
                            "-A IDLAB -m physdev {flag} v{index} -m statistic --mode random --probability {p:.6} -j DROP\n"
                        );
                    }
                }
            }
            for (index, [from_host, to_host]) in &state.links {
                if from_host.delays() || to_host.delays() {
                    for flag in ["--physdev-in", "--physdev-out"] {
                        rules += &format!("-A IDLAB -m physdev {flag} v{index} -j NFQUEUE --queue-num {NFQUEUE_NUM}\n");
                    }
                }
            }
        }
        rules += "COMMIT\n";
        run_with_input(
            "replace the lab's firewall rules",
            "ip",
            &["netns", "exec", sw, "iptables-restore", "--noflush"],
            Some(&rules),
        )?;
        for host in &self.hosts {
            let now = state.link(host.index);
            if before.link(host.index) != now {
                self.apply_link(host, now)?;
            }
        }
        Ok(())
    }

    /// The qdiscs on both ends of `host`'s link, and its state (up or down).
    fn apply_link(&self, host: &Host, [from_host, to_host]: [LinkConditions; 2]) -> Result<()> {
        let sw = self.switch_ns.as_str();
        self.shape(sw, host.switch_port(), &to_host)?;
        self.shape(&host.ns, host.interface(), &from_host)?;
        let up = if from_host.down || to_host.down {
            "down"
        } else {
            "up"
        };
        ip_in(
            "set the link's state",
            sw,
            &["link", "set", host.switch_port(), up],
        )?;
        Ok(())
    }

    /// The qdisc on `dev` in `ns`: netem (when available) or tbf for a rate, else none.
    fn shape(&self, ns: &str, dev: &str, conditions: &LinkConditions) -> Result<()> {
        let args = qdisc(conditions, self.netem);
        if args.is_empty() {
            // Nothing to shape: remove whatever was there (none is fine).
            let _ = ip_tc(ns, &["qdisc", "del", "dev", dev, "root"]);
            return Ok(());
        }
        let mut full = vec!["qdisc", "replace", "dev", dev, "root"];
        full.extend(args.iter().map(String::as_str));
        ip_tc(ns, &full)
    }

    fn configure_delayer(&self, state: &FaultState) -> Result<()> {
        let mut ports = BTreeMap::new();
        for host in &self.hosts {
            let [from_host, to_host] = state.link(host.index);
            if from_host.delays() || to_host.delays() {
                ports.insert(
                    ifindex(&self.switch_ns, host)?,
                    PortDelay {
                        from_host: (from_host.latency_ms, from_host.jitter_ms),
                        to_host: (to_host.latency_ms, to_host.jitter_ms),
                    },
                );
            }
        }
        let mut delayer = self.delayer.lock().expect("delayer lock poisoned");
        if delayer.is_none() && !ports.is_empty() {
            *delayer = Some(Delayer::start(&self.switch_ns, NFQUEUE_NUM)?);
        }
        if let Some(delayer) = delayer.as_ref() {
            delayer.set(ports);
        }
        Ok(())
    }
}

/// The root qdisc (`tc qdisc replace … root` arguments after `root`) that gives packets
/// `conditions`: netem for delay, loss and rate where the kernel has it (`netem`), else tbf for
/// a rate alone; empty when nothing is to be shaped.
pub fn qdisc(conditions: &LinkConditions, netem: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if netem && (conditions.delays() || conditions.loss_pct > 0.0 || conditions.rate_kbit.is_some())
    {
        args.extend([
            "netem".into(),
            "delay".into(),
            format!("{}ms", conditions.latency_ms),
            format!("{}ms", conditions.jitter_ms),
        ]);
        if conditions.loss_pct > 0.0 {
            args.extend(["loss".into(), format!("{}%", conditions.loss_pct)]);
        }
        if let Some(rate) = conditions.rate_kbit {
            args.extend(["rate".into(), format!("{rate}kbit")]);
        }
    } else if let Some(rate) = conditions.rate_kbit {
        // Burst: 10 ms worth of data, at least 16 KiB (one GSO segment must fit).
        let burst = (u64::from(rate) * 1000 / 8 / 100).max(16 * 1024);
        args.extend([
            "tbf".into(),
            "rate".into(),
            format!("{rate}kbit"),
            "burst".into(),
            burst.to_string(),
            "latency".into(),
            "200ms".into(),
        ]);
    }
    args
}

fn ip_tc(ns: &str, args: &[&str]) -> Result<()> {
    exec_in("set a link's queueing discipline", ns, "tc", args).map(|_| ())
}

/// The interface index of the host's switch port (inside the switch namespace).
fn ifindex(switch_ns: &str, host: &Host) -> Result<u32> {
    let out = ip_in(
        "read a port's index",
        switch_ns,
        &["-o", "link", "show", host.switch_port()],
    )?;
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "cannot read the index of port {} from {out:?}",
                host.switch_port()
            ))
        })
}
