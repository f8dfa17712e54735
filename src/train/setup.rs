//! What the loop is set up from: the training images behind a loader, and the run directory.

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use super::TrainOptions;
use super::metrics::{self, MetricsLog};
use crate::data::loader::{Batch, Loader, Normalize};
use crate::data::{Images, Splits};
use crate::error::{Error, Result};
use crate::nn::backbone::ImageShape;
use crate::recipe::{Normalization, Recipe};
use crate::run::checkpoint;
use crate::run::{RunDir, RunLock};

/// The training images as the loop sees them.
pub(super) struct TrainingData {
    pub loader: Arc<Loader>,
    pub normalize: Normalize,
    /// The views' shape (what the method is built for).
    pub shape: ImageShape,
    pub images: usize,
}

/// The recipe's share of the training split (`data.max_images`) behind a seeded loader,
/// normalised by its own per-channel statistics (estimated from a sample when streamed).
pub(super) fn training_data(recipe: &Recipe, splits: &Splits) -> Result<TrainingData> {
    let mut train = splits.train.clone();
    if recipe.data.max_images > 0 {
        train = train.take(recipe.data.max_images);
    }
    let batch_size = recipe.train.batch_size;
    if train.len() < batch_size {
        return Err(Error::Recipe(format!(
            "train.batch_size = {batch_size} is larger than the {} training images; lower it",
            train.len()
        )));
    }
    let mut augment = recipe.augment.clone();
    let (mean, std) = match &train {
        Images::Memory(set) => set.channel_stats(),
        Images::Stream(stream) => {
            // Streamed images have no common size: views are made at the stream's side.
            augment.size = stream.side;
            stream.channel_stats(crate::data::SAMPLED_IMAGES)?
        }
    };
    // Pretrained weights see images the way they were trained, unless the recipe says otherwise.
    let init = (!recipe.train.init.is_empty()).then(|| std::path::Path::new(&recipe.train.init));
    let channels = train.channels();
    let normalize = match recipe.data.normalize {
        Normalization::Dataset => None,
        Normalization::Auto => {
            init.and_then(|path| crate::weights::expected_normalize(path, channels))
        }
        Normalization::Imagenet if channels == 3 => Some(Normalize {
            mean: crate::weights::IMAGENET_MEAN.to_vec(),
            std: crate::weights::IMAGENET_STD.to_vec(),
        }),
        Normalization::Imagenet => {
            return Err(Error::Recipe(format!(
                "data.normalize = \"imagenet\": ImageNet's statistics are for RGB images, these have {channels} channel(s); use \"dataset\""
            )));
        }
    }
    .unwrap_or(Normalize { mean, std });
    let channels = train.channels();
    let images = train.len();
    let native_side = train.side();
    let loader = Arc::new(Loader::new(
        train,
        augment,
        normalize.clone(),
        batch_size,
        recipe.train.seed,
    ));
    let shape = ImageShape {
        channels,
        side: loader.side(),
    };
    check_backbone(recipe, shape, native_side)?;
    Ok(TrainingData {
        loader,
        normalize,
        shape,
        images,
    })
}

/// The run directory, locked for this process, and where training starts in it.
pub(super) struct PreparedRun {
    pub run: RunDir,
    pub lock: RunLock,
    /// The checkpoint to continue from (`--resume` of a checkpointed run).
    pub resume_from: Option<PathBuf>,
    /// The directory held a run stopped before its first checkpoint; it starts again.
    pub restarted: bool,
}

/// The lock of a run directory that exists already: another process training there is refused
/// before the loader and the method are built. A new directory is locked (created) by
/// [`prepare_run`], once the method is known to start.
pub(super) fn lock_existing(options: &TrainOptions) -> Result<Option<RunLock>> {
    let run = RunDir::new(&options.out);
    run.root
        .is_dir()
        .then(|| RunLock::acquire(&run))
        .transpose()
}

/// Whether the run directory holds a checkpoint to continue from.
pub(super) fn has_checkpoint(options: &TrainOptions) -> bool {
    checkpoint::latest(&RunDir::new(&options.out)).is_some()
}

/// Opens `metrics.jsonl` (cut back to the checkpoint's step on resume, emptied otherwise) and
/// does the same to `eval_history.jsonl` when the online kNN monitor writes it.
pub(super) fn open_logs(
    run: &RunDir,
    resumed_from_step: Option<usize>,
    online_eval: bool,
) -> Result<MetricsLog> {
    let log = MetricsLog::open(&run.metrics_path(), resumed_from_step)?;
    match resumed_from_step {
        Some(step) => metrics::truncate_after_step(&run.eval_history_path(), step)?,
        None if online_eval => crate::error::write_atomic(&run.eval_history_path(), b"")?,
        None => {}
    }
    Ok(log)
}

/// Locks the run directory (creating it) unless `lock` holds it already, decides how training
/// starts there and writes the recipe. A run with a checkpoint continues only with
/// `options.resume`; one stopped before its first checkpoint has nothing to continue, so it
/// starts again from step 0 either way.
pub(super) fn prepare_run(
    recipe: &Recipe,
    options: &TrainOptions,
    lock: Option<RunLock>,
) -> Result<PreparedRun> {
    let run = RunDir::new(&options.out);
    let lock = match lock {
        Some(lock) => lock,
        None => RunLock::acquire(&run)?,
    };
    let latest = checkpoint::latest(&run);
    let finished = run.encoder_path().exists();
    if (latest.is_some() || finished) && !options.resume {
        return Err(Error::RunExists(options.out.clone()));
    }
    if latest.is_none() && finished {
        return Err(Error::NoCheckpoint(options.out.clone()));
    }
    let restarted = latest.is_none() && run.recipe_path().exists();
    if restarted {
        for stale in [run.metrics_path(), run.eval_history_path()] {
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
            }
        }
        let tb = run.tensorboard_dir();
        if tb.exists() {
            std::fs::remove_dir_all(&tb).map_err(|e| Error::io(&tb, e))?;
        }
    }
    crate::error::write_atomic(&run.recipe_path(), recipe.to_toml().as_bytes())?;
    Ok(PreparedRun {
        run,
        lock,
        resume_from: latest,
        restarted,
    })
}

/// Moves a batch's view buffers into tensors (no copy of the pixels on the host).
pub(super) fn tensor_views(batch: Batch, device: &Device) -> Vec<Tensor<4>> {
    let (b, c) = (batch.size, batch.channels);
    batch
        .views
        .into_iter()
        .zip(batch.sides)
        .map(|(v, side)| Tensor::from_data(TensorData::new(v, [b, c, side, side]), device))
        .collect()
}

/// Refuses a backbone that cannot take the training images, or a ViT whose training views
/// (`augment.size`) differ from the images evaluation will feed it.
fn check_backbone(recipe: &Recipe, shape: ImageShape, native_side: usize) -> Result<()> {
    recipe.model.validate_for(shape).map_err(Error::Recipe)?;
    if recipe.model.is_vit() && shape.side != native_side {
        return Err(Error::Recipe(format!(
            "augment.size = {} differs from the {native_side}-pixel images a ViT is evaluated on; set data.image_size = {} (resizes the data) and augment.size = 0",
            shape.side, shape.side
        )));
    }
    Ok(())
}
