//! `selfsup finetune`: the run's encoder and a random-init one fine-tuned on the same labels.

use super::check_eval_data;
use crate::data::Splits;
use crate::device::DeviceChoice;
use crate::error::Result;
use crate::eval::{self, finetune::FinetuneReport};
use crate::run::{Run, write_json};

/// Fine-tunes the run's encoder and a random-init one of the same architecture on the same
/// labelled fraction; writes `finetune.json`. `fraction` / `epochs` override the recipe's.
pub fn finetune_run(
    run: &Run,
    splits: &Splits,
    choice: DeviceChoice,
    fraction: Option<f64>,
    epochs: Option<usize>,
    progress: impl FnMut(&str, usize, usize),
) -> Result<FinetuneReport> {
    check_eval_data(run, splits)?;
    let device = crate::device::train_device(choice)?;
    let pretrained = run.encoder(&device)?;
    let start = Start {
        encoder: pretrained,
        recipe: run.recipe.clone(),
        shape: run.info.shape(),
        normalize: run.info.normalize(),
    };
    let report = finetune(start, splits, &device, fraction, epochs, progress)?;
    write_json(&run.root().join("finetune.json"), &report)?;
    Ok(report)
}

/// Fine-tunes imported weights (`--init`) beside a random-init encoder of the same architecture,
/// with the default settings (`fraction` and `epochs` as given).
pub fn finetune_imported(
    path: &std::path::Path,
    heads: Option<usize>,
    data: &std::path::Path,
    choice: DeviceChoice,
    fraction: Option<f64>,
    epochs: Option<usize>,
    progress: impl FnMut(&str, usize, usize),
) -> Result<(FinetuneReport, Vec<String>)> {
    let device = crate::device::train_device(choice)?;
    let imported = crate::weights::import_encoder(path, None, heads, &device)?;
    let splits = imported.load_data(data)?;
    let start = Start {
        recipe: crate::recipe::Recipe {
            model: imported.model.clone(),
            ..Default::default()
        },
        shape: imported.shape,
        normalize: imported.normalize.clone(),
        encoder: imported.encoder,
    };
    let report = finetune(start, &splits, &device, fraction, epochs, progress)?;
    Ok((report, imported.notes))
}

/// A pretrained encoder and what fine-tuning it needs to know.
struct Start {
    encoder: crate::nn::Backbone,
    recipe: crate::recipe::Recipe,
    shape: crate::nn::backbone::ImageShape,
    normalize: crate::data::loader::Normalize,
}

fn finetune(
    start: Start,
    splits: &Splits,
    device: &burn::tensor::Device,
    fraction: Option<f64>,
    epochs: Option<usize>,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<FinetuneReport> {
    use eval::finetune::{FinetuneConfig, FinetuneData, finetune_top1, labelled_subset};
    let Start {
        encoder,
        mut recipe,
        shape,
        normalize,
    } = start;
    if let Some(f) = fraction {
        recipe.eval.finetune_fraction = f;
    }
    if let Some(e) = epochs {
        recipe.eval.finetune_epochs = e;
    }
    recipe.validate()?;
    let (train, test) = eval::labelled_splits(splits, &recipe.eval, shape.side)?;
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
    let data = FinetuneData {
        train: &train,
        ids: &ids,
        test: &test,
        normalize: &normalize,
    };
    let top1 = finetune_top1(encoder, &data, &config, device, |d, t| {
        progress("fine-tuning the pretrained encoder", d, t)
    });
    device.seed(seed.wrapping_add(1));
    let random = recipe.model.init(shape, device);
    let random_init_top1 = finetune_top1(random, &data, &config, device, |d, t| {
        progress("fine-tuning a random-init encoder", d, t)
    });
    Ok(FinetuneReport {
        top1,
        random_init_top1,
        beats_random_init: top1 > random_init_top1,
        labelled_images: ids.len(),
        fraction: e.finetune_fraction,
        epochs: e.finetune_epochs,
        test_images: test.len(),
        data: splits.description.clone(),
    })
}
