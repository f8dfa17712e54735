//! Tools that answer questions before and about runs: the memory planner, the method advisor and
//! the lab's experiments.

pub mod advise;
pub mod experiments;
mod findings;
pub mod plan;
