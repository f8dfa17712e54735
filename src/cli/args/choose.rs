//! The arguments of the commands that choose a method and a budget or compare runs: plan,
//! advise, lab, compare, map.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::DeviceArg;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Method to plan (see `selfsup methods`).
    #[arg(long)]
    pub method: Option<String>,
    /// Recipe file (TOML), e.g. recipes/photos/byol-resnet50.toml.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Backbone: resnet18, resnet34, resnet50, vit-tiny, vit-small, vit-base (sets model.arch;
    /// a ResNet gets the ImageNet stem from 64 px up, unless --set model.stem says otherwise).
    #[arg(long)]
    pub arch: Option<String>,
    /// Side of the training views in pixels (default: the recipe's crop size, or the bundled
    /// 28-px Fashion-MNIST).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Colour channels (default: 3 with --image-size, else the bundled data's 1).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Images per step (default: the recipe's train.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// MoCo v1 / v2 queue length (method.queue_size).
    #[arg(long)]
    pub queue: Option<usize>,
    /// Override any recipe value, e.g. --set model.width=32 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Memory to fit, in GiB, for the largest-batch answer (default: this machine's RAM).
    #[arg(long)]
    pub memory: Option<f64>,
    /// Also run two real training steps on the CPU at this batch size and measure the second's
    /// peak memory beside the plan (needs that much memory and some seconds).
    #[arg(long)]
    pub measure: bool,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `--goal`: what the features are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GoalArg {
    /// Frozen features for many tasks: kNN, linear probes, retrieval.
    Frozen,
    /// Fine-tuning the whole encoder with labels.
    Finetune,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackboneArg {
    Cnn,
    Vit,
    Any,
}

#[derive(Args, Debug)]
pub struct AdviseArgs {
    #[arg(long, value_enum, default_value_t = GoalArg::Frozen)]
    pub goal: GoalArg,
    #[arg(long, value_enum, default_value_t = BackboneArg::Any)]
    pub backbone: BackboneArg,
    /// Compute is what limits you: prefer the cheapest step per image.
    #[arg(long)]
    pub low_compute: bool,
    /// The batch size you can afford.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// The side of your images in pixels (28 for the bundled Fashion-MNIST).
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Memory for training, in GiB (GPU or RAM).
    #[arg(long)]
    pub memory: Option<f64>,
    /// The features must match text (zero-shot labels, search by a sentence).
    #[arg(long)]
    pub text: bool,
    /// A folder of finished runs (`selfsup train --out` folders) to quote results from.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LabArgs {
    /// The experiment: batch-size, negatives, ablations or dimensional (see below).
    pub experiment: String,
    /// Seeds, comma-separated (default: 0,1,2; 0 with --smoke).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Dataset (default: the bundled subset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Epochs instead of the shipped recipes' own.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// A minute-sized run to check the experiment end to end: 1,280 images, one epoch, one seed
    /// unless --seeds says otherwise. Its verdict is not the experiment's.
    #[arg(long)]
    pub smoke: bool,
    /// Output folder (default: runs/lab/<experiment>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the runs an interrupted invocation finished (same experiment, seed and resolved
    /// recipe) and train only the rest. Without it every run starts over.
    #[arg(long)]
    pub resume: bool,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories, or folders holding runs.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The curves' PNG (default: compare.png beside the first run).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProjectionArg {
    Tsne,
    Pca,
}

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Run directory written by `selfsup train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Images to map instead of the run's own held-out split (resized to the run's image size).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The PNG (default: <run>/map.png).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Held-out images to place on the map.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// t-SNE (Barnes-Hut, from the PCA map) or PCA alone (fast, linear).
    #[arg(long, value_enum, default_value_t = ProjectionArg::Tsne)]
    pub projection: ProjectionArg,
    /// t-SNE's perplexity: about how many neighbours each point keeps close.
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}
