//! Checkers: each takes the run's record ([`CheckInput`]) and returns a [`Finding`]: valid,
//! invalid with the evidence, or unknown. They never touch the lab.

mod acks;
mod common;
#[cfg(test)]
pub(crate) mod fixtures;
mod linearizable;
mod lost;
mod order;
mod sessions;

use common::{by_request, describe, effects};
pub use common::{percentile, run, CheckInput, Finding, Verdict};
pub use linearizable::{check_key, KeyOp, KeyStep};
