//! Optimizers (SGD with momentum, LARS, AdamW), their recipe section, parameter groups and
//! schedules.

pub mod config;
pub mod groups;
pub mod optimizer;
pub mod schedule;

pub use config::{OptimizerConfig, OptimizerKind};
pub use groups::ConstantLr;
pub use optimizer::Optimizer;
pub use schedule::WarmupCosine;
