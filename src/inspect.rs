//! Looking inside a finished run: collapse diagnostics on held-out embeddings, evaluation.

use burn::tensor::Device;

use crate::data::{ImageSet, Splits};
use crate::device::{DeviceChoice, device};
use crate::diagnose::codebook::CodebookUsage;
use crate::diagnose::distillation::DistillationStats;
use crate::diagnose::{self, CollapseStats};
use crate::error::{Error, Result};
use crate::eval::{self, EvalReport, features};
use crate::method::Method;
use crate::run::{RunDir, load_module, write_json};
use crate::train::checkpoint;

/// The images diagnostics look at: the held-out split when there is one, up to `samples`.
fn diagnose_images(splits: Splits, samples: usize) -> ImageSet {
    splits.test.unwrap_or(splits.train).take(samples)
}

/// Which features `diagnose` looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Features {
    /// The projector output the loss sees (where collapse starts).
    Projector,
    /// The backbone's representation: pooled ResNet features, or the ViT's CLS (or mean) token.
    Encoder,
}

/// The run's whole method from its latest checkpoint, in eval mode.
fn load_method<M: Method>(run: &RunDir, device: &Device) -> Result<M> {
    let recipe = run.recipe()?;
    let info = run.info()?;
    let dir = checkpoint::latest(run).ok_or_else(|| {
        Error::data(
            &run.root,
            "no checkpoint in this run; train it first (or --resume it)",
        )
    })?;
    let method = load_module(
        M::init(&recipe, info.shape(), device)?,
        &dir.join("model.bpk"),
    )?;
    Ok(method.valid())
}

/// A run's embeddings of the diagnosed images, with what its method adds to them.
struct Embedded {
    values: Vec<f32>,
    dim: usize,
    centred: bool,
    codebook: Option<CodebookUsage>,
    distillation: Option<DistillationStats>,
}

fn embed_with<M: Method>(
    run: &RunDir,
    set: &ImageSet,
    device: &Device,
    which: Features,
) -> Result<Embedded> {
    let info = run.info()?;
    let method = load_method::<M>(run, device)?;
    let mut codes: Vec<i64> = Vec::new();
    let mut size = 0;
    let (mut teacher, mut student, mut prototypes) = (Vec::new(), Vec::new(), 0);
    for start in (0..set.len()).step_by(256) {
        let batch = features::image_batch(
            set,
            start..(start + 256).min(set.len()),
            &info.normalize(),
            device,
        );
        if let Some(c) = method.codes(batch.clone()) {
            size = c.size;
            codes.extend(crate::host::to_i64(c.ids));
        }
        if let Some(d) = method.distributions(batch) {
            prototypes = d.teacher.dims()[1];
            teacher.extend(crate::host::to_f32(d.teacher));
            student.extend(crate::host::to_f32(d.student));
        }
        if size == 0 && prototypes == 0 {
            break;
        }
    }
    let codebook = (size > 0).then(|| CodebookUsage::of(&codes, size));
    let distillation = (prototypes > 0)
        .then(|| crate::diagnose::distillation::analyze(&teacher, &student, set.len(), prototypes));
    let f = features::extract(set, &info.normalize(), device, 256, |x| match which {
        Features::Projector => method.embed(x),
        Features::Encoder => method.encoder().forward(x),
    });
    // A ViT's own features carry the offset every token shares, whichever method trained it.
    let centred =
        M::CENTRED_DIAGNOSTICS || (which == Features::Encoder && method.encoder().vit().is_some());
    Ok(Embedded {
        values: f.data,
        dim: f.dim,
        centred,
        codebook,
        distillation,
    })
}

/// Collapse statistics of the run's embeddings on up to `samples` held-out images; writes
/// `diagnose.json` and `spectrum.png` (projector) or `diagnose-encoder.json` and
/// `spectrum-encoder.png` (encoder) into the run.
pub fn diagnose_run(
    run: &RunDir,
    choice: DeviceChoice,
    samples: usize,
    which: Features,
) -> Result<CollapseStats> {
    let recipe = run.recipe()?;
    let device = device(choice)?;
    let splits = crate::data::load(recipe.data_path().as_deref(), recipe.image_size())?;
    let set = diagnose_images(splits, samples.max(2));
    if set.len() < 2 {
        return Err(Error::Usage("diagnostics need at least 2 images".into()));
    }
    let e =
        crate::with_method!(recipe.method.name, M => embed_with::<M>(run, &set, &device, which)?);
    let mut stats = diagnose::analyze_for(&e.values, set.len(), e.dim, e.centred);
    stats.codebook = e.codebook;
    stats.distillation = e.distillation;
    let (json, png, label) = match which {
        Features::Projector => (run.diagnose_path(), run.spectrum_path(), "EMBEDDING"),
        Features::Encoder => (
            run.root.join("diagnose-encoder.json"),
            run.root.join("spectrum-encoder.png"),
            "ENCODER FEATURE",
        ),
    };
    write_json(&json, &stats)?;
    diagnose::plot::write_spectrum(
        &stats,
        &format!(
            "{} {label} COVARIANCE EIGENVALUES (LOG10, RELATIVE TO THE LARGEST)",
            recipe.method.name
        ),
        &png,
    )?;
    Ok(stats)
}

/// kNN / linear probe of the run's encoder beside both baselines; writes `eval.json`.
pub fn evaluate_run(
    run: &RunDir,
    data: Option<&std::path::Path>,
    choice: DeviceChoice,
    progress: impl FnMut(&str),
) -> Result<EvalReport> {
    let recipe = run.recipe()?;
    let info = run.info()?;
    let device = device(choice)?;
    let splits = load_eval_splits(&recipe, &info, data)?;
    let encoder = run.encoder(&device)?;
    let report = eval::evaluate(
        &encoder,
        &recipe,
        &splits,
        &info.normalize(),
        &device,
        progress,
    )?;
    write_json(&run.eval_path(), &report)?;
    Ok(report)
}

/// The labelled data to evaluate a run on (`data`, else the run's), checked against what its
/// encoder was trained on.
fn load_eval_splits(
    recipe: &crate::recipe::Recipe,
    info: &crate::run::RunInfo,
    data: Option<&std::path::Path>,
) -> Result<Splits> {
    let path = data.map(|p| p.to_path_buf()).or_else(|| recipe.data_path());
    let splits = crate::data::load(path.as_deref(), recipe.image_size())?;
    if splits.train.channels != info.channels {
        return Err(Error::Usage(format!(
            "{}: images have {} channel(s) but the encoder was trained on {}",
            splits.description, splits.train.channels, info.channels
        )));
    }
    if recipe.model.is_vit() && splits.train.height != info.image_side {
        return Err(Error::Usage(format!(
            "{}: images are {} px but this ViT was trained on {} px; set data.image_size in the run's recipe.toml or pass data of that size",
            splits.description, splits.train.height, info.image_side
        )));
    }
    Ok(splits)
}

/// What `selfsup reconstruct` made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReconstructionReport {
    pub picture: std::path::PathBuf,
    pub images: usize,
    /// Fraction of patches masked (0 for a tokenizer, which masks nothing).
    pub mask_ratio: f64,
    /// Mean squared error of the predicted pixels (in [0, 1]) over masked patches, or over the
    /// whole image for a tokenizer.
    pub masked_pixel_mse: f64,
}

/// Per image, per patch: masked or not.
type Masks = Vec<Vec<bool>>;

fn reconstruct_with<M: Method>(
    run: &RunDir,
    set: &ImageSet,
    device: &Device,
    step: usize,
) -> Result<Option<(Masks, Vec<f32>)>> {
    let info = run.info()?;
    let method = load_method::<M>(run, device)?;
    let images = features::image_batch(set, 0..set.len(), &info.normalize(), device);
    Ok(method
        .reconstruct(images, step)
        .map(|r| (r.masks, crate::host::to_f32(r.prediction))))
}

/// Draws original, masked input and prediction of `count` held-out images into a PNG grid (the
/// run's `reconstruction.png` unless `out` is given); masks are drawn as at training step `step`.
pub fn reconstruct_run(
    run: &RunDir,
    choice: DeviceChoice,
    count: usize,
    step: usize,
    out: Option<&std::path::Path>,
) -> Result<ReconstructionReport> {
    use crate::diagnose::grid::{Column, write_grid};
    let recipe = run.recipe()?;
    let info = run.info()?;
    let device = device(choice)?;
    let splits = crate::data::load(recipe.data_path().as_deref(), recipe.image_size())?;
    let set = diagnose_images(splits, count.max(1));
    let name = recipe.method.name;
    let Some((masks, predicted)) =
        crate::with_method!(name, M => reconstruct_with::<M>(run, &set, &device, step)?)
    else {
        return Err(Error::Usage(format!(
            "{name} does not reconstruct images; `selfsup reconstruct` draws mae, simmim, beit and vq-tokenizer runs"
        )));
    };
    let (c, side) = (info.channels, info.image_side);
    let per_image = c * side * side;
    let norm = info.normalize();
    let to_pixels = |values: &[f32]| -> Vec<f32> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| v * norm.std[i / (side * side)] + norm.mean[i / (side * side)])
            .collect()
    };
    let originals: Vec<Vec<f32>> = (0..set.len())
        .map(|i| set.image(i).iter().map(|&v| v as f32 / 255.0).collect())
        .collect();
    let predictions: Vec<Vec<f32>> = predicted.chunks_exact(per_image).map(to_pixels).collect();
    let patch = recipe.model.patch_size.max(1);
    let grid = side / patch;
    let in_mask = |m: &[bool], i: usize| {
        m.is_empty() || m[((i % (side * side)) / side / patch) * grid + (i % side) / patch]
    };
    let (mut err, mut count_px) = (0.0f64, 0usize);
    for ((o, p), m) in originals
        .iter()
        .zip(&predictions)
        .zip(masks.iter().chain(std::iter::repeat(&Vec::new())))
    {
        for i in 0..per_image {
            if in_mask(m, i) {
                err += ((o[i] - p[i].clamp(0.0, 1.0)) as f64).powi(2);
                count_px += 1;
            }
        }
    }
    let mut columns = vec![Column {
        title: "original".into(),
        images: originals.clone(),
        masked: Vec::new(),
    }];
    let mask_ratio = if masks.is_empty() {
        columns.push(Column {
            title: "decoded codes".into(),
            images: predictions,
            masked: Vec::new(),
        });
        0.0
    } else {
        let pasted: Vec<Vec<f32>> = originals
            .iter()
            .zip(&predictions)
            .zip(&masks)
            .map(|((o, p), m)| {
                (0..per_image)
                    .map(|i| if in_mask(m, i) { p[i] } else { o[i] })
                    .collect()
            })
            .collect();
        columns.push(Column {
            title: "masked input".into(),
            images: originals.clone(),
            masked: masks.clone(),
        });
        columns.push(Column {
            title: "prediction".into(),
            images: predictions,
            masked: Vec::new(),
        });
        columns.push(Column {
            title: "pred and visible".into(),
            images: pasted,
            masked: Vec::new(),
        });
        let masked: usize = masks.iter().map(|m| m.iter().filter(|&&b| b).count()).sum();
        masked as f64 / (masks.len() * masks[0].len()) as f64
    };
    let picture = out
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| run.root.join("reconstruction.png"));
    write_grid(&columns, c, side, patch, &picture)?;
    Ok(ReconstructionReport {
        picture,
        images: set.len(),
        mask_ratio,
        masked_pixel_mse: err / count_px.max(1) as f64,
    })
}

/// Fine-tunes the run's encoder and a random-init one of the same architecture on the same
/// labelled fraction; writes `finetune.json`. `fraction` / `epochs` override the recipe's.
pub fn finetune_run(
    run: &RunDir,
    data: Option<&std::path::Path>,
    choice: DeviceChoice,
    fraction: Option<f64>,
    epochs: Option<usize>,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<eval::finetune::FinetuneReport> {
    use eval::finetune::{
        FinetuneConfig, FinetuneData, FinetuneReport, finetune_top1, labelled_subset,
    };
    let mut recipe = run.recipe()?;
    if let Some(f) = fraction {
        recipe.eval.finetune_fraction = f;
    }
    if let Some(e) = epochs {
        recipe.eval.finetune_epochs = e;
    }
    recipe.validate()?;
    let info = run.info()?;
    let device = crate::device::train_device(choice)?;
    let splits = load_eval_splits(&recipe, &info, data)?;
    let (train, test) = eval::labelled_splits(&splits, &recipe.eval)?;
    let e = &recipe.eval;
    let seed = recipe.train.seed;
    let ids = labelled_subset(&train, e.finetune_fraction, seed);
    let config = FinetuneConfig {
        fraction: e.finetune_fraction,
        epochs: e.finetune_epochs,
        base_lr: e.finetune_lr,
        weight_decay: e.finetune_weight_decay,
        batch_size: e.finetune_batch_size,
        seed,
    };
    let normalize = info.normalize();
    let data = FinetuneData {
        train: &train,
        ids: &ids,
        test: &test,
        normalize: &normalize,
    };
    let pretrained = run.encoder(&device)?;
    let top1 = finetune_top1(pretrained, &data, &config, &device, |d, t| {
        progress("fine-tuning the trained encoder", d, t)
    });
    device.seed(seed.wrapping_add(1));
    let random = recipe.model.init(info.shape(), &device);
    let random_init_top1 = finetune_top1(random, &data, &config, &device, |d, t| {
        progress("fine-tuning a random-init encoder", d, t)
    });
    let report = FinetuneReport {
        top1,
        random_init_top1,
        beats_random_init: top1 > random_init_top1,
        labelled_images: ids.len(),
        fraction: e.finetune_fraction,
        epochs: e.finetune_epochs,
        test_images: test.len(),
        data: splits.description.clone(),
    };
    write_json(&run.root.join("finetune.json"), &report)?;
    Ok(report)
}
