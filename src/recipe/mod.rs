//! A typed, validated training recipe: built-in per-method defaults (the files in `recipes/`),
//! overlaid by a user's recipe file, then by command-line flags and `--set key=value` pairs
//! ([`resolve`]). Its `[method]` section is the named method's own settings
//! ([`MethodConfig`]); recipes written before that had one shared set ([`legacy`]).

mod legacy;
mod resolve;

use std::path::PathBuf;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use resolve::{Difference, Overrides, apply_set, set_key};

use crate::augment::AugmentConfig;
use crate::data::{LoadOptions, OnCorrupt, Splits};
use crate::error::{Error, Result};
pub use crate::method::MethodConfig;
use crate::method::{Build, Method, RunSource};
use crate::nn::ModelConfig;
use crate::nn::backbone::ImageShape;
use crate::optim::OptimizerConfig;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset folder (IDX, CIFAR, images, WebDataset shards) or one `.tar` shard; empty means
    /// the Fashion-MNIST subset bundled with selfsup.
    pub path: String,
    /// Resize every in-memory image to this side (0: keep the native size); streamed images
    /// are cropped to it when `augment.size` is 0.
    pub image_size: usize,
    /// Use only N training images (0: all): the first N, or N spread over a streamed set.
    pub max_images: usize,
    /// An image that cannot be decoded mid-run: "skip" (counted, named, replaced by the next
    /// readable one) or "fail" (stop with an error naming it; checkpoints are kept).
    pub on_corrupt: OnCorrupt,
    /// WebDataset shards: images held by the streaming shuffle buffer.
    pub shuffle_buffer: usize,
    /// Per-channel normalisation: "auto" (the statistics pretrained `train.init` weights expect,
    /// else the dataset's own), "dataset" or "imagenet".
    pub normalize: Normalization,
}

/// `data.normalize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    #[default]
    Auto,
    Dataset,
    Imagenet,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: String::new(),
            image_size: 0,
            max_images: 0,
            on_corrupt: OnCorrupt::Skip,
            shuffle_buffer: 2000,
            normalize: Normalization::Auto,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Write a metrics line every N steps.
    pub log_every: usize,
    /// Checkpoint every N epochs (and always at the end).
    pub checkpoint_every: usize,
    /// Also checkpoint every N steps inside an epoch (0: off).
    pub checkpoint_every_steps: usize,
    /// Also checkpoint when this many minutes passed since the last checkpoint (0: off), so a
    /// SIGKILL or a power cut costs minutes, not an epoch.
    pub checkpoint_every_minutes: f64,
    /// kNN-evaluate the frozen encoder every N epochs into `eval_history.jsonl` (0: off).
    pub eval_every: usize,
    /// Pretrained encoder weights every encoder of the method starts from (.safetensors / .pth
    /// with timm or torchvision names; empty: random init).
    pub init: String,
    /// Write TensorBoard event files to `<run>/tb/`: every logged scalar, the pictures drawn
    /// for the run, the recipe.
    pub tensorboard: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 128,
            seed: 0,
            log_every: 10,
            checkpoint_every: 1,
            checkpoint_every_steps: 0,
            checkpoint_every_minutes: 15.0,
            eval_every: 0,
            init: String::new(),
            tensorboard: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub linear_epochs: usize,
    pub linear_lr: f64,
    pub linear_weight_decay: f64,
    /// Cap on the labelled train images used to fit kNN / the probe (0: all).
    pub max_train: usize,
    /// Cap on the held-out images evaluated (0: all).
    pub max_test: usize,
    /// `selfsup finetune`: fraction of the labelled training images used.
    pub finetune_fraction: f64,
    pub finetune_epochs: usize,
    /// AdamW learning rate at batch 256 (one warmup epoch, then cosine).
    pub finetune_lr: f64,
    pub finetune_weight_decay: f64,
    pub finetune_batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            knn_k: 20,
            knn_temperature: 0.1,
            linear_epochs: 30,
            linear_lr: 0.5,
            linear_weight_decay: 1e-5,
            max_train: 0,
            max_test: 0,
            finetune_fraction: 0.1,
            finetune_epochs: 15,
            finetune_lr: 1e-3,
            finetune_weight_decay: 0.05,
            finetune_batch_size: 64,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// `[method]`: `name` and the named method's own settings.
    pub method: MethodConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub augment: AugmentConfig,
    pub optim: OptimizerConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

impl Recipe {
    pub fn validate(&self) -> Result<()> {
        let check = |r: std::result::Result<(), String>| r.map_err(Error::Recipe);
        check(self.model.validate())?;
        check(self.augment.validate())?;
        check(self.optim.validate())?;
        if self.data.shuffle_buffer == 0 {
            return Err(Error::Recipe(
                "data.shuffle_buffer = 0: the shard shuffle buffer needs at least one image (e.g. 2000)".into(),
            ));
        }
        let t = &self.train;
        if t.batch_size == 0 {
            return Err(Error::Recipe(
                "train.batch_size = 0: the batch size must be a positive number (e.g. 128)".into(),
            ));
        }
        if t.batch_size < 2 {
            return Err(Error::Recipe(
                "train.batch_size = 1: BatchNorm needs at least 2 images per batch".into(),
            ));
        }
        if t.epochs == 0 {
            return Err(Error::Recipe("train.epochs must be at least 1".into()));
        }
        if t.log_every == 0 || t.checkpoint_every == 0 {
            return Err(Error::Recipe(
                "train.log_every and train.checkpoint_every must be at least 1".into(),
            ));
        }
        if !(t.checkpoint_every_minutes >= 0.0 && t.checkpoint_every_minutes.is_finite()) {
            return Err(Error::Recipe(format!(
                "train.checkpoint_every_minutes = {}: give minutes ≥ 0 (0 turns timed checkpoints off)",
                t.checkpoint_every_minutes
            )));
        }
        self.method.validate(&self.model, &self.augment)?;
        let e = &self.eval;
        if !(e.finetune_fraction > 0.0 && e.finetune_fraction <= 1.0) {
            return Err(Error::Recipe(format!(
                "eval.finetune_fraction = {} must be in (0, 1] (0.1 = a tenth of the labels)",
                e.finetune_fraction
            )));
        }
        if e.finetune_epochs == 0
            || e.finetune_batch_size < 2
            || e.finetune_lr.is_nan()
            || e.finetune_lr <= 0.0
        {
            return Err(Error::Recipe(
                "eval.finetune_epochs must be ≥ 1, eval.finetune_batch_size ≥ 2 and eval.finetune_lr > 0".into(),
            ));
        }
        if e.knn_k == 0 || e.knn_temperature.is_nan() || e.knn_temperature <= 0.0 {
            return Err(Error::Recipe(
                "eval.knn_k must be ≥ 1 and eval.knn_temperature > 0".into(),
            ));
        }
        Ok(())
    }

    pub fn data_path(&self) -> Option<PathBuf> {
        (!self.data.path.is_empty()).then(|| PathBuf::from(&self.data.path))
    }

    pub fn image_size(&self) -> Option<usize> {
        (self.data.image_size > 0).then_some(self.data.image_size)
    }

    /// How the recipe's data is read (`data.*` and the training views' side).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            image_size: self.image_size(),
            view_side: (self.augment.size > 0).then_some(self.augment.size),
            on_corrupt: self.data.on_corrupt,
            shuffle_buffer: self.data.shuffle_buffer,
        }
    }

    /// The recipe's data, loaded.
    pub fn load_data(&self) -> Result<Splits> {
        crate::data::load(self.data_path().as_deref(), &self.load_options())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("recipes serialise")
    }

    /// What the recipe's method is built for on `shape` images.
    pub fn build<'a>(
        &'a self,
        shape: ImageShape,
        device: &'a Device,
        runs: &'a dyn RunSource,
    ) -> Build<'a> {
        Build {
            name: self.method.name(),
            model: &self.model,
            shape,
            epochs: self.train.epochs,
            seed: self.train.seed,
            device,
            runs,
        }
    }

    /// Builds the recipe's method as `M` (the type that implements it) for `shape` images.
    pub fn init_method<M: Method>(
        &self,
        shape: ImageShape,
        device: &Device,
        runs: &dyn RunSource,
    ) -> Result<M> {
        M::init(
            self.method.settings::<M>(),
            &self.build(shape, device, runs),
        )
    }
}
