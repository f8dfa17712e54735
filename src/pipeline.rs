//! The main job in one call: pretrain, diagnose collapse, evaluate against baselines, write the
//! report. Data is loaded once and the trained method is inspected in memory.

use burn::module::Module;
use serde::Serialize;

use crate::device::device;
use crate::diagnose::CollapseStats;
use crate::error::Result;
use crate::eval::EvalReport;
use crate::inspect::{self, Features};
use crate::method::Method;
use crate::recipe::Recipe;
use crate::run::Run;
use crate::train::{Observer, TrainOptions, TrainSummary, Trainer};

/// Held-out images the post-training diagnosis embeds.
pub const DIAGNOSE_SAMPLES: usize = 2000;

/// What [`pretrain`] found.
#[derive(Clone, Debug, Serialize)]
pub struct PretrainReport {
    pub train: TrainSummary,
    pub diagnose: CollapseStats,
    /// `None` when evaluation was skipped.
    pub eval: Option<EvalReport>,
}

/// Trains the recipe's method into `options.out` (or resumes it), then diagnoses the trained
/// method, evaluates its encoder (when `evaluate`) and writes `report.md`. Training events go to
/// `observer`; evaluation's stages to `progress`.
pub fn pretrain(
    recipe: &Recipe,
    options: &TrainOptions,
    evaluate: bool,
    observer: &mut dyn Observer,
    progress: impl FnMut(&str),
) -> Result<PretrainReport> {
    let splits = recipe.load_data()?;
    crate::with_method!(recipe.method.name(), M => {
        let (trainer, method) = Trainer::set_up::<M>(recipe, &splits, options)?;
        let run: Run = trainer.opened_run();
        let (method, train) = trainer.run(method, observer)?;
        let device = device(options.device)?;
        let method = method.valid();
        let diagnose = inspect::diagnose_method(
            &run,
            &method,
            &splits,
            &device,
            DIAGNOSE_SAMPLES,
            Features::Projector,
        )?;
        let eval = if evaluate {
            Some(inspect::evaluate_encoder(&run, method.encoder(), &splits, &device, progress)?)
        } else {
            None
        };
        crate::report::write(&run, &train, &diagnose, eval.as_ref())?;
        Ok(PretrainReport { train, diagnose, eval })
    })
}
