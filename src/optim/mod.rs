//! Optimizers (SGD with momentum, LARS, AdamW) and schedules.

pub mod optimizer;
pub mod schedule;

pub use optimizer::{Optimizer, OptimizerConfig, OptimizerKind};
pub use schedule::WarmupCosine;
