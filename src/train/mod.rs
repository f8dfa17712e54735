//! Training: data → views → method step → optimizer → after-step, with schedules, metrics,
//! collapse monitoring, checkpoints and exact resume. [`Trainer`] runs the loop in named phases
//! and reports what happens as [`Event`]s to an [`Observer`].

mod clock;
pub mod events;
mod faults;
mod halves;
mod interrupt;
pub mod metrics;
mod setup;
pub mod trainer;
pub mod watch;

use std::path::PathBuf;

pub use events::{Event, Observer, Silent, Warning, WarningKind};
pub use halves::loss_and_gradients;
pub use interrupt::{Interrupt, signal_name};
pub use trainer::Trainer;

use crate::device::DeviceChoice;

pub struct TrainOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue the run in `out` from its last checkpoint (a run stopped before its first
    /// checkpoint starts again either way).
    pub resume: bool,
    pub device: DeviceChoice,
    /// Asks the loop to checkpoint and stop after the current step ([`Interrupt::on_signals`]
    /// wires it to Ctrl-C and SIGTERM).
    pub interrupt: Interrupt,
}

impl TrainOptions {
    /// A new run in `out` on the CPU, stopped only by [`Interrupt::request`].
    pub fn new(out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            out: out.into(),
            resume: false,
            device: DeviceChoice::Cpu,
            interrupt: Interrupt::none(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub method: String,
    pub epochs: usize,
    pub steps: usize,
    pub final_loss: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// The first step at which the batch embeddings looked completely collapsed, if any.
    pub collapse_warning_step: Option<usize>,
    /// The first step at which they looked dimensionally collapsed, if any.
    pub dimensional_collapse_warning_step: Option<usize>,
    /// The first step at which a tokenizer used fewer than 10% of its codes on a batch, if any.
    pub codebook_collapse_warning_step: Option<usize>,
    /// The first step at which a self-distillation teacher looked collapsed (uniform or onto one
    /// prototype), if any.
    pub distillation_collapse_warning_step: Option<usize>,
    pub resumed_from_step: Option<usize>,
    /// Fraction of the training time spent making batches (reading, decoding, augmenting).
    pub data_fraction: f64,
    /// Images that could not be decoded and were skipped (`data.on_corrupt = "skip"`).
    pub corrupt_images: usize,
    /// The first few of them, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrupt_examples: Vec<crate::data::Corrupt>,
}
