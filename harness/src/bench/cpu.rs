//! CPU time a system spends: user and system time of its processes and their descendants (an
//! idserver node's Redis is its child), read from `/proc`.

use std::collections::HashMap;

/// CPU seconds the processes `roots` and every descendant of theirs have used so far.
pub fn seconds(roots: &[u32]) -> f64 {
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as f64;
    // pid -> (parent, user + system ticks), for every process now.
    let mut table: HashMap<u32, (u32, u64)> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(parsed) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
        {
            table.insert(pid, parsed);
        }
    }
    let mut total = 0u64;
    let mut todo: Vec<u32> = roots.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some((_, ticks)) = table.get(&pid) {
            total += ticks;
        }
        todo.extend(
            table
                .iter()
                .filter(|(_, (parent, _))| *parent == pid)
                .map(|(child, _)| *child),
        );
    }
    total as f64 / ticks_per_s
}

/// (parent pid, utime + stime) from a `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses: the fields after it are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (redis-server ) x)) S 17 4242 17 0 -1 4194560 100 0 0 0 250 31 0 0 \
                    20 0 5 0 1234 100000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some((17, 281)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_busy_process_tree_is_counted_with_its_children() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let me = std::process::id();
        let before = seconds(&[me]);
        // The shell is this process's child: its time counts while it runs.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let during = seconds(&[me]);
        child.wait().unwrap();
        assert!(during > before, "{before} -> {during}");
    }
}
