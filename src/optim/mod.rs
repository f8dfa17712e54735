//! Optimizers (SGD with momentum, LARS) and schedules.

pub mod schedule;
pub mod sgd;

pub use schedule::WarmupCosine;
pub use sgd::{Optimizer, OptimizerConfig, OptimizerKind};
