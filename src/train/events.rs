//! What a training run reports while it runs. The library prints nothing: an [`Observer`] (the
//! command line's progress bar, a test, an experiment driver) decides what to do with each event.

use std::path::PathBuf;

use super::metrics::MetricsLine;
use crate::method::MethodName;

#[derive(Clone, Debug)]
pub enum Event {
    /// The loop is about to run its first step (of the run, or since resuming at `start_step`).
    Started {
        method: MethodName,
        epochs: usize,
        total_steps: usize,
        start_step: usize,
        resumed: bool,
        /// The directory held a run stopped before its first checkpoint; it starts again.
        restarted: bool,
    },
    /// Epoch `epoch` (0-based) of `epochs` begins.
    EpochStarted { epoch: usize, epochs: usize },
    /// An optimizer step finished; `step` steps are done.
    StepFinished { step: usize, loss: f64 },
    /// A line was written to `metrics.jsonl`.
    Logged(MetricsLine),
    /// A collapse warning, raised once per kind and run.
    Warning(Warning),
    /// The online kNN monitor (`train.eval_every`) scored the frozen encoder after `epoch` epochs.
    EpochEvaluated {
        epoch: usize,
        step: usize,
        knn_top1: f64,
        held_out: usize,
    },
    /// A checkpoint now holds the run as of `step`.
    CheckpointWritten { step: usize, dir: PathBuf },
    /// The last step is done and the final encoder written.
    Finished,
}

/// Something looks wrong with the representation being learned, or with the data.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    pub kind: WarningKind,
    pub step: usize,
    /// One sentence or two: what was seen and what to check.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    CompleteCollapse,
    DimensionalCollapse,
    /// A tokenizer uses few of its codes.
    CodebookCollapse,
    /// A self-distillation teacher is uniform or sits on few prototypes.
    TeacherCollapse,
    /// An image could not be decoded and was skipped (`data.on_corrupt = "skip"`).
    CorruptImage,
}

/// Receives a run's events as they happen.
pub trait Observer {
    fn observe(&mut self, event: &Event);
}

impl<F: FnMut(&Event)> Observer for F {
    fn observe(&mut self, event: &Event) {
        self(event)
    }
}

/// Ignores every event.
pub struct Silent;

impl Observer for Silent {
    fn observe(&mut self, _event: &Event) {}
}
