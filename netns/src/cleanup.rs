//! Removing what labs leave behind: a lab removes its own namespaces when dropped; runs that
//! were killed (SIGKILL) leave namespaces whose owner process is gone, found here by the pid in
//! their name. Removing a namespace removes its links and firewall rules with it.

use crate::plan::NAME_PREFIX;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Kills every process in namespace `ns`, then deletes it.
pub fn remove_namespace(ns: &str) {
    if let Ok(out) = crate::cmd::run("list processes", "ip", &["netns", "pids", ns]) {
        for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Err(e) = crate::cmd::run("delete a namespace", "ip", &["netns", "delete", ns]) {
        tracing::warn!(ns, error = %e, "failed to delete a lab namespace");
    }
}

/// Lab namespaces on this machine (`idl-…`).
pub fn lab_namespaces() -> Vec<String> {
    crate::cmd::run("list namespaces", "ip", &["netns", "list"])
        .map(|out| {
            out.lines()
                .filter_map(|line| line.split_whitespace().next())
                .filter(|name| name.starts_with(NAME_PREFIX))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The pid of the process that made the namespace `ns`.
fn owner(ns: &str) -> Option<i32> {
    ns.strip_prefix(NAME_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Removes every lab namespace whose owner process is gone; returns their names.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in lab_namespaces() {
        if owner(&ns).is_some_and(|pid| !alive(pid)) {
            remove_namespace(&ns);
            removed.push(ns);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_pid_is_read_from_the_name() {
        assert_eq!(owner("idl-4242-0-sw"), Some(4242));
        assert_eq!(owner("idl-17-3-h12"), Some(17));
        assert_eq!(owner("other"), None);
        assert!(alive(std::process::id() as i32));
    }
}
