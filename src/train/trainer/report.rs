//! What the loop reports: each logged step's metrics line and collapse warnings, the online
//! kNN monitor after an epoch, and the run's TensorBoard events.

use burn::tensor::Tensor;

use super::Trainer;
use crate::error::Result;
use crate::method::{LossTerm, Method, Progress, Signal};
use crate::recipe::Recipe;
use crate::run::RunDir;
use crate::run::tensorboard::EventWriter;
use crate::train::events::{Event, Observer};
use crate::train::metrics::{self, MetricsLine};
use crate::train::watch;

/// What one step leaves for [`Trainer::observe`].
pub(super) struct Stepped {
    pub(super) loss: f64,
    pub(super) lr: f64,
    pub(super) weight_decay: f64,
    pub(super) progress: Progress,
    pub(super) embeddings: Tensor<2>,
    pub(super) terms: Vec<LossTerm>,
    pub(super) signals: Vec<Signal>,
}

impl Trainer {
    /// Writes the step's metrics line and raises collapse warnings the first time they apply.
    pub(super) fn observe<M: Method>(
        &mut self,
        method: &M,
        epoch: usize,
        stepped: Stepped,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let step = self.position.step;
        let Stepped {
            loss,
            lr,
            weight_decay,
            progress,
            embeddings,
            terms,
            signals,
        } = stepped;
        let terms = terms
            .into_iter()
            .map(|LossTerm { name, value }| (name.to_string(), value.into_scalar::<f32>() as f64))
            .collect();
        let (look, warnings) = watch::look(
            &mut self.first_warnings,
            step,
            embeddings,
            signals,
            M::CENTRED_DIAGNOSTICS,
            self.recipe.method.collapse_hint(),
        );
        let images_per_s = self.clock.window_rate();
        let stats = look.stats;
        let line = MetricsLine {
            step,
            epoch,
            loss,
            lr,
            weight_decay,
            momentum: method.momentum(progress),
            embedding_std: stats.embedding_std,
            healthy_std: stats.healthy_std,
            effective_rank: stats.effective_rank,
            images_per_s,
            corrupt_images: self.corrupt.count(),
            terms,
            readings: look.readings,
        };
        self.log.write(&line)?;
        if let Some(tb) = &mut self.tensorboard {
            tb.scalars(step, &line.scalars())?;
        }
        observer.observe(&Event::Logged(line));
        for warning in warnings {
            observer.observe(&Event::Warning(warning));
        }
        Ok(())
    }

    /// kNN top-1 of the current encoder (BatchNorm in eval mode) into `eval_history.jsonl` —
    /// solo-learn-style online monitoring.
    pub(super) fn evaluate_online<M: Method>(
        &mut self,
        method: &M,
        epoch: usize,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        use crate::eval::{encoder_features, knn_score};
        let Some((fit, held_out)) = &self.online_eval else {
            return Ok(());
        };
        let plain = self.device.clone().inner();
        let encoder = method.encoder();
        let tr = encoder_features(encoder, fit, &self.normalize, &plain);
        let te = encoder_features(encoder, held_out, &self.normalize, &plain);
        let knn_top1 = knn_score(&tr, fit, &te, held_out, &self.recipe.eval, &plain);
        let step = self.position.step;
        metrics::append_eval_history(&self.run.eval_history_path(), epoch + 1, step, knn_top1)?;
        if let Some(tb) = &mut self.tensorboard {
            tb.scalars(step, &[("online_knn_top1".into(), knn_top1)])?;
        }
        observer.observe(&Event::EpochEvaluated {
            epoch: epoch + 1,
            step,
            knn_top1,
            held_out: held_out.len(),
        });
        Ok(())
    }
}

/// Opens the run's event file: a new one with the recipe as text, or on resume the old one cut
/// back to the checkpoint's step.
pub(super) fn open_tensorboard(
    run: &RunDir,
    recipe: &Recipe,
    resumed_from_step: Option<usize>,
) -> Result<EventWriter> {
    let mut tb = EventWriter::open(&run.tensorboard_dir(), resumed_from_step)?;
    match resumed_from_step {
        Some(_) => Ok(tb),
        None => {
            // Indented: a Markdown code block, so the TOML keeps its lines.
            let toml: String = recipe
                .to_toml()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect();
            tb.text(0, "recipe", &toml)?;
            Ok(tb)
        }
    }
}
