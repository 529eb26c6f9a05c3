//! The executor: runs one scenario's steps against a [`LabCluster`], then heals and recovers,
//! reads every node's log and runs the checkers. It reports progress as typed [`RunEvent`]s
//! and returns a [`ScenarioResult`]; it prints nothing and writes no report itself.
//!
//! `run`: the step loop, each action's dispatch, recovery and the checkers; `nodes`: node
//! steps and selectors; `fault_steps`: partitions, links, random faults, fault windows;
//! `clients`: operations, loads, `await` and `assert`; `rogue_steps`: the rogue host's attacks.

mod clients;
mod fault_steps;
mod nodes;
mod result;
mod rogue_steps;
mod run;

pub use result::*;
pub use run::run;
