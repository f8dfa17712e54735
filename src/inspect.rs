//! Looking inside a finished run: collapse diagnostics on held-out embeddings, evaluation.

use burn::tensor::Device;

use crate::data::{ImageSet, Splits};
use crate::device::{DeviceChoice, device};
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

fn embed_with<M: Method>(
    run: &RunDir,
    set: &ImageSet,
    device: &Device,
    which: Features,
) -> Result<(Vec<f32>, usize, bool)> {
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
    let method = method.valid();
    let f = features::extract(set, &info.normalize(), device, 256, |x| match which {
        Features::Projector => method.embed(x),
        Features::Encoder => method.encoder().forward(x),
    });
    Ok((f.data, f.dim, M::CENTRED_DIAGNOSTICS))
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
    let (values, dim, centred) =
        crate::with_method!(recipe.method.name, M => embed_with::<M>(run, &set, &device, which)?);
    let stats = diagnose::analyze_for(&values, set.len(), dim, centred);
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
