//! Which address a node is reached at, and which `--peers` entry is the node itself. A node
//! listens on 0.0.0.0 by default, so its own entry is recognised by port and local address,
//! not by comparing with the listen address: several nodes on one host differ only by port,
//! and on distinct hosts the entry names an interface address.
//!
//! The decisions are pure functions of the flags and the host's addresses (the simulator runs
//! them for the address shapes deployments have); [`HostAddresses::probe`] reads the host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// What the host says about its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAddresses {
    /// Addresses of the host's interfaces.
    pub local: Vec<IpAddr>,
    /// The source address the kernel would use towards the first listed peer that is not on
    /// this host, if any.
    pub routed: Option<IpAddr>,
}

impl HostAddresses {
    /// Reads the interfaces and asks the kernel for a route (a UDP socket's `connect`, which
    /// sends nothing).
    pub fn probe(peers: &[SocketAddr]) -> HostAddresses {
        let mut local: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
            .map(|addrs| {
                addrs
                    .filter_map(|a| a.address)
                    .filter_map(|a| {
                        a.as_sockaddr_in()
                            .map(|v4| IpAddr::V4(v4.ip()))
                            .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                    })
                    .collect()
            })
            .unwrap_or_default();
        local.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        local.sort();
        local.dedup();
        let routed = peers
            .iter()
            .find(|p| !p.ip().is_loopback() && !local.contains(&p.ip()))
            .and_then(|peer| {
                let socket =
                    UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).ok()?;
                socket.connect(peer).ok()?;
                Some(socket.local_addr().ok()?.ip())
            });
        HostAddresses { local, routed }
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local.contains(&ip)
    }
}

/// The flags that decide a node's address.
#[derive(Debug, Clone, Copy)]
pub struct AddressFlags<'a> {
    /// Where it listens (the port as bound: a flag's port 0 is replaced by the chosen one).
    pub listen: SocketAddr,
    /// `--advertise`.
    pub advertise: Option<IpAddr>,
    /// `--mcast-if`.
    pub mcast_if: Option<Ipv4Addr>,
    /// `--peers`.
    pub peers: &'a [SocketAddr],
}

/// The address peers and clients reach this node at: `--advertise`; else a specific listen
/// address; else this node's own `--peers` entry (its port, a local address); else the
/// multicast interface; else the address the kernel routes from towards the peers; else
/// loopback.
pub fn advertised(flags: AddressFlags<'_>, host: &HostAddresses) -> SocketAddr {
    let port = flags.listen.port();
    let ip = flags
        .advertise
        .or_else(|| (!flags.listen.ip().is_unspecified()).then_some(flags.listen.ip()))
        .or_else(|| {
            flags
                .peers
                .iter()
                .find(|p| p.port() == port && host.is_local(p.ip()))
                .map(SocketAddr::ip)
        })
        .or_else(|| flags.mcast_if.map(IpAddr::V4))
        .or(host.routed)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, port)
}

/// Whether a `--peers` entry is this node: its advertised address, or (listening on every
/// address) its port at any of this host's addresses, where no other process can listen.
pub fn is_own(
    peer: SocketAddr,
    flags: AddressFlags<'_>,
    advertised: SocketAddr,
    host: &HostAddresses,
) -> bool {
    peer == advertised
        || (peer.port() == flags.listen.port()
            && flags.listen.ip().is_unspecified()
            && host.is_local(peer.ip()))
}

/// The other members' addresses: `--peers` without this node's own entries.
pub fn others(
    flags: AddressFlags<'_>,
    advertised: SocketAddr,
    host: &HostAddresses,
) -> Vec<SocketAddr> {
    flags
        .peers
        .iter()
        .copied()
        .filter(|p| !is_own(*p, flags, advertised, host))
        .collect()
}

/// Strict mode's cluster size from `--peers`: the other members listed, and this node.
pub fn cluster_size(flags: AddressFlags<'_>, host: &HostAddresses) -> usize {
    let advertised = advertised(flags, host);
    others(flags, advertised, host).len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn flags<'a>(listen: &str, peers: &'a [SocketAddr]) -> AddressFlags<'a> {
        AddressFlags {
            listen: addr(listen),
            advertise: None,
            mcast_if: None,
            peers,
        }
    }

    fn host(local: &[&str]) -> HostAddresses {
        HostAddresses {
            local: local.iter().map(|ip| ip.parse().unwrap()).collect(),
            routed: None,
        }
    }

    #[test]
    fn nodes_sharing_a_host_at_the_default_listen_address_find_their_own_entry() {
        let peers = [
            addr("127.0.0.1:5151"),
            addr("127.0.0.1:5152"),
            addr("127.0.0.1:5153"),
        ];
        let h = host(&["127.0.0.1", "198.18.0.5"]);
        let f = flags("0.0.0.0:5152", &peers);
        assert_eq!(advertised(f, &h), addr("127.0.0.1:5152"));
        assert_eq!(cluster_size(f, &h), 3);
        assert_eq!(
            others(f, advertised(f, &h), &h),
            vec![addr("127.0.0.1:5151"), addr("127.0.0.1:5153")]
        );
    }

    #[test]
    fn distinct_hosts_at_the_default_listen_address_advertise_their_interface() {
        let peers = [
            addr("198.18.0.1:5151"),
            addr("198.18.0.2:5151"),
            addr("198.18.0.3:5151"),
        ];
        let h = host(&["127.0.0.1", "198.18.0.2"]);
        let f = flags("0.0.0.0:5151", &peers);
        assert_eq!(advertised(f, &h), addr("198.18.0.2:5151"));
        assert_eq!(cluster_size(f, &h), 3);
    }

    #[test]
    fn a_node_missing_from_its_peers_counts_itself_once() {
        let peers = [addr("198.18.0.1:5151"), addr("198.18.0.3:5151")];
        let h = HostAddresses {
            local: vec!["198.18.0.2".parse().unwrap()],
            routed: Some("198.18.0.2".parse().unwrap()),
        };
        let f = flags("0.0.0.0:5151", &peers);
        assert_eq!(advertised(f, &h), addr("198.18.0.2:5151"));
        assert_eq!(cluster_size(f, &h), 3);
    }

    #[test]
    fn a_specific_listen_address_or_advertise_wins() {
        let peers = [addr("127.0.0.1:5151"), addr("198.18.0.9:5151")];
        let h = host(&["127.0.0.1", "198.18.0.9"]);
        let f = flags("198.18.0.9:5151", &peers);
        assert_eq!(advertised(f, &h), addr("198.18.0.9:5151"));
        // Listening on one address only, the loopback entry is someone else's.
        assert_eq!(cluster_size(f, &h), 2);
        let f = AddressFlags {
            advertise: Some("198.18.0.9".parse().unwrap()),
            ..flags("0.0.0.0:5151", &peers)
        };
        assert_eq!(advertised(f, &h), addr("198.18.0.9:5151"));
        assert_eq!(cluster_size(f, &h), 1);
    }
}
