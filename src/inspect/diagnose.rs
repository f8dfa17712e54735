//! Collapse diagnostics of a run's embeddings on held-out images: statistics, the method's own
//! readings (codebook usage, teacher entropies), `diagnose.json` and the spectrum plot.

use burn::module::Module;
use burn::tensor::Device;

use super::held_out_images;
use crate::data::loader::Normalize;
use crate::data::{ImageSet, Splits};
use crate::device::{DeviceChoice, device};
use crate::diagnose::monitor::{Gathered, Readings};
use crate::diagnose::{self, CollapseStats};
use crate::error::{Error, Result};
use crate::eval::features;
use crate::method::Method;
use crate::run::{Run, tensorboard, write_json};

/// Which features `diagnose` looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Features {
    /// The projector output the loss sees (where collapse starts).
    Projector,
    /// The backbone's representation: pooled ResNet features, or the ViT's CLS (or mean) token.
    Encoder,
}

/// Diagnoses the run's method as of its latest checkpoint (see [`diagnose_method`]).
pub fn diagnose_run(
    run: &Run,
    splits: &Splits,
    choice: DeviceChoice,
    samples: usize,
    which: Features,
) -> Result<CollapseStats> {
    let device = device(choice)?;
    crate::with_method!(run.recipe.method.name(), M => {
        let method = run.method::<M>(&device)?.valid();
        diagnose_method(run, &method, splits, &device, samples, which)
    })
}

/// Collapse statistics of `method` (in eval mode, on `device`) on up to `samples` held-out
/// images of `splits`; writes `diagnose.json` and `spectrum.png` (projector) or
/// `diagnose-encoder.json` and `spectrum-encoder.png` (encoder) into the run.
pub fn diagnose_method<M: Method>(
    run: &Run,
    method: &M,
    splits: &Splits,
    device: &Device,
    samples: usize,
    which: Features,
) -> Result<CollapseStats> {
    let set = held_out_images(run, splits, samples.max(2))?;
    if set.len() < 2 {
        return Err(Error::Usage("diagnostics need at least 2 images".into()));
    }
    let normalize = run.info.normalize();
    let readings = method_readings(method, &set, &normalize, device);
    let batch = features::batch_for(set.height);
    let f = features::extract(&set, &normalize, device, batch, |x| match which {
        Features::Projector => method.embed(x),
        Features::Encoder => method.encoder().forward(x),
    });
    // A ViT's own features carry the offset every token shares, whichever method trained it.
    let centred =
        M::CENTRED_DIAGNOSTICS || (which == Features::Encoder && method.encoder().vit().is_some());
    let mut stats = diagnose::analyze_for(&f.data, set.len(), f.dim, centred);
    stats.readings = readings;
    let dir = &run.dir;
    let (json, png, label) = match which {
        Features::Projector => (dir.diagnose_path(), dir.spectrum_path(), "EMBEDDING"),
        Features::Encoder => (
            dir.root.join("diagnose-encoder.json"),
            dir.root.join("spectrum-encoder.png"),
            "ENCODER FEATURE",
        ),
    };
    write_json(&json, &stats)?;
    diagnose::plot::write_spectrum(
        &stats,
        &format!(
            "{} {label} COVARIANCE EIGENVALUES (LOG10, RELATIVE TO THE LARGEST)",
            run.recipe.method.name()
        ),
        &png,
    )?;
    let tag = match which {
        Features::Projector => "spectrum",
        Features::Encoder => "spectrum_encoder",
    };
    tensorboard::add_to_run(dir, vec![(tag.into(), tensorboard::Value::png_file(&png)?)])?;
    Ok(stats)
}

/// What the method's own signals say on `set` (a tokenizer's codebook usage, a teacher's
/// entropies).
fn method_readings<M: Method>(
    method: &M,
    set: &ImageSet,
    normalize: &Normalize,
    device: &Device,
) -> Readings {
    let mut gathered = Gathered::default();
    let size = features::batch_for(set.height);
    for start in (0..set.len()).step_by(size) {
        let batch =
            features::image_batch(set, start..(start + size).min(set.len()), normalize, device);
        gathered.add(method.signals(batch));
        if gathered.is_empty() {
            break;
        }
    }
    gathered.readings()
}
