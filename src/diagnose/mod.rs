//! Collapse diagnostics: per-dimension std, singular-value spectrum, effective rank, verdict.

mod font;
pub mod plot;
pub mod spectrum;
pub mod stats;

pub use stats::{CollapseStats, Verdict, analyze};
