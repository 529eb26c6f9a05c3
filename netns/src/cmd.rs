//! Running the system's network tools with errors that say what was being done.

use crate::error::{Error, Result};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `program args…`; `action` says what for (in "failed to …" errors).
pub fn run(action: &str, program: &str, args: &[&str]) -> Result<String> {
    run_with_input(action, program, args, None)
}

/// Runs `program args…` with `input` on standard input.
pub fn run_with_input(
    action: &str,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("{action} (running {program})"), e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("{action} (writing to {program})"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("{action} (waiting for {program})"), e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("Operation not permitted") && !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot {
            action: action.to_string(),
        });
    }
    Err(Error::Command {
        action: action.to_string(),
        command: format!("{program} {}", args.join(" ")),
        status: out.status.to_string(),
        stderr,
    })
}

/// `ip …` inside the namespace `ns`.
pub fn ip_in(action: &str, ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run(action, "ip", &full)
}

/// A program run inside the namespace `ns` (`ip netns exec`).
pub fn exec_in(action: &str, ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run(action, "ip", &full)
}
