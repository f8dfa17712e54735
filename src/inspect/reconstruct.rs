//! `selfsup reconstruct`: masked image models' predictions drawn beside the originals.

use burn::tensor::Device;

use super::held_out_images;
use crate::data::ImageSet;
use crate::device::{DeviceChoice, device};
use crate::error::{Error, Result};
use crate::eval::features;
use crate::method::Method;
use crate::run::Run;

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
    run: &Run,
    set: &ImageSet,
    device: &Device,
    step: usize,
) -> Result<Option<(Masks, Vec<f32>)>> {
    let method = run.method::<M>(device)?.valid();
    let images = features::image_batch(set, 0..set.len(), &run.info.normalize(), device);
    Ok(method
        .reconstruct(images, step)
        .map(|r| (r.masks, crate::host::to_f32(r.prediction))))
}

/// Draws original, masked input and prediction of `count` held-out images into a PNG grid (the
/// run's `reconstruction.png` unless `out` is given); masks are drawn as at training step `step`.
pub fn reconstruct_run(
    run: &Run,
    choice: DeviceChoice,
    count: usize,
    step: usize,
    out: Option<&std::path::Path>,
) -> Result<ReconstructionReport> {
    use crate::diagnose::grid::{Column, write_grid};
    let (recipe, info) = (&run.recipe, &run.info);
    let device = device(choice)?;
    let set = held_out_images(run, &run.data()?, count.max(1))?;
    let name = recipe.method.name();
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
        .unwrap_or_else(|| run.root().join("reconstruction.png"));
    write_grid(&columns, c, side, patch, &picture)?;
    let image = crate::run::tensorboard::Value::png_file(&picture)?;
    crate::run::tensorboard::add_to_run(&run.dir, vec![("reconstruction".into(), image)])?;
    Ok(ReconstructionReport {
        picture,
        images: set.len(),
        mask_ratio,
        masked_pixel_mse: err / count_px.max(1) as f64,
    })
}
