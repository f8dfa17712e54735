//! A run directory: the resolved recipe, metrics, checkpoints, the final encoder and reports.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::data::loader::Normalize;
use crate::error::{Error, Result, write_atomic};
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;

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
                "run directory does not exist; pass the --out folder of a `selfsup train` run",
            ));
        }
        if !run.recipe_path().is_file() || !run.info_path().is_file() {
            return Err(Error::data(
                root,
                "not a selfsup run directory (no recipe.toml / run.json); pass the --out folder of a `selfsup train` run",
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
    pub fn eval_path(&self) -> PathBuf {
        self.root.join("eval.json")
    }
    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.md")
    }

    pub fn recipe(&self) -> Result<Recipe> {
        Recipe::load(&self.recipe_path())
    }

    pub fn info(&self) -> Result<RunInfo> {
        read_json(&self.info_path())
    }

    /// The trained encoder (falls back to the last checkpoint while a run is unfinished).
    pub fn encoder(&self, device: &Device) -> Result<Backbone> {
        let recipe = self.recipe()?;
        let info = self.info()?;
        let path = self.encoder_path();
        if !path.is_file() {
            return Err(Error::data(
                &path,
                "no trained encoder yet: the run has not finished; finish it with `selfsup train --resume --out <run>`",
            ));
        }
        load_module(recipe.model.init(info.shape(), device), &path)
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
