//! `hosts.toml`: the machines a run drives over SSH. Every mistake is reported as
//! `file:line:col: message`, as in scenario files.
//!
//! ```toml
//! known_hosts = "known_hosts"      # the hosts' SSH keys (relative to this file); required
//!
//! [[host]]
//! name = "db1"                     # shown in reports; node n1 runs on the first host
//! ssh = "10.0.0.11"                # SSH address, `host` or `host:port`
//! user = "root"                    # default root
//! key = "id_ed25519"               # private key (relative to this file); default: ssh's own
//! interface = "eth0"               # the interface the cluster uses (faults act on it)
//! address = "10.0.0.11"            # the node's address on it
//! data_dir = "/var/tmp/idlab"      # where the run's directory goes
//! ```

use crate::error::{Error, Result};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The most hosts a file may name.
pub const HOSTS_MAX: usize = 32;

/// A checked hosts file.
#[derive(Debug, Clone)]
pub struct HostsFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The known-hosts file every host key is checked against.
    pub known_hosts: PathBuf,
    /// The hosts, in order: node n1 runs on the first.
    pub hosts: Vec<HostSpec>,
}

/// One host.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Its name in reports.
    pub name: String,
    /// Where SSH reaches it.
    pub ssh_host: String,
    /// SSH's port.
    pub ssh_port: u16,
    /// The user idlab logs in as.
    pub user: String,
    /// The private key, if not ssh's default.
    pub key: Option<PathBuf>,
    /// The cluster's interface on the host.
    pub interface: String,
    /// The node's address on it.
    pub address: Ipv4Addr,
    /// Where the run's directory goes.
    pub data_dir: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    known_hosts: Option<Spanned<String>>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    ssh: Spanned<String>,
    user: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    interface: Spanned<String>,
    address: Spanned<String>,
    data_dir: Spanned<String>,
}

impl HostsFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<HostsFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Setup(format!("failed to read {}: {e}", path.display())))?;
        Self::parse(path, &text)
    }

    /// Checks `text`; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<HostsFile> {
        let error = |at: usize, message: String| {
            let before = &text[..at.min(text.len())];
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            Error::Scenario {
                file: path.display().to_string(),
                line: before.matches('\n').count() + 1,
                col: before[line_start..].chars().count() + 1,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            error(
                e.span().map_or(0, |s| s.start),
                e.message().trim_end().to_string(),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let relative = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let known_hosts = raw.known_hosts.ok_or_else(|| {
            error(
                0,
                "`known_hosts` is required: the file of the hosts' SSH keys (idlab never \
                 accepts an unknown host key)"
                    .into(),
            )
        })?;
        let known_hosts_path = relative(known_hosts.get_ref());
        if !known_hosts_path.is_file() {
            return Err(error(
                known_hosts.span().start,
                format!("no known-hosts file at {}", known_hosts_path.display()),
            ));
        }
        if raw.host.is_empty() {
            return Err(error(0, "no `[[host]]`: name at least one host".into()));
        }
        if raw.host.len() > HOSTS_MAX {
            return Err(error(
                raw.host[HOSTS_MAX].span().start,
                format!("at most {HOSTS_MAX} hosts"),
            ));
        }
        let mut hosts: Vec<HostSpec> = Vec::new();
        for spanned in raw.host {
            let h = spanned.into_inner();
            let name = h.name.get_ref().clone();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(error(
                    h.name.span().start,
                    format!("host name {name:?}: letters, digits, `-` and `_` only"),
                ));
            }
            if hosts.iter().any(|o| o.name == name) {
                return Err(error(
                    h.name.span().start,
                    format!("a second host named {name:?}"),
                ));
            }
            let (ssh_host, ssh_port) = match h.ssh.get_ref().rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => {
                    let port = port.parse().map_err(|_| {
                        error(h.ssh.span().start, format!("{port:?} is not a port"))
                    })?;
                    (host.to_string(), port)
                }
                _ => (h.ssh.get_ref().clone(), 22),
            };
            if ssh_host.is_empty() || ssh_host.starts_with('-') {
                return Err(error(
                    h.ssh.span().start,
                    format!("{:?} is not an SSH address", h.ssh.get_ref()),
                ));
            }
            let address = h.address.get_ref().parse().map_err(|_| {
                error(
                    h.address.span().start,
                    format!("{:?} is not an IPv4 address", h.address.get_ref()),
                )
            })?;
            let data_dir = h.data_dir.get_ref().clone();
            if !data_dir.starts_with('/') || data_dir.contains('\'') || data_dir == "/" {
                return Err(error(
                    h.data_dir.span().start,
                    format!("data_dir {data_dir:?} must be an absolute path below /"),
                ));
            }
            let interface = h.interface.get_ref().clone();
            if interface.is_empty()
                || interface.len() > 15
                || interface.contains(|c: char| c.is_whitespace() || c == '/' || c == '\'')
            {
                return Err(error(
                    h.interface.span().start,
                    format!("{interface:?} is not an interface name"),
                ));
            }
            let key = match &h.key {
                None => None,
                Some(k) => {
                    let p = relative(k.get_ref());
                    if !p.is_file() {
                        return Err(error(
                            k.span().start,
                            format!("no key file at {}", p.display()),
                        ));
                    }
                    Some(p)
                }
            };
            hosts.push(HostSpec {
                name,
                ssh_host,
                ssh_port,
                user: h.user.map_or("root".into(), |u| u.into_inner()),
                key,
                interface,
                address,
                data_dir,
            });
        }
        Ok(HostsFile {
            path: path.to_path_buf(),
            known_hosts: known_hosts_path,
            hosts,
        })
    }

    /// Writes a hosts file for `hosts` (what `idlab up --ssh` hands out).
    pub fn render(known_hosts: &Path, hosts: &[HostSpec]) -> String {
        let mut text = format!(
            "# Written by `idlab up --ssh`: try `idlab run --hosts THIS-FILE SCENARIOS`.\n\
             known_hosts = {:?}\n",
            known_hosts.display().to_string()
        );
        for h in hosts {
            text += &format!(
                "\n[[host]]\nname = {:?}\nssh = \"{}:{}\"\nuser = {:?}\n",
                h.name, h.ssh_host, h.ssh_port, h.user
            );
            if let Some(key) = &h.key {
                text += &format!("key = {:?}\n", key.display().to_string());
            }
            text += &format!(
                "interface = {:?}\naddress = \"{}\"\ndata_dir = {:?}\n",
                h.interface, h.address, h.data_dir
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostsFile> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        HostsFile::parse(&dir.path().join("hosts.toml"), text)
    }

    const GOOD: &str = "known_hosts = \"known_hosts\"\n\n[[host]]\nname = \"db1\"\nssh = \
                        \"10.0.0.1:2222\"\ninterface = \"eth0\"\naddress = \"10.0.0.1\"\n\
                        data_dir = \"/var/tmp/idlab\"\n";

    #[test]
    fn a_good_file_is_read_with_its_defaults() {
        let file = parse(GOOD).unwrap();
        let h = &file.hosts[0];
        assert_eq!((h.ssh_host.as_str(), h.ssh_port), ("10.0.0.1", 2222));
        assert_eq!(h.user, "root");
        assert_eq!(h.address, Ipv4Addr::new(10, 0, 0, 1));
        assert!(h.key.is_none());
    }

    #[test]
    fn mistakes_are_reported_at_their_line_and_column() {
        let typo = GOOD.replace("interface", "interfcae");
        let e = parse(&typo).unwrap_err().to_string();
        assert!(
            e.contains("hosts.toml:6:1") && e.contains("interfcae"),
            "{e}"
        );
        let bad = GOOD.replace("\"10.0.0.1\"\n", "\"10.0.0.300\"\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("hosts.toml:7:11") && e.contains("not an IPv4 address"),
            "{e}"
        );
        let relative = GOOD.replace("/var/tmp/idlab", "tmp");
        let e = parse(&relative).unwrap_err().to_string();
        assert!(
            e.contains("hosts.toml:8:12") && e.contains("absolute"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_known_hosts_is_refused() {
        let e = parse(&GOOD.replace("known_hosts = \"known_hosts\"", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`known_hosts` is required"), "{e}");
    }

    #[test]
    fn what_up_writes_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        let path = dir.path().join("hosts.toml");
        let file = HostsFile::parse(&path, GOOD).unwrap();
        let text = HostsFile::render(&file.known_hosts, &file.hosts);
        let again = HostsFile::parse(&path, &text).unwrap();
        assert_eq!(again.hosts[0].address, file.hosts[0].address);
        assert_eq!(again.hosts[0].ssh_port, 2222);
    }
}
