//! The training loop: data → views → method step → optimizer → after-step, with schedules,
//! metrics, collapse monitoring, checkpoints and exact resume.

pub mod checkpoint;
pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::loader::{Loader, Normalize};
use crate::device::{DeviceChoice, train_device};
use crate::diagnose::codebook::CodebookUsage;
use crate::diagnose::distillation::DistillationVerdict;
use crate::diagnose::{self, Verdict};
use crate::error::{Error, Result};
use crate::method::{Method, MethodName, Progress};
use crate::nn::backbone::ImageShape;
use crate::optim::schedule::cosine_between;
use crate::optim::{Optimizer, WarmupCosine};
use crate::recipe::Recipe;
use crate::run::{RunDir, RunInfo, save_module, write_json};
use checkpoint::Position;
use metrics::{MetricsLine, MetricsLog};

pub struct TrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub device: DeviceChoice,
    /// Show a progress bar (off for machine-readable output).
    pub progress: bool,
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
    /// Fraction of the training time spent waiting for the loader (0: the model never waited).
    pub data_wait_fraction: f64,
}

/// Trains the recipe's method into `options.out`.
pub fn train(recipe: &Recipe, options: &TrainOptions) -> Result<TrainSummary> {
    crate::with_method!(recipe.method.name, M => train_method::<M>(recipe, options))
}

fn prepare_run(recipe: &Recipe, options: &TrainOptions) -> Result<RunDir> {
    let run = RunDir::new(&options.out);
    if options.resume {
        if checkpoint::latest(&run).is_none() {
            return Err(Error::data(
                &options.out,
                "--resume: no checkpoint in this run directory; start it without --resume",
            ));
        }
    } else if run.recipe_path().exists() || run.checkpoint_dir().exists() {
        return Err(Error::data(
            &options.out,
            "already holds a run; pass --resume to continue it, or choose another --out",
        ));
    }
    std::fs::create_dir_all(&run.root).map_err(|e| Error::io(&run.root, e))?;
    crate::error::write_atomic(&run.recipe_path(), recipe.to_toml().as_bytes())?;
    Ok(run)
}

/// Moves a batch's view buffers into tensors (no copy of the pixels on the host).
fn tensor_views(
    batch: crate::data::loader::Batch,
    device: &burn::tensor::Device,
) -> Vec<Tensor<4>> {
    let (b, c) = (batch.size, batch.channels);
    batch
        .views
        .into_iter()
        .zip(batch.sides)
        .map(|(v, side)| Tensor::from_data(TensorData::new(v, [b, c, side, side]), device))
        .collect()
}

fn train_method<M: Method>(recipe: &Recipe, options: &TrainOptions) -> Result<TrainSummary> {
    let splits = crate::data::load(recipe.data_path().as_deref(), recipe.image_size())?;
    let online_eval = if recipe.train.eval_every > 0 {
        Some(crate::eval::labelled_splits(&splits, &recipe.eval)?)
    } else {
        None
    };
    let mut train_set = splits.train;
    if recipe.data.max_images > 0 {
        train_set = train_set.take(recipe.data.max_images);
    }
    let batch_size = recipe.train.batch_size;
    if train_set.len() < batch_size {
        return Err(Error::Recipe(format!(
            "train.batch_size = {batch_size} is larger than the {} training images; lower it",
            train_set.len()
        )));
    }
    let (mean, std) = train_set.channel_stats();
    let normalize = Normalize {
        mean: mean.clone(),
        std: std.clone(),
    };
    let loader_normalize = normalize.clone();
    let channels = train_set.channels;
    let train_images = train_set.len();
    let native_side = train_set.height;
    let loader = Arc::new(Loader::new(
        Arc::new(train_set),
        recipe.augment.clone(),
        normalize,
        batch_size,
        recipe.train.seed,
    ));
    let shape = ImageShape {
        channels,
        side: loader.side(),
    };
    check_backbone(recipe, shape, native_side)?;
    let device = train_device(options.device)?;
    device.seed(recipe.train.seed);
    // Built before the run directory exists, so a method that cannot start (BEiT without its
    // tokenizer) leaves nothing behind.
    let mut method = M::init(recipe, shape, &device)?;
    let run = prepare_run(recipe, options)?;
    write_json(
        &run.info_path(),
        &RunInfo {
            method: recipe.method.name.to_string(),
            channels,
            image_side: loader.side(),
            mean,
            std,
            data: splits.description.clone(),
            train_images,
            encoder_dim: method.encoder().out_dim(),
        },
    )?;

    let mut optimizer = Optimizer::new(recipe.optim.clone());
    let mut position = Position {
        epoch: 0,
        batch: 0,
        step: 0,
    };
    let mut resumed_from_step = None;
    if options.resume {
        let dir = checkpoint::latest(&run).expect("checked in prepare_run");
        let (loaded, pos) = checkpoint::load(&dir, method, &mut optimizer, &device)?;
        method = loaded;
        position = pos;
        resumed_from_step = Some(pos.step);
    }
    let mut log = MetricsLog::open(&run.metrics_path(), resumed_from_step)?;
    match resumed_from_step {
        Some(step) => metrics::truncate_after_step(&run.eval_history_path(), step)?,
        None if online_eval.is_some() => crate::error::write_atomic(&run.eval_history_path(), b"")?,
        None => {}
    }

    let steps_per_epoch = loader.batches_per_epoch();
    let epochs = recipe.train.epochs;
    let total_steps = epochs * steps_per_epoch;
    let peak_lr = recipe.optim.base_lr * batch_size as f64 / 256.0;
    let schedule = WarmupCosine {
        base_lr: peak_lr,
        warmup_steps: (recipe.optim.warmup_epochs * steps_per_epoch as f64).round() as usize,
        total_steps,
        final_fraction: recipe.optim.final_lr_fraction,
    };

    let bar = if options.progress {
        ProgressBar::new(total_steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!(
        "{} epoch {}/{}",
        recipe.method.name,
        position.epoch + 1,
        epochs
    ));
    bar.set_position(position.step as u64);

    let started = Instant::now();
    let mut window_start = Instant::now();
    let mut window_images = 0usize;
    let mut trained_images = 0usize;
    let mut final_loss = f64::NAN;
    let mut collapse_warning_step = None;
    let mut dimensional_collapse_warning_step = None;
    let mut codebook_warning_step = None;
    let mut distillation_warning_step = None;
    let mut data_wait = 0.0;

    for epoch in position.epoch..epochs {
        bar.set_prefix(format!(
            "{} epoch {}/{}",
            recipe.method.name,
            epoch + 1,
            epochs
        ));
        let start_batch = if epoch == position.epoch {
            position.batch
        } else {
            0
        };
        let batches = loader.epoch(epoch, start_batch);
        loop {
            let wait = Instant::now();
            let Ok(batch) = batches.recv() else { break };
            data_wait += wait.elapsed().as_secs_f64();
            let progress = Progress {
                step: position.step,
                total_steps,
            };
            let lr = schedule.lr(position.step);
            if let Some(end) = recipe.optim.weight_decay_end() {
                optimizer.set_weight_decay(cosine_between(
                    recipe.optim.weight_decay,
                    end,
                    position.step,
                    total_steps,
                ));
            }
            let (batch_index, batch_size) = (batch.index, batch.size);
            let views = tensor_views(batch, &device);
            let out = method.step(&views, progress);
            let loss = out.loss.clone().into_scalar::<f32>() as f64;
            if !loss.is_finite() {
                bar.abandon();
                return Err(Error::Diverged(format!(
                    "the loss became {loss} at step {} (epoch {}); the last good checkpoint in {} is kept. Lower optim.base_lr or raise optim.warmup_epochs, then start a new run (or --resume to retry from the checkpoint)",
                    position.step,
                    epoch + 1,
                    run.checkpoint_dir().display()
                )));
            }
            final_loss = loss;
            let grads = GradientsParams::from_grads(out.loss.backward(), &method);
            let constant_lr = method.constant_lr_modules();
            method = optimizer.step(lr, peak_lr, method, grads, constant_lr);
            method = method.after_step(out.carry, progress);
            position = Position {
                epoch,
                batch: batch_index + 1,
                step: position.step + 1,
            };
            window_images += batch_size;
            trained_images += batch_size;
            bar.set_position(position.step as u64);

            if position.step % recipe.train.log_every == 0 || position.step == 1 {
                let terms = out
                    .terms
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.value.into_scalar::<f32>() as f64))
                    .collect();
                let emb = out.embeddings;
                let [n, d] = emb.dims();
                let values = crate::host::to_f32(emb);
                let stats = diagnose::analyze_for(&values, n, d, M::CENTRED_DIAGNOSTICS);
                let codebook = out
                    .codes
                    .map(|c| CodebookUsage::of(&crate::host::to_i64(c.ids), c.size));
                // From step 50: a random codebook starts narrow, and restarts need ~30 steps.
                if let Some(usage) = &codebook
                    && usage.collapsed
                    && position.step >= 50
                    && codebook_warning_step.is_none()
                {
                    codebook_warning_step = Some(position.step);
                    say(
                        &bar,
                        format!("warning: at step {}: {}", position.step, usage.describe()),
                    );
                }
                let distillation = out
                    .distillation
                    .map(crate::diagnose::distillation::analyze_distributions);
                // From step 50 as well: a random teacher can start on few prototypes.
                if let Some(d) = &distillation
                    && d.verdict != DistillationVerdict::Healthy
                    && position.step >= 50
                    && distillation_warning_step.is_none()
                {
                    distillation_warning_step = Some(position.step);
                    say(
                        &bar,
                        format!(
                            "warning: at step {}: {}. {}",
                            position.step,
                            d.describe(),
                            d.verdict.explain()
                        ),
                    );
                }
                let images_per_s = window_images as f64 / window_start.elapsed().as_secs_f64();
                window_start = Instant::now();
                window_images = 0;
                log.write(&MetricsLine {
                    step: position.step,
                    epoch,
                    loss,
                    lr,
                    momentum: method.momentum(progress),
                    embedding_std: stats.embedding_std,
                    healthy_std: stats.healthy_std,
                    effective_rank: stats.effective_rank,
                    images_per_s,
                    terms,
                    codebook,
                    distillation,
                })?;
                bar.set_message(format!(
                    "loss {loss:.4}  std {:.3} (healthy {:.3})  rank {:.1}  {images_per_s:.0} img/s",
                    stats.embedding_std, stats.healthy_std, stats.effective_rank
                ));
                let first = match stats.verdict {
                    Verdict::CompleteCollapse => &mut collapse_warning_step,
                    Verdict::DimensionalCollapse => &mut dimensional_collapse_warning_step,
                    Verdict::Healthy => &mut None,
                };
                if stats.verdict != Verdict::Healthy && first.is_none() {
                    *first = Some(position.step);
                    say(
                        &bar,
                        format!(
                            "warning: {} at step {}: embedding std {:.4} (healthy {:.4}), effective rank {:.1} of {d}. {}",
                            stats.verdict.as_str().replace('_', " "),
                            position.step,
                            stats.embedding_std,
                            stats.healthy_std,
                            stats.effective_rank,
                            collapse_hint(recipe)
                        ),
                    );
                }
            }
            let every = recipe.train.checkpoint_every_steps;
            if every > 0 && position.step % every == 0 {
                checkpoint::save(&run, &method, &optimizer, position)?;
            }
        }
        position = Position {
            epoch: epoch + 1,
            batch: 0,
            step: position.step,
        };
        if let Some((fit, held_out)) = &online_eval
            && (epoch + 1) % recipe.train.eval_every == 0
        {
            let knn_top1 = online_knn(
                method.encoder(),
                fit,
                held_out,
                &loader_normalize,
                recipe,
                &device,
            );
            say(
                &bar,
                format!(
                    "epoch {}: kNN top-1 {:.4} on {} held-out images",
                    epoch + 1,
                    knn_top1,
                    held_out.len()
                ),
            );
            append_eval_history(&run, epoch + 1, position.step, knn_top1)?;
        }
        if (epoch + 1) % recipe.train.checkpoint_every == 0 || epoch + 1 == epochs {
            checkpoint::save(&run, &method, &optimizer, position)?;
        }
    }
    bar.finish_and_clear();
    save_module(method.encoder().clone(), &run.encoder_path())?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(TrainSummary {
        run_dir: run.root.clone(),
        method: recipe.method.name.to_string(),
        epochs,
        steps: position.step,
        final_loss,
        seconds,
        images_per_s: trained_images as f64 / seconds.max(1e-9),
        collapse_warning_step,
        dimensional_collapse_warning_step,
        codebook_collapse_warning_step: codebook_warning_step,
        distillation_collapse_warning_step: distillation_warning_step,
        resumed_from_step,
        data_wait_fraction: data_wait / seconds.max(1e-9),
    })
}

/// Refuses a backbone that cannot take the training images, or a ViT whose training views
/// (`augment.size`) differ from the images evaluation will feed it.
fn check_backbone(recipe: &Recipe, shape: ImageShape, native_side: usize) -> Result<()> {
    recipe.model.validate_for(shape).map_err(Error::Recipe)?;
    if recipe.method.name == MethodName::Simmim {
        let grid = shape.side / recipe.model.patch_size.max(1);
        if grid % recipe.method.mask_block != 0 {
            return Err(Error::Recipe(format!(
                "method.mask_block = {} must divide the {grid}×{grid} patch grid ({} px / {} px patches)",
                recipe.method.mask_block, shape.side, recipe.model.patch_size
            )));
        }
    }
    if recipe.model.is_vit() && shape.side != native_side {
        return Err(Error::Recipe(format!(
            "augment.size = {} differs from the {native_side}-pixel images a ViT is evaluated on; set data.image_size = {} (resizes the data) and augment.size = 0",
            shape.side, shape.side
        )));
    }
    Ok(())
}

/// kNN top-1 of the current encoder (BatchNorm in eval mode) — solo-learn-style online monitoring.
fn online_knn(
    encoder: &crate::nn::Backbone,
    fit: &crate::data::ImageSet,
    held_out: &crate::data::ImageSet,
    normalize: &Normalize,
    recipe: &Recipe,
    device: &burn::tensor::Device,
) -> f64 {
    use crate::eval::{encoder_features, knn_score};
    let plain = device.clone().inner();
    let tr = encoder_features(encoder, fit, normalize, &plain);
    let te = encoder_features(encoder, held_out, normalize, &plain);
    knn_score(&tr, fit, &te, held_out, &recipe.eval, &plain)
}

fn append_eval_history(run: &RunDir, epoch: usize, step: usize, knn_top1: f64) -> Result<()> {
    use std::io::Write;
    let path = run.eval_history_path();
    let line = serde_json::json!({"epoch": epoch, "step": step, "knn_top1": knn_top1});
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    writeln!(file, "{line}").map_err(|e| Error::io(&path, e))
}

fn collapse_hint(recipe: &Recipe) -> &'static str {
    match recipe.method.name {
        MethodName::Simclr | MethodName::MocoV3 => {
            "In-batch negatives keep contrastive methods apart; check method.temperature (too high flattens the softmax) and the learning rate."
        }
        MethodName::MocoV1 | MethodName::MocoV2 => {
            "Check method.temperature, method.queue_size and method.base_momentum (the key encoder must move slowly)."
        }
        MethodName::BarlowTwins => {
            "Check method.lambda (too small ignores redundancy) and the projector width (method.projector)."
        }
        MethodName::Vicreg => {
            "Raise method.variance_weight (the hinge keeps every dimension alive) or lower the learning rate."
        }
        MethodName::Simsiam if !recipe.method.stop_gradient => {
            "SimSiam without stop-gradient collapses by design: set method.stop_gradient=true."
        }
        MethodName::Simsiam => {
            "Check that the predictor is present and the learning rate is not too high."
        }
        MethodName::Mae | MethodName::Simmim | MethodName::Beit | MethodName::VqTokenizer => {
            "Pixel reconstruction cannot be solved by a constant, so this is the encoder's features going flat: lower optim.base_lr or raise optim.warmup_epochs."
        }
        MethodName::Byol => {
            "Check method.base_momentum (too low lets the target chase the online network) and the learning rate."
        }
        MethodName::Dino | MethodName::Ibot | MethodName::Dinov2
            if recipe.method.centering == crate::recipe::Centering::None =>
        {
            "method.centering = \"none\" leaves only sharpening, which collapses onto one prototype: use \"ema\" (DINO, iBOT) or \"sinkhorn\" (DINOv2)."
        }
        MethodName::Dino | MethodName::Ibot | MethodName::Dinov2 => {
            "Check the teacher temperature (method.teacher_temperature, too high flattens the targets), method.base_momentum and the learning rate."
        }
    }
}

/// Prints a line above the progress bar, or to stderr when there is no bar to draw (piped output,
/// `--json`), so warnings are never swallowed.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
