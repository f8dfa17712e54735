//! The training loop in named phases: [`Trainer::set_up`] (data, method, run directory, resume),
//! then per batch [`Trainer::step`] (views → loss → optimizer → after-step) and
//! [`Trainer::observe`] (metrics and collapse monitoring), per epoch the online kNN monitor and
//! [`Trainer::checkpoint`]. Everything it does is reported to an [`Observer`].

mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::tensor::Device;

use super::clock::Clock;
use super::events::{Event, Observer};
use super::faults::{self, CorruptImages};
use super::interrupt::Interrupt;
use super::metrics::MetricsLog;
use super::setup::{
    PreparedRun, TrainingData, has_checkpoint, lock_existing, open_logs, prepare_run, tensor_views,
    training_data,
};
use super::watch::FirstWarnings;
use super::{TrainOptions, TrainSummary};
use crate::data::loader::{Batch, Loader, Normalize};
use crate::data::{ImageSet, Splits};
use crate::device::train_device;
use crate::error::{Error, Result};
use crate::method::{Method, Progress};
use crate::optim::schedule::cosine_between;
use crate::optim::{Optimizer, WarmupCosine};
use crate::recipe::Recipe;
use crate::run::checkpoint::{self, Position};
use crate::run::tensorboard::EventWriter;
use crate::run::{Run, RunDir, RunInfo, RunLock, Runs, save_module, write_json};
use report::{Stepped, open_tensorboard};

/// A run being trained: everything the loop needs besides the method itself, which
/// [`Trainer::run`] moves through the phases.
pub struct Trainer {
    recipe: Recipe,
    run: RunDir,
    /// Held until the trainer is dropped: one writer per run directory.
    _lock: RunLock,
    info: RunInfo,
    device: Device,
    loader: Arc<Loader>,
    normalize: Normalize,
    /// Labelled (fit, held-out) images for the online kNN monitor (`train.eval_every`).
    online_eval: Option<(ImageSet, ImageSet)>,
    optimizer: Optimizer,
    schedule: WarmupCosine,
    peak_lr: f64,
    total_steps: usize,
    position: Position,
    resumed_from_step: Option<usize>,
    /// The directory held a run stopped before its first checkpoint.
    restarted: bool,
    interrupt: Interrupt,
    last_checkpoint: Instant,
    log: MetricsLog,
    /// `<run>/tb/` event files (`train.tensorboard`).
    tensorboard: Option<EventWriter>,
    first_warnings: FirstWarnings,
    /// Unreadable images found while loading (reported when the run starts) and while training.
    corrupt: CorruptImages,
    clock: Clock,
}

impl Trainer {
    /// Builds the loader and the method, creates (or reopens, with `options.resume`) the run
    /// directory and restores the checkpoint. A method that cannot start leaves nothing behind.
    pub fn set_up<M: Method>(
        recipe: &Recipe,
        splits: &Splits,
        options: &TrainOptions,
    ) -> Result<(Self, M)> {
        let lock = lock_existing(options)?;
        let TrainingData {
            loader,
            normalize,
            shape,
            images,
        } = training_data(recipe, splits)?;
        let online_eval = (recipe.train.eval_every > 0)
            .then(|| crate::eval::labelled_splits(splits, &recipe.eval, shape.side))
            .transpose()?;
        let device = train_device(options.device)?;
        device.seed(recipe.train.seed);
        // Built before the run directory exists, so a method that cannot start (BEiT without its
        // tokenizer) leaves nothing behind.
        let mut method = recipe.init_method::<M>(shape, &device, &Runs)?;
        // Pretrained weights start a run; a checkpoint continues one.
        let continuing = options.resume && has_checkpoint(options);
        if !recipe.train.init.is_empty() && !continuing {
            let path = std::path::Path::new(&recipe.train.init);
            crate::weights::init_encoders(&mut method, &recipe.model, path, shape, &device)?;
        }
        let PreparedRun {
            run,
            lock,
            resume_from,
            restarted,
        } = prepare_run(recipe, options, lock)?;
        let info = RunInfo {
            method: recipe.method.name().to_string(),
            channels: shape.channels,
            image_side: shape.side,
            mean: normalize.mean.clone(),
            std: normalize.std.clone(),
            data: splits.description.clone(),
            train_images: images,
            encoder_dim: method.encoder().out_dim(),
        };
        write_json(&run.info_path(), &info)?;

        let mut optimizer = Optimizer::new(recipe.optim.clone());
        let mut position = Position {
            epoch: 0,
            batch: 0,
            step: 0,
        };
        let mut resumed_from_step = None;
        if let Some(dir) = resume_from {
            let batches = loader.batches_per_epoch();
            let (loaded, pos) = checkpoint::load(&dir, method, &mut optimizer, &device, batches)?;
            method = loaded;
            position = pos;
            resumed_from_step = Some(pos.step);
        }
        let log = open_logs(&run, resumed_from_step, online_eval.is_some())?;
        let tensorboard = recipe
            .train
            .tensorboard
            .then(|| open_tensorboard(&run, recipe, resumed_from_step))
            .transpose()?;

        let steps_per_epoch = loader.batches_per_epoch();
        let total_steps = recipe.train.epochs * steps_per_epoch;
        let peak_lr = recipe.optim.base_lr * recipe.train.batch_size as f64 / 256.0;
        let schedule = WarmupCosine {
            base_lr: peak_lr,
            warmup_steps: (recipe.optim.warmup_epochs * steps_per_epoch as f64).round() as usize,
            total_steps,
            final_fraction: recipe.optim.final_lr_fraction,
        };
        let trainer = Trainer {
            recipe: recipe.clone(),
            run,
            _lock: lock,
            info,
            device,
            loader,
            normalize,
            online_eval,
            optimizer,
            schedule,
            peak_lr,
            total_steps,
            position,
            resumed_from_step,
            restarted,
            interrupt: options.interrupt.clone(),
            last_checkpoint: Instant::now(),
            log,
            tensorboard,
            first_warnings: FirstWarnings::default(),
            corrupt: CorruptImages::new(splits.corrupt.clone()),
            clock: Clock::start(),
        };
        Ok((trainer, method))
    }

    /// The run as [`Trainer::set_up`] opened it: directory, resolved recipe, data facts.
    pub fn opened_run(&self) -> Run {
        Run {
            dir: self.run.clone(),
            recipe: self.recipe.clone(),
            info: self.info.clone(),
        }
    }

    /// Trains to the recipe's last epoch and writes the final encoder; returns the trained
    /// method (on the training device) and the run's summary.
    pub fn run<M: Method>(
        mut self,
        mut method: M,
        observer: &mut dyn Observer,
    ) -> Result<(M, TrainSummary)> {
        let epochs = self.recipe.train.epochs;
        observer.observe(&Event::Started {
            method: self.recipe.method.name(),
            epochs,
            total_steps: self.total_steps,
            start_step: self.position.step,
            resumed: self.resumed_from_step.is_some(),
            restarted: self.restarted,
        });
        let _armed = self.interrupt.arm();
        let _polling = crate::device::WorkersPolling::start();
        self.corrupt.record_at_load(self.position.step, observer);
        self.clock = Clock::start();
        for epoch in self.position.epoch..epochs {
            method = self.epoch(method, epoch, observer)?;
        }
        save_module(method.encoder().clone(), &self.run.encoder_path())?;
        observer.observe(&Event::Finished);
        let seconds = self.clock.seconds();
        let first = self.first_warnings;
        let summary = TrainSummary {
            run_dir: self.run.root.clone(),
            method: self.recipe.method.name().to_string(),
            epochs,
            steps: self.position.step,
            final_loss: self.clock.final_loss,
            seconds,
            images_per_s: self.clock.trained_images as f64 / seconds,
            collapse_warning_step: first.complete_collapse,
            dimensional_collapse_warning_step: first.dimensional_collapse,
            codebook_collapse_warning_step: first.codebook_collapse,
            distillation_collapse_warning_step: first.teacher_collapse,
            resumed_from_step: self.resumed_from_step,
            data_fraction: self.clock.data / seconds,
            corrupt_images: self.corrupt.count(),
            corrupt_examples: self.corrupt.named.clone(),
        };
        write_json(&self.run.train_path(), &summary)?;
        Ok((method, summary))
    }

    fn epoch<M: Method>(
        &mut self,
        mut method: M,
        epoch: usize,
        observer: &mut dyn Observer,
    ) -> Result<M> {
        let epochs = self.recipe.train.epochs;
        observer.observe(&Event::EpochStarted { epoch, epochs });
        let start_batch = if epoch == self.position.epoch {
            self.position.batch
        } else {
            0
        };
        let order = self.loader.order(epoch);
        for index in start_batch..self.loader.batches_per_epoch() {
            self.stop_if_asked(&method, observer)?;
            // Each batch is made between steps on the same threads, not ahead on a thread of its
            // own: two cores shared by augmentation and the step's kernels lose more to waiting
            // on each other than the overlap gains (README, *Results*, the MAE step).
            let making = Instant::now();
            let batch = self.loader.batch(&order, epoch, index);
            self.clock.data += making.elapsed().as_secs_f64();
            // A slow batch must not delay the stop by a step: the batch is made again on resume.
            self.stop_if_asked(&method, observer)?;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(corrupt) => {
                    self.checkpoint(&method, observer)?;
                    return Err(faults::stopped_by(corrupt, self.position.step));
                }
            };
            let found = std::mem::take(&mut batch.corrupt);
            self.corrupt.record(found, self.position.step, observer);
            let stepped;
            (method, stepped) = self.step(method, epoch, batch)?;
            let step = self.position.step;
            observer.observe(&Event::StepFinished {
                step,
                loss: stepped.loss,
            });
            if step.is_multiple_of(self.recipe.train.log_every) || step == 1 {
                self.observe(&method, epoch, stepped, observer)?;
            }
            let every = self.recipe.train.checkpoint_every_steps;
            let minutes = self.recipe.train.checkpoint_every_minutes;
            let timed = minutes > 0.0
                && self.last_checkpoint.elapsed() >= Duration::from_secs_f64(minutes * 60.0);
            if (every > 0 && step.is_multiple_of(every)) || timed {
                self.checkpoint(&method, observer)?;
            }
        }
        self.position = Position {
            epoch: epoch + 1,
            batch: 0,
            step: self.position.step,
        };
        if self.online_eval.is_some() && (epoch + 1).is_multiple_of(self.recipe.train.eval_every) {
            self.evaluate_online(&method, epoch, observer)?;
        }
        if (epoch + 1).is_multiple_of(self.recipe.train.checkpoint_every) || epoch + 1 == epochs {
            self.checkpoint(&method, observer)?;
        }
        Ok(method)
    }

    /// One optimizer step on `batch`: the method's loss, its gradients, the update, then the
    /// method's own after-step work (EMA teacher, queue).
    fn step<M: Method>(&mut self, method: M, epoch: usize, batch: Batch) -> Result<(M, Stepped)> {
        let progress = Progress::at(self.position.step, self.total_steps);
        let lr = self.schedule.lr(self.position.step);
        if let Some(end) = self.recipe.optim.weight_decay_end() {
            self.optimizer.set_weight_decay(cosine_between(
                self.recipe.optim.weight_decay,
                end,
                self.position.step,
                self.total_steps,
            ));
        }
        let (batch_index, batch_size) = (batch.index, batch.size);
        let views = tensor_views(batch, &self.device);
        let (out, grads) = super::loss_and_gradients(&method, &views, progress);
        let loss = out.loss.clone().into_scalar::<f32>() as f64;
        if !loss.is_finite() {
            return Err(Error::Diverged(format!(
                "the loss became {loss} at step {} (epoch {}); the last good checkpoint in {} is kept. Lower optim.base_lr or raise optim.warmup_epochs, then start a new run (or resume to retry from the checkpoint)",
                self.position.step,
                epoch + 1,
                self.run.checkpoint_dir().display()
            )));
        }
        self.clock.final_loss = loss;
        let constant_lr = method.constant_lr();
        let method = self
            .optimizer
            .step(lr, self.peak_lr, method, grads, &constant_lr);
        let method = method.after_step(out.carry, progress);
        self.position = Position {
            epoch,
            batch: batch_index + 1,
            step: self.position.step + 1,
        };
        self.clock.trained(batch_size);
        Ok((
            method,
            Stepped {
                loss,
                lr,
                weight_decay: self.optimizer.weight_decay(),
                progress,
                embeddings: out.embeddings,
                terms: out.terms,
                signals: out.signals,
            },
        ))
    }

    /// After a stop request: checkpoints where the loop stands and ends the run with
    /// [`Error::Interrupted`].
    fn stop_if_asked<M: Method>(&mut self, method: &M, observer: &mut dyn Observer) -> Result<()> {
        let Some(signal) = self.interrupt.requested() else {
            return Ok(());
        };
        self.checkpoint(method, observer)?;
        Err(Error::Interrupted {
            signal,
            step: self.position.step,
            checkpoint: self.run.checkpoint_dir(),
        })
    }

    /// Replaces the run's checkpoint (atomically) with the method, optimizer and position now.
    fn checkpoint<M: Method>(&mut self, method: &M, observer: &mut dyn Observer) -> Result<()> {
        checkpoint::save(&self.run, method, &self.optimizer, self.position)?;
        self.last_checkpoint = Instant::now();
        observer.observe(&Event::CheckpointWritten {
            step: self.position.step,
            dir: self.run.checkpoint_dir(),
        });
        Ok(())
    }
}
