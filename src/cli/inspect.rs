//! The commands that read a trained (or imported) encoder: embed, export, eval, diagnose,
//! finetune, reconstruct, attention.

use std::path::Path;

use selfsup::attention::{AttentionImages, attention_run};
use selfsup::data::Splits;
use selfsup::error::{Error, Result};
use selfsup::inspect::{Features, diagnose_run, evaluate_run, finetune_run, reconstruct_run};
use selfsup::run::Run;

use super::args::*;
use super::print_json;
use super::progress;
use super::tables::{diagnose_table, eval_table, finetune_table};

/// Data for a run's encoder: `data` when given (resized to the run's image size), else the run's
/// own.
pub(super) fn labelled_data(run: &Run, data: Option<&Path>) -> Result<Splits> {
    match data {
        Some(path) => run.data_at(path),
        None => run.data(),
    }
}

/// Pretrained weights for `--init`; what was left out or changed is said on stderr.
fn import(
    file: &Path,
    heads: Option<usize>,
    device: &burn::tensor::Device,
) -> Result<selfsup::weights::Imported> {
    let imported = selfsup::weights::import_encoder(file, None, heads, device)?;
    for note in &imported.notes {
        eprintln!("{}: {note}", file.display());
    }
    Ok(imported)
}

/// `selfsup embed`: a run's (or an imported encoder's) features of a split to `.npy`, with an
/// index of the images.
pub fn embed_command(args: EmbedArgs) -> Result<()> {
    let bar = progress::image_bar(!args.json);
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let split = args.split.into();
    let report = match (&args.run, &args.init) {
        (Some(run_dir), _) => {
            let run = Run::open(run_dir)?;
            let splits = labelled_data(&run, args.data.as_deref())?;
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| run.root().join("embeddings.npy"));
            selfsup::inspect::embed_run(&run, &splits, split, &out, args.device.into(), progress)?
        }
        (None, Some(file)) => {
            let device = selfsup::device::device(args.device.into())?;
            let imported = import(file, args.heads, &device)?;
            let data = args.data.as_deref().expect("clap requires --data");
            let splits = imported.load_data(data)?;
            let input = selfsup::inspect::embed::EncoderInput {
                encoder: &imported.encoder,
                normalize: &imported.normalize,
                side: imported.shape.side,
                device: &device,
            };
            let out = args.out.as_deref().expect("clap requires --out");
            selfsup::inspect::embed::embed(&input, &splits, split, out, progress)?
        }
        (None, None) => unreachable!("clap requires --run or --init"),
    };
    bar.finish_and_clear();
    if args.json {
        print_json(&report);
    } else {
        println!(
            "Embedded {} images ({}-d) in {:.1} s: {} and {}",
            report.images,
            report.dim,
            report.seconds,
            report.features.display(),
            report.index.display()
        );
        if !report.skipped.is_empty() {
            println!("  skipped {} unreadable image(s):", report.skipped.len());
            for c in report.skipped.iter().take(5) {
                println!("    {}: {}", c.name, c.reason);
            }
        }
    }
    Ok(())
}

/// `selfsup export`: a run's encoder as safetensors with PyTorch names and a card.
pub fn export_command(args: ExportArgs) -> Result<()> {
    let WeightsFormat::Safetensors = args.format;
    let run = Run::open(&args.run)?;
    let card = selfsup::weights::export_run(&run, args.names.map(Into::into), args.out.as_deref())?;
    if args.json {
        print_json(&card);
    } else {
        let dir = args
            .out
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(run.root());
        let weights = dir.join(&card.weights);
        println!(
            "Wrote {} ({} tensors, {} names, {}) and its card {}",
            weights.display(),
            card.tensors,
            card.names,
            card.architecture,
            selfsup::weights::card_path(&weights).display()
        );
        println!("  PyTorch model     {}", card.constructor);
        for change in &card.changes {
            println!("                    {change}");
        }
        println!(
            "  inputs            {} channel(s), {} px, (x/255 - mean) / std with mean {:?}, std {:?}",
            card.in_channels, card.image_size, card.mean, card.std
        );
        println!("  features          {}-d", card.feature_dim);
    }
    Ok(())
}

/// `selfsup eval`: kNN and linear-probe accuracy of frozen features against the baselines.
pub fn eval_command(args: EvalArgs) -> Result<()> {
    let quiet = args.json;
    let progress = |msg: &str| {
        if !quiet {
            eprintln!("{msg}…");
        }
    };
    let report = match (&args.run, &args.init) {
        (Some(run_dir), _) => {
            let run = Run::open(run_dir)?;
            let splits = labelled_data(&run, args.data.as_deref())?;
            evaluate_run(&run, &splits, args.device.into(), progress)?
        }
        (None, Some(file)) => {
            let device = selfsup::device::device(args.device.into())?;
            let imported = import(file, args.heads, &device)?;
            let splits = imported.load_data(args.data.as_deref().expect("clap requires --data"))?;
            selfsup::inspect::evaluate_imported(&imported, &splits, &device, progress)?
        }
        (None, None) => unreachable!("clap requires --run or --init"),
    };
    if args.json {
        print_json(&report);
    } else {
        print!("{}", eval_table(&report));
    }
    Ok(())
}

/// `selfsup diagnose`: collapse statistics and the singular-value spectrum.
pub fn diagnose_command(args: DiagnoseArgs) -> Result<()> {
    let run = Run::open(&args.run)?;
    let which = if args.encoder {
        Features::Encoder
    } else {
        Features::Projector
    };
    let stats = diagnose_run(&run, &run.data()?, args.device.into(), args.samples, which)?;
    if args.json {
        print_json(&stats);
    } else {
        print!("{}", diagnose_table(&stats));
        let png = match which {
            Features::Projector => run.dir.spectrum_path(),
            Features::Encoder => run.root().join("spectrum-encoder.png"),
        };
        println!("  spectrum plot     {}", png.display());
    }
    Ok(())
}

/// `selfsup finetune`: the encoder fine-tuned end to end on a labelled fraction.
pub fn finetune_command(args: FinetuneArgs) -> Result<()> {
    let bar = progress::stage_bar(!args.json);
    let progress = |what: &str, done: usize, total: usize| {
        if bar.message() != what {
            bar.reset();
            bar.set_message(what.to_string());
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let r = match (&args.run, &args.init) {
        (Some(run_dir), _) => {
            let run = Run::open(run_dir)?;
            let splits = labelled_data(&run, args.data.as_deref())?;
            finetune_run(
                &run,
                &splits,
                args.device.into(),
                args.fraction,
                args.epochs,
                progress,
            )?
        }
        (None, Some(file)) => {
            let data = args.data.as_deref().expect("clap requires --data");
            let (report, notes) = selfsup::inspect::finetune::finetune_imported(
                file,
                args.heads,
                data,
                args.device.into(),
                args.fraction,
                args.epochs,
                progress,
            )?;
            for note in &notes {
                eprintln!("{}: {note}", file.display());
            }
            report
        }
        (None, None) => unreachable!("clap requires --run or --init"),
    };
    bar.finish_and_clear();
    if args.json {
        print_json(&r);
    } else {
        print!("{}", finetune_table(&r));
    }
    Ok(())
}

/// `selfsup reconstruct`: masked-image or tokenizer reconstructions as a picture.
pub fn reconstruct_command(args: ReconstructArgs) -> Result<()> {
    let run = Run::open(&args.run)?;
    if args.images == 0 {
        return Err(Error::Usage("--images must be at least 1".into()));
    }
    let r = reconstruct_run(
        &run,
        args.device.into(),
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

/// `selfsup attention`: a ViT's attention maps over images as a picture.
pub fn attention_command(args: AttentionArgs) -> Result<()> {
    let run = Run::open(&args.run)?;
    if args.image_files.is_empty() && args.images == 0 {
        return Err(Error::Usage("--images must be at least 1".into()));
    }
    let images = if args.image_files.is_empty() {
        AttentionImages::HeldOut(args.images)
    } else {
        AttentionImages::Files(&args.image_files)
    };
    let r = attention_run(&run, args.device.into(), images, args.out.as_deref())?;
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
