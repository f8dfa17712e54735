//! Tools that answer questions before and about runs: the memory planner.

pub mod plan;
