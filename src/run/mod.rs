//! A run directory: the resolved recipe, metrics, checkpoints, the final encoder and reports.
//! [`RunDir`] knows where each file lives; [`Run`] is a run opened once, its recipe and data
//! facts loaded.

pub mod checkpoint;
mod lock;
pub mod tensorboard;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::data::Splits;
use crate::data::loader::Normalize;
use crate::error::{Error, Result, write_atomic};
use crate::method::beit::TOKENIZER_HINT;
use crate::method::{Method, MethodName, RunSource, VqTokenizer};
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;
pub use lock::RunLock;

/// The largest image side a run can record (a sanity bound for damaged run.json files).
const MAX_IMAGE_SIDE: usize = 8192;

/// Facts about the data a run was trained on, needed to use its encoder later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub method: String,
    pub channels: usize,
    pub image_side: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub data: String,
    pub train_images: usize,
    pub encoder_dim: usize,
}

impl RunInfo {
    /// The images the encoder was trained on.
    pub fn shape(&self) -> ImageShape {
        ImageShape {
            channels: self.channels,
            side: self.image_side,
        }
    }

    /// What a damaged or hand-edited run.json can get wrong, said in one line.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !matches!(self.channels, 1 | 3) {
            return Err(format!("channels = {}, expected 1 or 3", self.channels));
        }
        if !(1..=MAX_IMAGE_SIDE).contains(&self.image_side) {
            return Err(format!(
                "image_side = {}, expected 1 to {MAX_IMAGE_SIDE}",
                self.image_side
            ));
        }
        if self.mean.len() != self.channels || self.std.len() != self.channels {
            return Err(format!(
                "mean and std need one value per channel ({}), found {} and {}",
                self.channels,
                self.mean.len(),
                self.std.len()
            ));
        }
        if !self.mean.iter().all(|m| m.is_finite())
            || !self.std.iter().all(|s| *s > 0.0 && s.is_finite())
        {
            return Err("mean must be finite and std positive".into());
        }
        if self.encoder_dim == 0 {
            return Err("encoder_dim = 0".into());
        }
        Ok(())
    }

    pub fn normalize(&self) -> Normalize {
        Normalize {
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// An existing, finished-or-checkpointed run; a clear error otherwise.
    pub fn open(root: &Path) -> Result<Self> {
        let run = RunDir::new(root);
        if !root.is_dir() {
            return Err(Error::data(
                root,
                "run directory does not exist; give the directory a training run wrote",
            ));
        }
        if !run.recipe_path().is_file() || !run.info_path().is_file() {
            return Err(Error::data(
                root,
                "not a selfsup run directory (no recipe.toml / run.json); give the directory a training run wrote",
            ));
        }
        Ok(run)
    }

    pub fn recipe_path(&self) -> PathBuf {
        self.root.join("recipe.toml")
    }
    pub fn info_path(&self) -> PathBuf {
        self.root.join("run.json")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn eval_history_path(&self) -> PathBuf {
        self.root.join("eval_history.jsonl")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    pub fn encoder_path(&self) -> PathBuf {
        self.root.join("encoder.bpk")
    }
    pub fn spectrum_path(&self) -> PathBuf {
        self.root.join("spectrum.png")
    }
    pub fn diagnose_path(&self) -> PathBuf {
        self.root.join("diagnose.json")
    }
    /// The training summary (time, steps, warnings) of the run's last `train` invocation.
    pub fn train_path(&self) -> PathBuf {
        self.root.join("train.json")
    }
    pub fn eval_path(&self) -> PathBuf {
        self.root.join("eval.json")
    }
    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.md")
    }
    /// TensorBoard event files (`train.tensorboard`).
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.join("tb")
    }

    /// The newest complete checkpoint directory, if any.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        checkpoint::latest(self)
    }
}

/// A run directory opened once: its resolved recipe and the facts about its training data.
#[derive(Clone, Debug)]
pub struct Run {
    pub dir: RunDir,
    pub recipe: Recipe,
    pub info: RunInfo,
}

impl Run {
    /// Opens an existing run (finished, or with a checkpoint); a clear error otherwise.
    pub fn open(root: &Path) -> Result<Run> {
        let dir = RunDir::open(root)?;
        let recipe = Recipe::load(&dir.recipe_path())?;
        let info: RunInfo = read_json(&dir.info_path())?;
        info.validate().map_err(|msg| {
            Error::data(
                dir.info_path(),
                format!("{msg}; the file is damaged (train the run again, or restore it)"),
            )
        })?;
        Ok(Run { dir, recipe, info })
    }

    pub fn root(&self) -> &Path {
        &self.dir.root
    }

    /// The run's own data (train and, when the source has one, test split).
    pub fn data(&self) -> Result<Splits> {
        self.recipe.load_data()
    }

    /// Other data for this run's encoder: the recipe's data options, streamed images cropped to
    /// the side the encoder was trained at.
    pub fn data_at(&self, path: &Path) -> Result<Splits> {
        let mut options = self.recipe.load_options();
        options.view_side = Some(self.info.image_side);
        crate::data::load(Some(path), &options)
    }

    /// The trained encoder.
    pub fn encoder(&self, device: &Device) -> Result<Backbone> {
        let path = self.dir.encoder_path();
        if !path.is_file() {
            return Err(Error::Unfinished(self.dir.root.clone()));
        }
        load_module(self.recipe.model.init(self.info.shape(), device), &path)
    }

    /// The run's whole method from its latest checkpoint (training flags as saved; call
    /// `valid()` for inference).
    pub fn method<M: Method>(&self, device: &Device) -> Result<M> {
        let dir = self.checkpoint()?;
        let fresh = self
            .recipe
            .init_method::<M>(self.info.shape(), device, &Runs)?;
        load_module(fresh, &dir.join("model.bpk"))
    }

    /// The newest checkpoint directory, or an error saying the run has none.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        self.dir
            .latest_checkpoint()
            .ok_or_else(|| Error::NoCheckpoint(self.dir.root.clone()))
    }
}

/// Run directories on disk, as a [`RunSource`] for methods that build on another run.
pub struct Runs;

impl RunSource for Runs {
    fn tokenizer(&self, path: &Path, shape: ImageShape, device: &Device) -> Result<VqTokenizer> {
        let hint = TOKENIZER_HINT;
        let run = Run::open(path).map_err(|e| {
            Error::Recipe(format!(
                "method.tokenizer = {}: {e}; {hint}",
                path.display()
            ))
        })?;
        if run.recipe.method.name() != MethodName::VqTokenizer {
            return Err(Error::Recipe(format!(
                "method.tokenizer = {}: that run trained {}, not vq-tokenizer; {hint}",
                path.display(),
                run.recipe.method.name()
            )));
        }
        if run.info.shape() != shape {
            return Err(Error::Recipe(format!(
                "method.tokenizer = {}: it was trained on {}-channel {} px images, BEiT sees {}-channel {} px; train the tokenizer with the same data.image_size",
                path.display(),
                run.info.channels,
                run.info.image_side,
                shape.channels,
                shape.side
            )));
        }
        if run.dir.latest_checkpoint().is_none() {
            return Err(Error::Recipe(format!(
                "method.tokenizer = {}: the run has no checkpoint yet; resume its training to finish it",
                path.display(),
            )));
        }
        run.method(device)
    }
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, format!("invalid JSON: {e}")))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("serialisable");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn save_module<M: Module>(module: M, path: &Path) -> Result<()> {
    // BatchNorm running statistics buffer their last update per thread until the next forward;
    // `valid()` folds it in (the returned copy is not needed), so the file holds current values.
    let _ = module.valid();
    let bytes = module
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    write_atomic(path, &bytes)
}

pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    module
        .try_load_record(record)
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}
