//! The harness's error type. A failed assertion is not an error: it is a verdict in the report.

/// What can stop a run from producing a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario file is malformed or names something that does not exist.
    #[error("{file}:{line}:{col}: {message}")]
    Scenario {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// The lab or a node could not be set up (not root, no binary, a namespace failed).
    #[error("{0}")]
    Setup(String),
    /// The lab's network layer failed.
    #[error(transparent)]
    Lab(#[from] netns::Error),
    /// A step could not be carried out (e.g. resume of a node that is not paused).
    #[error("{0}")]
    Step(String),
}

/// Results in the harness.
pub type Result<T> = std::result::Result<T, Error>;
