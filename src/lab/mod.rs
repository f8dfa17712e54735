//! Tools that answer questions before and about runs: the memory planner and the method advisor.

pub mod advise;
pub mod experiments;
pub mod plan;
