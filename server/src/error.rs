//! The crate's one error type, and the stable error codes that travel on the wire and become
//! `idclient` exit codes. Not the place for retry policy (see [`crate::client`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What went wrong, as a client sees it: each code has its own wire name, message and exit code.
///
/// The table in `docs/idclient.md` lists the same facts; a unit test checks that it stays in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `--create` of a login name that is already taken.
    LoginExists,
    /// No account has that login name or UUID.
    NotFound,
    /// The account has a password and the one given does not match.
    WrongPassword,
    /// The account has a password and none was given.
    PasswordRequired,
    /// `--modify` to a new name that another account already has.
    NewNameTaken,
    /// No server answered: every known server was tried.
    Unreachable,
    /// The cluster cannot take this request right now (an election is under way): retry.
    Unavailable,
    /// Empty or over-long login, bad real name, bad UUID, missing argument.
    InvalidInput,
    /// The write was applied but not acknowledged by enough replicas in time.
    AckTimeout,
    /// The peer speaks no protocol version in common with us.
    VersionMismatch,
    /// The server belongs to another cluster than the one asked for.
    WrongCluster,
    /// A frame could not be parsed, or was larger than allowed.
    BadFrame,
    /// The server failed in a way the client cannot fix (storage down, a bug).
    Internal,
    /// A request only cluster members may send (forwarded writes, replication, snapshots)
    /// came over a connection that did not prove membership with a cluster certificate.
    Forbidden,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, in exit-code order (for documentation and tests).
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::LoginExists,
        ErrorCode::NotFound,
        ErrorCode::WrongPassword,
        ErrorCode::PasswordRequired,
        ErrorCode::NewNameTaken,
        ErrorCode::Unreachable,
        ErrorCode::Unavailable,
        ErrorCode::InvalidInput,
        ErrorCode::AckTimeout,
        ErrorCode::VersionMismatch,
        ErrorCode::WrongCluster,
        ErrorCode::BadFrame,
        ErrorCode::Internal,
        ErrorCode::Unknown,
        ErrorCode::Forbidden,
    ];

    /// Whether the code refuses a request because of what the directory holds (a login taken,
    /// an account missing, a password that differs): such an answer is a read of it.
    pub fn is_about_state(self) -> bool {
        matches!(
            self,
            ErrorCode::LoginExists
                | ErrorCode::NotFound
                | ErrorCode::WrongPassword
                | ErrorCode::PasswordRequired
                | ErrorCode::NewNameTaken
        )
    }

    /// `idclient`'s exit status for this error. 0 is success and 2 is a usage error (clap).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::LoginExists => 3,
            ErrorCode::NotFound => 4,
            ErrorCode::WrongPassword => 5,
            ErrorCode::PasswordRequired => 6,
            ErrorCode::NewNameTaken => 7,
            ErrorCode::Unreachable => 8,
            ErrorCode::Unavailable => 9,
            ErrorCode::InvalidInput => 10,
            ErrorCode::AckTimeout => 11,
            ErrorCode::VersionMismatch => 12,
            ErrorCode::WrongCluster => 13,
            ErrorCode::BadFrame => 14,
            ErrorCode::Internal => 15,
            ErrorCode::Unknown => 16,
            ErrorCode::Forbidden => 17,
        }
    }

    /// The code's wire name, as in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LoginExists => "login_exists",
            ErrorCode::NotFound => "not_found",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::PasswordRequired => "password_required",
            ErrorCode::NewNameTaken => "new_name_taken",
            ErrorCode::Unreachable => "unreachable",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::AckTimeout => "ack_timeout",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::WrongCluster => "wrong_cluster",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
            ErrorCode::Forbidden => "forbidden",
        }
    }

    /// What the code means, in a few words (printed by `idclient` before the detail).
    pub fn summary(self) -> &'static str {
        match self {
            ErrorCode::LoginExists => "login already exists",
            ErrorCode::NotFound => "no such login or UUID",
            ErrorCode::WrongPassword => "wrong password",
            ErrorCode::PasswordRequired => "password required",
            ErrorCode::NewNameTaken => "new name taken",
            ErrorCode::Unreachable => "server unreachable",
            ErrorCode::Unavailable => "unavailable right now, retry",
            ErrorCode::InvalidInput => "invalid input",
            ErrorCode::AckTimeout => "not acknowledged by replicas in time, retry",
            ErrorCode::VersionMismatch => "protocol version mismatch",
            ErrorCode::WrongCluster => "wrong cluster",
            ErrorCode::BadFrame => "malformed message",
            ErrorCode::Internal => "server error",
            ErrorCode::Unknown => "unknown error",
            ErrorCode::Forbidden => "only cluster members may send this",
        }
    }

    /// Whether a client should try again (the same request id keeps a retry from writing twice).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::Unreachable | ErrorCode::AckTimeout
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can fail in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request was refused for a reason the client can act on; the message says which.
    #[error("{message}")]
    Refused {
        /// Which refusal.
        code: ErrorCode,
        /// Human-readable detail (names the login, UUID or limit involved).
        message: String,
    },
    /// Redis failed or could not be reached.
    #[error("failed to talk to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, as "failed to …".
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A frame was malformed, truncated or too large.
    #[error(transparent)]
    Frame(#[from] crate::wire::FrameError),
    /// Bad configuration or flags; the message names the flag.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Redis given belongs to another cluster (or another node's identity is broken).
    #[error("refusing to start: Redis belongs to cluster {found:?}, not {expected:?}")]
    ForeignRedis {
        /// Our cluster name.
        expected: String,
        /// The cluster name stored in that Redis.
        found: String,
    },
    /// Our own `redis-server` child could not be started or died.
    #[error("failed to run redis-server: {0}")]
    RedisChild(String),
    /// The node's Redis holds fewer events than the node applied to it: it came back from a
    /// crash without its last writes.
    #[error(
        "this node's Redis holds events up to clock {stored}, fewer than the {applied} the node \
         applied to it (it lost its last writes); retry"
    )]
    StoreBehind {
        /// The clock the Redis holds.
        stored: u64,
        /// The clock the node applied.
        applied: u64,
    },
}

impl Error {
    /// A refusal with the given code and message.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Refused {
            code,
            message: message.into(),
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The code a client sees for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Refused { code, .. } => *code,
            Error::Redis(e)
                if e.is_connection_dropped()
                    || e.is_io_error()
                    || e.kind() == redis::ErrorKind::BusyLoadingError =>
            {
                ErrorCode::Unavailable
            }
            Error::Redis(_) | Error::Io { .. } | Error::RedisChild(_) => ErrorCode::Internal,
            Error::Config(_) => ErrorCode::InvalidInput,
            Error::Frame(_) => ErrorCode::BadFrame,
            Error::ForeignRedis { .. } => ErrorCode::WrongCluster,
            Error::StoreBehind { .. } => ErrorCode::Unavailable,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented_in_the_idclient_reference() {
        let readme = include_str!("../../docs/idclient.md");
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.exit_code()), "{code} reuses an exit code");
            let row = format!(
                "| {} | `{}` | {} |",
                code.exit_code(),
                code.as_str(),
                code.summary()
            );
            assert!(
                readme.contains(&row),
                "docs/idclient.md lacks the row {row:?}"
            );
        }
    }
}
