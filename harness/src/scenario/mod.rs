//! Scenario files: the TOML format, parsed into checked [`Scenario`] values. Every mistake is
//! reported as `file:line:col: message`; nothing here runs anything.
//!
//! The format is documented field by field in `scenarios/README.md`; the parser keeps to it:
//! each `[[step]]` names its action in `do`, and a field that does not apply to that action is
//! an error rather than silently ignored.

mod parse;
mod raw;
mod types;

pub use parse::{load, parse};
pub use types::*;
