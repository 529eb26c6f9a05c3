//! What runs killed outright leave in directories (scratch, data, SSH control directories),
//! found by the pid their names carry: `idlab clean` removes those whose process is gone.

use std::path::{Path, PathBuf};

/// The directories in `root` whose names `pid_of` reads a pid from, and whose process no longer
/// runs.
pub fn dead_runs(root: &Path, pid_of: impl Fn(&str) -> Option<u32>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            pid_of(&entry.file_name().to_string_lossy())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes [`dead_runs`]; each removed one as `<what> <path>`.
pub fn remove_dead(root: &Path, what: &str, pid_of: impl Fn(&str) -> Option<u32>) -> Vec<String> {
    dead_runs(root, pid_of)
        .into_iter()
        .filter(|dir| std::fs::remove_dir_all(dir).is_ok())
        .map(|dir| format!("{what} {}", dir.display()))
        .collect()
}

/// The pid in a lab id at the start of `name` (`idl-<pid>-<n>…`).
pub fn lab_pid(name: &str) -> Option<u32> {
    name.strip_prefix(netns::lab::NAME_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}
