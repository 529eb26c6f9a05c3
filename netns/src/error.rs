//! The crate's one error type.

/// Everything that can fail when building or changing a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Namespaces, bridges and firewall rules need root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    #[error(
        "failed to {action}: the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run as root"
    )]
    NotRoot {
        /// What was being attempted.
        action: String,
    },
    /// An external command (`ip`, `iptables`, `tc`) failed.
    #[error("failed to {action}: `{command}` exited with {status}: {stderr}")]
    Command {
        /// What was being attempted.
        action: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call or file operation failed.
    #[error("failed to {action}: {source}")]
    Io {
        /// What was being attempted.
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A request that makes no sense (an unknown host, a loss over 100%).
    #[error("invalid lab request: {0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
