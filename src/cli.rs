//! The command-line layer: parses arguments, calls the library, prints tables or JSON.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::attention::{AttentionImages, attention_run};
use crate::catalog::FAMILIES;
use crate::device::DeviceChoice;
use crate::diagnose::CollapseStats;
use crate::diagnose::stats::{COMPLETE_COLLAPSE_STD_RATIO, DIMENSIONAL_COLLAPSE_RANK_FRACTION};
use crate::error::Result;
use crate::eval::EvalReport;
use crate::eval::finetune::FinetuneReport;
use crate::inspect::{Features, diagnose_run, evaluate_run, finetune_run, reconstruct_run};
use crate::method::MethodName;
use crate::recipe::{Overrides, Recipe};
use crate::run::RunDir;
use crate::train::{TrainOptions, train};

#[derive(Parser, Debug)]
#[command(
    name = "selfsup",
    version,
    about = "Self-supervised pretraining of vision encoders: train, evaluate, diagnose collapse.",
    after_help = "Quick start (bundled Fashion-MNIST subset):\n  selfsup train --method byol --out runs/byol\n  selfsup eval --run runs/byol\n  selfsup diagnose --run runs/byol"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pretrain an encoder without labels, then diagnose it and evaluate it against baselines.
    #[command(
        after_help = "Examples:\n  selfsup train --method byol --out runs/byol\n  selfsup train --method simsiam --data /usr/share/datasets/fashion-mnist --epochs 10 --out runs/simsiam\n  selfsup train --method simsiam --set method.stop_gradient=false --out runs/collapse\n  selfsup train --method moco-v3 --set model.arch=vit-tiny --set data.image_size=32 --out runs/moco-v3-vit\n  selfsup train --out runs/byol --resume\n  selfsup train --method mae --out runs/mae\n  selfsup train --method vq-tokenizer --out runs/vq-tokenizer && selfsup train --method beit --out runs/beit\n  selfsup train --method dino --out runs/dino && selfsup attention --run runs/dino\n  selfsup train --method dino --set method.centering=none --out runs/dino-collapse\n\nMethods: simclr, moco-v1, moco-v2, moco-v3, byol, simsiam, barlow-twins, vicreg, mae, simmim,\nbeit (after vq-tokenizer), dino, ibot, dinov2."
    )]
    Train(TrainArgs),
    /// kNN and linear-probe accuracy of a run's frozen encoder, beside a random-init encoder and raw pixels.
    #[command(after_help = "Example:\n  selfsup eval --run runs/byol --json")]
    Eval(EvalArgs),
    /// Collapse diagnostics of a run: embedding std, singular-value spectrum, effective rank, verdict.
    #[command(
        after_help = "Examples:\n  selfsup diagnose --run runs/byol\n  selfsup diagnose --run runs/moco-v3-vit --encoder   # the CLS-token features themselves\n\nVerdicts: complete_collapse when the RMS per-dimension std of the L2-normalised\nembeddings is below 0.1 × the healthy 1/√d (total variance < 0.01); dimensional_collapse\nwhen the effective rank (RankMe) is below max(2, 0.05·d); healthy otherwise."
    )]
    Diagnose(DiagnoseArgs),
    /// Fine-tune a run's encoder + a linear head on a fraction of the labels, beside the same from random init.
    #[command(
        after_help = "Examples:\n  selfsup finetune --run runs/mae\n  selfsup finetune --run runs/mae --fraction 0.01 --epochs 30 --json\n\nEvery weight trains (AdamW, one warmup epoch, cosine; random flips), unlike the linear probe of\n`selfsup eval`, which freezes the encoder. Both runs use the same labelled images, order and head\ninitialisation; the only difference is the encoder's starting point. Settings: eval.finetune_*\nin the run's recipe.toml."
    )]
    Finetune(FinetuneArgs),
    /// Masked image models: a PNG grid of held-out images, their masked input and the model's prediction.
    #[command(
        after_help = "Examples:\n  selfsup reconstruct --run runs/mae\n  selfsup reconstruct --run runs/simmim --images 16 --seed 3 --out simmim.png\n\nColumns: original | masked input (masked patches in blue) | prediction | prediction and the\nvisible patches pasted back (MAE puts no loss on visible patches, so its raw prediction there is\narbitrary). An MAE trained with norm_pix_loss predicts standardised patches;\nthey are drawn at the original patch's mean and spread, as MAE's own visualisation does.\nBEiT predicts codes, not pixels: its prediction is the tokenizer's decoding of the codes it\npredicts. For a vq-tokenizer run: original | the image decoded from its codes."
    )]
    Reconstruct(ReconstructArgs),
    /// ViT runs: the last block's [CLS] attention per head, drawn as heat maps over images (a PNG).
    #[command(
        after_help = "Examples:\n  selfsup attention --run runs/dino\n  selfsup attention --run runs/dino --image shirt.png --image boot.jpg --out maps.png\n\nColumns: the image | the mean over heads | each head. Each map is scaled to its own maximum\n(bright = where [CLS] looks most) and drawn per patch. Image files are resized to the run's\nimage size and channels. --json adds each map (rescaled to sum to 1) and their mean entropy\nrelative to a uniform map (1 = looks everywhere alike)."
    )]
    Attention(AttentionArgs),
    /// The method families: which are implemented, what prevents collapse, whether negatives are needed.
    #[command(after_help = "Example:\n  selfsup methods --json")]
    Methods(MethodsArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Method to train (see `selfsup methods`).
    #[arg(long)]
    pub method: Option<String>,
    /// Recipe file (TOML); values override the method's built-in recipe.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Dataset folder: IDX (MNIST/Fashion-MNIST), CIFAR binary, or images. Default: bundled subset.
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
    /// Continue the run in --out from its last checkpoint, exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Skip the kNN / linear-probe evaluation after training.
    #[arg(long)]
    pub no_eval: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory written by `selfsup train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Labelled data to evaluate on (default: the run's data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
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
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Run directory written by `selfsup train` (any method).
    #[arg(long)]
    pub run: PathBuf,
    /// Labelled data (default: the run's data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Fraction of the labelled training images to use (default: eval.finetune_fraction, 0.1).
    #[arg(long)]
    pub fraction: Option<f64>,
    /// Passes over those images (default: eval.finetune_epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
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
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
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
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MethodsArgs {
    #[arg(long)]
    pub json: bool,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

pub fn eval_table(r: &EvalReport) -> String {
    let mut s = format!(
        "Evaluation on {} ({} train / {} test images, kNN k={} T={}, feature dim {})\n\n",
        r.data, r.train_images, r.test_images, r.knn_k, r.knn_temperature, r.feature_dim
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "features", "kNN top1", "linear top1"
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "trained encoder",
        pct(r.knn_top1),
        pct(r.linear_top1)
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "random-init encoder",
        pct(r.baselines.random_init.knn_top1),
        pct(r.baselines.random_init.linear_top1)
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "raw pixels",
        pct(r.baselines.pixels.knn_top1),
        pct(r.baselines.pixels.linear_top1)
    );
    s += "\n";
    s += match (r.beats_random_init, r.beats_pixels) {
        (true, true) => "  The encoder beats both baselines.\n",
        (true, false) => {
            "  The encoder beats the random-init encoder (it learned something); raw pixels remain the higher bar.\n"
        }
        (false, _) => {
            "  The encoder does NOT beat a random-init encoder on both metrics: train longer, tune the recipe, or run `selfsup diagnose`.\n"
        }
    };
    s
}

pub fn finetune_table(r: &FinetuneReport) -> String {
    let mut s = format!(
        "Fine-tuning on {} ({} labelled images = {} of the training split, {} epochs; {} test images)\n\n",
        r.data,
        r.labelled_images,
        pct(r.fraction),
        r.epochs,
        r.test_images
    );
    s += &format!("  {:<28} {:>10}\n", "initialisation", "top-1");
    s += &format!("  {:<28} {:>10}\n", "trained encoder", pct(r.top1));
    s += &format!(
        "  {:<28} {:>10}\n",
        "random-init encoder",
        pct(r.random_init_top1)
    );
    s += if r.beats_random_init {
        "\n  Pretraining helps: the trained encoder fine-tunes better than a random initialisation.\n"
    } else {
        "\n  Pretraining does NOT help here: a random initialisation fine-tunes as well or better.\n"
    };
    s
}

pub fn diagnose_table(d: &CollapseStats) -> String {
    let mut s = format!(
        "Collapse diagnostics ({} held-out embeddings, dim {})\n\n",
        d.samples, d.dim
    );
    s += &format!(
        "  embedding std     {:.4}  (healthy ≈ 1/√d = {:.4}; RMS ratio {:.2})\n",
        d.embedding_std,
        d.healthy_std,
        d.std_ratio()
    );
    if let Some(spread) = d.spread {
        s += &format!(
            "  centred           the features' shared offset was removed first (ViT tokens carry one); spread around it {:.3} of their norm\n",
            spread
        );
    }
    s += &format!("  effective rank    {:.1} of {}\n", d.effective_rank, d.dim);
    let top: Vec<String> = d
        .singular_values
        .iter()
        .take(8)
        .map(|v| format!("{v:.2e}"))
        .collect();
    s += &format!("  top eigenvalues   {}\n", top.join(" "));
    s += &format!(
        "  verdict           {}: {}\n",
        d.verdict.as_str(),
        d.verdict.explain()
    );
    if let Some(c) = &d.codebook {
        s += &format!("  codebook          {}\n", c.describe());
    }
    if let Some(t) = &d.distillation {
        s += &format!(
            "  teacher           {}\n                    {}\n",
            t.describe(),
            t.verdict.explain()
        );
    }
    s += &format!(
        "  (complete_collapse: RMS std ratio < {COMPLETE_COLLAPSE_STD_RATIO}; dimensional_collapse: effective rank < max(2, {DIMENSIONAL_COLLAPSE_RANK_FRACTION}·d))\n"
    );
    s
}

fn methods_table() -> String {
    let mut s = format!(
        "  {:<13} {:<14} {:<22} {:<10} {}\n",
        "method", "--method", "family", "negatives", "prevents collapse with"
    );
    for f in FAMILIES {
        s += &format!(
            "  {:<13} {:<14} {:<22} {:<10} {}{}\n",
            f.method,
            f.cli_name,
            f.family,
            if f.negatives { "yes" } else { "no" },
            f.prevents_collapse,
            if f.implemented { "" } else { "  (planned)" }
        );
    }
    s
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train_command(args),
        Command::Eval(args) => {
            let run = RunDir::open(&args.run)?;
            let quiet = args.json;
            let report = evaluate_run(&run, args.data.as_deref(), args.device, |msg| {
                if !quiet {
                    eprintln!("{msg}…");
                }
            })?;
            if args.json {
                print_json(&report);
            } else {
                print!("{}", eval_table(&report));
            }
            Ok(())
        }
        Command::Diagnose(args) => {
            let run = RunDir::open(&args.run)?;
            let which = if args.encoder {
                Features::Encoder
            } else {
                Features::Projector
            };
            let stats = diagnose_run(&run, args.device, args.samples, which)?;
            if args.json {
                print_json(&stats);
            } else {
                print!("{}", diagnose_table(&stats));
                let png = match which {
                    Features::Projector => run.spectrum_path(),
                    Features::Encoder => run.root.join("spectrum-encoder.png"),
                };
                println!("  spectrum plot     {}", png.display());
            }
            Ok(())
        }
        Command::Finetune(args) => {
            let run = RunDir::open(&args.run)?;
            let bar = if args.json {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new(0)
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} steps  ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            let r = finetune_run(
                &run,
                args.data.as_deref(),
                args.device,
                args.fraction,
                args.epochs,
                |what, done, total| {
                    if bar.message() != what {
                        bar.reset();
                        bar.set_message(what.to_string());
                    }
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                },
            )?;
            bar.finish_and_clear();
            if args.json {
                print_json(&r);
            } else {
                print!("{}", finetune_table(&r));
            }
            Ok(())
        }
        Command::Reconstruct(args) => {
            let run = RunDir::open(&args.run)?;
            if args.images == 0 {
                return Err(crate::error::Error::Usage(
                    "--images must be at least 1".into(),
                ));
            }
            let r = reconstruct_run(
                &run,
                args.device,
                args.images,
                args.seed,
                args.out.as_deref(),
            )?;
            if args.json {
                print_json(&r);
            } else {
                if r.mask_ratio > 0.0 {
                    println!(
                        "{} images, {:.0}% of patches masked; mean squared pixel error on masked patches {:.4} (pixels in [0, 1])",
                        r.images,
                        100.0 * r.mask_ratio,
                        r.masked_pixel_mse
                    );
                } else {
                    println!(
                        "{} images decoded from their codes; mean squared pixel error {:.4} (pixels in [0, 1])",
                        r.images, r.masked_pixel_mse
                    );
                }
                println!("  picture  {}", r.picture.display());
            }
            Ok(())
        }
        Command::Attention(args) => {
            let run = RunDir::open(&args.run)?;
            if args.image_files.is_empty() && args.images == 0 {
                return Err(crate::error::Error::Usage(
                    "--images must be at least 1".into(),
                ));
            }
            let images = if args.image_files.is_empty() {
                AttentionImages::HeldOut(args.images)
            } else {
                AttentionImages::Files(&args.image_files)
            };
            let r = attention_run(&run, args.device, images, args.out.as_deref())?;
            if args.json {
                print_json(&r);
            } else {
                println!(
                    "{} images, {} heads over a {}×{} patch grid; mean attention entropy {:.2} of a uniform map's",
                    r.images, r.heads, r.grid, r.grid, r.normalized_entropy
                );
                println!("  picture  {}", r.picture.display());
            }
            Ok(())
        }
        Command::Methods(args) => {
            if args.json {
                let rows: Vec<serde_json::Value> = FAMILIES
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "method": f.method, "cli_name": f.cli_name, "family": f.family,
                            "prevents_collapse": f.prevents_collapse, "negatives": f.negatives,
                            "implemented": f.implemented,
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                print!("{}", methods_table());
            }
            Ok(())
        }
    }
}

fn train_command(args: TrainArgs) -> Result<()> {
    let method = args.method.as_deref().map(MethodName::parse).transpose()?;
    let recipe = if args.resume {
        // The run's own resolved recipe is authoritative; only the epoch count may grow.
        let changed: Vec<&str> = [
            ("--recipe", args.recipe.is_some()),
            ("--data", args.data.is_some()),
            ("--batch-size", args.batch_size.is_some()),
            ("--seed", args.seed.is_some()),
            ("--set", !args.sets.is_empty()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect();
        if !changed.is_empty() {
            return Err(crate::error::Error::Usage(format!(
                "--resume continues with the run's own recipe ({}); drop {} (only --epochs may change)",
                RunDir::new(&args.out).recipe_path().display(),
                changed.join(", ")
            )));
        }
        let mut recipe = RunDir::open(&args.out)?.recipe()?;
        if let Some(m) = method
            && m != recipe.method.name
        {
            return Err(crate::error::Error::Usage(format!(
                "--resume: {} was trained with {}, not {m}",
                args.out.display(),
                recipe.method.name
            )));
        }
        if let Some(epochs) = args.epochs {
            recipe.train.epochs = epochs;
            recipe.validate()?;
        }
        recipe
    } else {
        Recipe::resolve(&Overrides {
            method,
            recipe_file: args.recipe.clone(),
            data: args.data.clone(),
            epochs: args.epochs,
            batch_size: args.batch_size,
            seed: args.seed,
            sets: args.sets.clone(),
        })?
    };
    let summary = train(
        &recipe,
        &TrainOptions {
            out: args.out.clone(),
            resume: args.resume,
            device: args.device,
            progress: !args.json,
        },
    )?;
    let run = RunDir::open(&args.out)?;
    let stats = diagnose_run(&run, args.device, 2000, Features::Projector)?;
    let report = if args.no_eval {
        None
    } else {
        let quiet = args.json;
        Some(evaluate_run(&run, None, args.device, |msg| {
            if !quiet {
                eprintln!("{msg}…");
            }
        })?)
    };
    crate::report::write(&run, &recipe, &summary, &stats, report.as_ref())?;
    if args.json {
        print_json(&serde_json::json!({
            "train": summary, "diagnose": stats, "eval": report,
        }));
    } else {
        println!(
            "Trained {} for {} epochs ({} steps) in {:.0} s ({:.0} img/s); final loss {:.4}",
            summary.method,
            summary.epochs,
            summary.steps,
            summary.seconds,
            summary.images_per_s,
            summary.final_loss
        );
        println!(
            "Waited for data {:.1}% of the time. Run directory: {}\n",
            100.0 * summary.data_wait_fraction,
            summary.run_dir.display()
        );
        print!("{}", diagnose_table(&stats));
        println!("  spectrum plot     {}\n", run.spectrum_path().display());
        if let Some(r) = &report {
            print!("{}", eval_table(r));
        }
    }
    Ok(())
}
