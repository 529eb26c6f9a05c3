//! A lab: a switch namespace with a bridge, and hosts joined to it. Every name carries the
//! run's id (`idl-<pid>-<n>`), so a killed run's leftovers can be found ([`crate::cleanup`]).
//! Dropping the lab removes everything it made, also when a test panics.

use crate::cmd::{exec_in, ip_in, run};
use crate::delayer::Delayer;
use crate::error::{Error, Result};
use crate::faults::FaultState;
use crate::host::Host;
pub use crate::plan::{HOSTS_MAX, NAME_PREFIX, PREFIX_LEN, SWITCH_ADDR};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static LABS_MADE: AtomicU32 = AtomicU32::new(0);

/// A lab network.
#[derive(Debug)]
pub struct Lab {
    pub(crate) id: String,
    pub(crate) switch_ns: String,
    pub(crate) hosts: Vec<Host>,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) delayer: Mutex<Option<Delayer>>,
    pub(crate) netem: bool,
    /// The index of the control link ([`Lab::add_control_link`]), if made.
    pub(crate) control: Option<u32>,
    /// The first three octets of every address, and the prefix length.
    pub(crate) subnet: ([u8; 3], u8),
}

impl Lab {
    /// Makes the switch namespace and its bridge. Needs root.
    pub fn create() -> Result<Lab> {
        let [a, b, c, _] = SWITCH_ADDR.octets();
        Self::create_in(([a, b, c], PREFIX_LEN))
    }

    /// A lab meant to be linked to this machine ([`Lab::add_control_link`]): its network is a
    /// /24 of 198.19.0.0/16 that no interface of this machine uses yet, so that its routes do
    /// not meet another such lab's.
    pub fn create_reachable() -> Result<Lab> {
        let used = run(
            "list this machine's addresses",
            "ip",
            &["-4", "-o", "addr", "show"],
        )?;
        let first = std::process::id() % 254;
        let third = (0..254)
            .map(|k| ((first + k) % 254 + 1) as u8)
            .find(|k| !used.contains(&format!(" 198.19.{k}.")))
            .ok_or_else(|| Error::Invalid("every /24 of 198.19.0.0/16 is in use".into()))?;
        Self::create_in(([198, 19, third], crate::plan::REACHABLE_PREFIX_LEN))
    }

    fn create_in(subnet: ([u8; 3], u8)) -> Result<Lab> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::NotRoot {
                action: "create a lab".into(),
            });
        }
        let id = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            LABS_MADE.fetch_add(1, Ordering::Relaxed)
        );
        let switch_ns = format!("{id}-sw");
        let lab = Lab {
            netem: crate::capability::netem_available(),
            id,
            switch_ns,
            hosts: Vec::new(),
            faults: Mutex::new(FaultState::default()),
            delayer: Mutex::new(None),
            control: None,
            subnet,
        };
        run(
            "create the switch namespace",
            "ip",
            &["netns", "add", &lab.switch_ns],
        )?;
        let sw = lab.switch_ns.as_str();
        ip_in(
            "bring up the switch's loopback",
            sw,
            &["link", "set", "lo", "up"],
        )?;
        // No snooping: multicast is flooded to every port, as on a plain switch.
        ip_in(
            "create the bridge",
            sw,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        ip_in("bring up the bridge", sw, &["link", "set", "br0", "up"])?;
        // The switch's own address lets it route the resets and ICMP errors of `reject` cuts.
        let switch_cidr = format!("{}/{}", lab.address(254), subnet.1);
        ip_in(
            "address the switch",
            sw,
            &["addr", "add", &switch_cidr, "dev", "br0"],
        )?;
        // Bridged IPv4 passes iptables' FORWARD chain, where loss, delay and partitions act.
        exec_in(
            "enable bridge netfilter",
            sw,
            "sysctl",
            &["-qw", "net.bridge.bridge-nf-call-iptables=1"],
        )?;
        exec_in("create the lab's chain", sw, "iptables", &["-N", "IDLAB"])?;
        exec_in(
            "hook the lab's chain",
            sw,
            "iptables",
            &["-A", "FORWARD", "-j", "IDLAB"],
        )?;
        Ok(lab)
    }

    /// Adds a host: a namespace, a veth to the bridge, the next address, loopback up and a
    /// multicast route.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        let host = self.next_host(name)?;
        run(
            "create the host's namespace",
            "ip",
            &["netns", "add", &host.ns],
        )?;
        self.wire(&host)?;
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Adds a host whose namespace is the network namespace of process `pid` (a container's,
    /// made by its engine with no network): named under `/run/netns` like any host's, given a
    /// link to the bridge and the next address. Faults reach it like any host. Dropping the
    /// lab removes the name and the link; the namespace lives on as long as the process.
    pub fn attach_host(&mut self, name: &str, pid: u32) -> Result<Host> {
        let host = self.next_host(name)?;
        self.attach(&host, pid)?;
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Moves attached host `name` into the network namespace of process `pid` (its container
    /// restarted with a namespace of its own): same name, address and switch port, so the
    /// faults set on its link still hold.
    pub fn reattach_host(&mut self, name: &str, pid: u32) -> Result<Host> {
        let host = self.host(name)?.clone();
        // The old namespace may outlive its process for a moment: its end of the link goes
        // now, so the switch port's name is free again.
        let _ = ip_in(
            "remove the old link",
            &self.switch_ns,
            &["link", "del", &host.port],
        );
        crate::cleanup::remove_namespace(&host.ns);
        self.attach(&host, pid)?;
        // Both ends of the link are new: the conditions in force go on them again.
        self.reapply_link(&host)?;
        Ok(host)
    }

    fn attach(&self, host: &Host, pid: u32) -> Result<()> {
        run(
            "name the process's namespace",
            "ip",
            &["netns", "attach", &host.ns, &pid.to_string()],
        )?;
        self.wire(host)
    }

    /// Links this process's own network namespace (the machine's, where `idlab up --ssh`
    /// runs) to the lab's switch: an interface named after the lab with the next address, so
    /// the machine reaches every host. It goes with the lab: a veth pair dies with the switch
    /// namespace that holds its other end. Returns the interface and the address.
    pub fn add_control_link(&mut self) -> Result<(String, Ipv4Addr)> {
        if self.control.is_some() {
            return Err(Error::Invalid("the lab has a control link already".into()));
        }
        let host = self.next_host("control")?;
        let name = format!("{}c", self.id);
        if name.len() > 15 {
            return Err(Error::Invalid(format!(
                "interface name {name:?} is longer than 15 characters"
            )));
        }
        run(
            "create the control link",
            "ip",
            &[
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &host.port,
                "netns",
                &self.switch_ns,
            ],
        )?;
        self.control = Some(host.index);
        ip_in(
            "attach the control link to the bridge",
            &self.switch_ns,
            &["link", "set", &host.port, "master", "br0", "up"],
        )?;
        let cidr = format!("{}/{}", host.addr, self.subnet.1);
        run(
            "address the control link",
            "ip",
            &["addr", "add", &cidr, "dev", &name],
        )?;
        run(
            "bring up the control link",
            "ip",
            &["link", "set", &name, "up"],
        )?;
        Ok((name, host.addr))
    }

    /// The next host's names and address.
    fn next_host(&self, name: &str) -> Result<Host> {
        if self.hosts.iter().any(|h| h.name == name) {
            return Err(Error::Invalid(format!(
                "the lab already has a host named {name:?}"
            )));
        }
        let index = self.hosts.len() as u32 + 1 + u32::from(self.control.is_some());
        if index > HOSTS_MAX {
            return Err(Error::Invalid(format!(
                "a lab holds at most {HOSTS_MAX} hosts"
            )));
        }
        Ok(Host {
            name: name.to_string(),
            index,
            ns: format!("{}-h{index}", self.id),
            addr: self.address(index as u8),
            port: format!("v{index}"),
        })
    }

    /// A veth from the bridge into the host's namespace, its address, links up, a multicast
    /// route.
    fn wire(&self, host: &Host) -> Result<()> {
        let (sw, ns) = (self.switch_ns.as_str(), host.ns.as_str());
        // The host's MAC follows from its address (as Docker's do), so a host moved into a
        // new namespace (a container started again) is the same machine to its neighbours'
        // ARP caches: old connections get a reset at once, new ones go through.
        let [_, _, c, d] = host.addr.octets();
        let mac = format!("02:00:c6:12:{c:02x}:{d:02x}");
        ip_in(
            "create the host's link",
            sw,
            &[
                "link", "add", &host.port, "type", "veth", "peer", "name", "eth0", "address", &mac,
                "netns", ns,
            ],
        )?;
        ip_in(
            "attach the link to the bridge",
            sw,
            &["link", "set", &host.port, "master", "br0", "up"],
        )?;
        let cidr = format!("{}/{}", host.addr, self.subnet.1);
        ip_in(
            "address the host",
            ns,
            &["addr", "add", &cidr, "dev", "eth0"],
        )?;
        ip_in(
            "bring up the host's link",
            ns,
            &["link", "set", "eth0", "up"],
        )?;
        ip_in(
            "bring up the host's loopback",
            ns,
            &["link", "set", "lo", "up"],
        )?;
        ip_in(
            "route multicast to the lab",
            ns,
            &["route", "add", "224.0.0.0/4", "dev", "eth0"],
        )?;
        Ok(())
    }

    /// The lab network's address ending in `last`.
    fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet.0;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The run's id, which every name of this lab starts with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The switch namespace.
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// The hosts, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| Error::Invalid(format!("the lab has no host named {name:?}")))
    }

    /// Whether link faults use `tc netem` (else iptables and the userspace delayer).
    pub fn uses_netem(&self) -> bool {
        self.netem
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(mut delayer) = self.delayer.lock() {
            delayer.take();
        }
        let mut namespaces: Vec<String> = self.hosts.iter().map(|h| h.ns.clone()).collect();
        namespaces.push(self.switch_ns.clone());
        for ns in namespaces {
            crate::cleanup::remove_namespace(&ns);
        }
    }
}
