//! The arguments of each command: those that train and read runs here, those that plan,
//! advise and compare in [`choose`].

mod choose;

pub use choose::*;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use selfsup::device::DeviceChoice;

/// `--device`: where the networks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Gpu,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(arg: DeviceArg) -> Self {
        match arg {
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Gpu => DeviceChoice::Gpu,
        }
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Method to train (see `selfsup methods`).
    #[arg(long)]
    pub method: Option<String>,
    /// Recipe file (TOML); values override the method's built-in recipe.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Dataset: an IDX (MNIST/Fashion-MNIST) or CIFAR folder, a folder of images (class
    /// sub-folders, optional train/ + val/), WebDataset .tar shards. Large or mixed-size image
    /// sets are streamed (set augment.size). Default: the bundled subset.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<i64>,
    /// Run directory for the recipe, metrics, checkpoints, encoder and reports.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override any recipe value, e.g. --set optim.base_lr=0.1 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Start every encoder from pretrained weights (.safetensors / .pth / .pt with timm or
    /// torchvision names: DINO, DINOv2, MAE, `selfsup export` files); the recipe's model must
    /// match them. Images are normalised as the weights expect (ImageNet statistics, or the
    /// export card's).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, exactly where it stopped. The
    /// command that started the run works as it is: flags equal to the run's are accepted, a
    /// different value is refused by name; --epochs may change.
    #[arg(long)]
    pub resume: bool,
    /// For job scripts that may be requeued: resume the run in --out when it holds one, start
    /// it when it does not.
    #[arg(long, conflicts_with = "resume")]
    pub resume_if_exists: bool,
    /// Skip the kNN / linear-probe evaluation after training.
    #[arg(long)]
    pub no_eval: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("encoder").required(true).args(["run", "init"])))]
pub struct EvalArgs {
    /// Run directory written by `selfsup train`.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Pretrained weights instead of a run: .safetensors or PyTorch .pth / .pt with timm or
    /// torchvision names (DINO, DINOv2, MAE, `selfsup export` files); needs --data.
    #[arg(long, requires = "data")]
    pub init: Option<PathBuf>,
    /// Attention heads of an imported ViT (default: 64-wide heads, as DINO, DINOv2 and MAE use).
    #[arg(long, requires = "init")]
    pub heads: Option<usize>,
    /// Labelled data to evaluate on (default: the run's data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    #[arg(long)]
    pub run: PathBuf,
    /// Held-out images to embed.
    #[arg(long, default_value_t = 2000)]
    pub samples: usize,
    /// Diagnose the backbone's representation (pooled ResNet features, the ViT's CLS token)
    /// instead of the projector output the loss sees; writes diagnose-encoder.json and
    /// spectrum-encoder.png.
    #[arg(long)]
    pub encoder: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("encoder").required(true).args(["run", "init"])))]
pub struct FinetuneArgs {
    /// Run directory written by `selfsup train` (any method).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Pretrained weights instead of a run: .safetensors or PyTorch .pth / .pt with timm or
    /// torchvision names (DINO, DINOv2, MAE, `selfsup export` files); needs --data.
    #[arg(long, requires = "data")]
    pub init: Option<PathBuf>,
    /// Attention heads of an imported ViT (default: 64-wide heads, as DINO, DINOv2 and MAE use).
    #[arg(long, requires = "init")]
    pub heads: Option<usize>,
    /// Labelled data (default: the run's data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Fraction of the labelled training images to use (default: eval.finetune_fraction, 0.1).
    #[arg(long)]
    pub fraction: Option<f64>,
    /// Passes over those images (default: eval.finetune_epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReconstructArgs {
    /// Run directory written by `selfsup train` (mae, simmim, beit or vq-tokenizer).
    #[arg(long)]
    pub run: PathBuf,
    /// Held-out images to draw (one row each).
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Draw the masks that training step N would (any number gives a different draw).
    #[arg(long, default_value_t = 0)]
    pub seed: usize,
    /// PNG to write (default: reconstruction.png in the run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AttentionArgs {
    /// Run directory written by `selfsup train` with a ViT encoder (any method).
    #[arg(long)]
    pub run: PathBuf,
    /// Image file (PNG/JPEG) to draw; repeatable. Default: held-out images of the run's data.
    #[arg(long = "image", value_name = "FILE")]
    pub image_files: Vec<PathBuf>,
    /// Held-out images to draw when no --image is given.
    #[arg(long, default_value_t = 6)]
    pub images: usize,
    /// PNG to write (default: attention.png in the run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MethodsArgs {
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `--format`: the file format of exported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WeightsFormat {
    Safetensors,
}

/// `--names`: whose parameter names an exported file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NamesArg {
    Timm,
    Torchvision,
}

impl From<NamesArg> for selfsup::weights::Names {
    fn from(arg: NamesArg) -> Self {
        match arg {
            NamesArg::Timm => selfsup::weights::Names::Timm,
            NamesArg::Torchvision => selfsup::weights::Names::Torchvision,
        }
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run directory written by `selfsup train` (finished: it holds encoder.bpk).
    #[arg(long)]
    pub run: PathBuf,
    #[arg(long, value_enum, default_value_t = WeightsFormat::Safetensors)]
    pub format: WeightsFormat,
    /// Parameter names: timm for ViTs, torchvision for ResNets (the defaults).
    #[arg(long, value_enum)]
    pub names: Option<NamesArg>,
    /// Weights file (default: <run>/encoder.safetensors); the card goes beside it as .json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the card as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--split`: which part of the data to embed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
    All,
}

impl From<SplitArg> for selfsup::inspect::Split {
    fn from(arg: SplitArg) -> Self {
        match arg {
            SplitArg::Train => selfsup::inspect::Split::Train,
            SplitArg::Test => selfsup::inspect::Split::Test,
            SplitArg::All => selfsup::inspect::Split::All,
        }
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("encoder").required(true).args(["run", "init"])))]
pub struct EmbedArgs {
    /// Run directory written by `selfsup train` (finished: it holds encoder.bpk).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Pretrained weights instead of a run: .safetensors or PyTorch .pth / .pt with timm or
    /// torchvision names (DINO, DINOv2, MAE, `selfsup export` files); needs --data and --out.
    #[arg(long, requires_all = ["data", "out"])]
    pub init: Option<PathBuf>,
    /// Attention heads of an imported ViT (default: 64-wide heads, as DINO, DINOv2 and MAE use).
    #[arg(long, requires = "init")]
    pub heads: Option<usize>,
    /// Images to embed: any dataset `train --data` takes (default: the run's data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which split: train, test (val/ or t10k), or all (train then test).
    #[arg(long, value_enum, default_value_t = SplitArg::All)]
    pub split: SplitArg,
    /// Features file, .npy (float32 [images, dim]) or .safetensors ("features"); a .csv beside
    /// it names each row's image and label. Default: <run>/embeddings.npy.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct NeighborsArgs {
    /// Features written by `selfsup embed` (.npy or .safetensors, with its .csv beside it).
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Neighbours per image.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Cosine similarity (of mean-centred features) at which two images count as near-duplicates.
    #[arg(long, default_value_t = 0.95)]
    pub threshold: f32,
    /// Query images drawn on the contact sheet (spread over the file).
    #[arg(long, default_value_t = 8)]
    pub queries: usize,
    /// The dataset the embeddings came from, to draw images that are not plain files (IDX / CIFAR
    /// positions, WebDataset members).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder (default: beside the embeddings, <name>-neighbors/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}
