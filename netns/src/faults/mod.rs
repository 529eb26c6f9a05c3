//! Link faults and partitions: [`state`] holds what is in force, [`apply`] makes it rules on
//! the switch side of each host's link.

pub mod apply;
pub mod state;

pub use state::{Direction, FaultState, LinkConditions, PartitionMode};
