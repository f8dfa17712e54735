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
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<FinetuneReport> {
    use eval::finetune::{FinetuneConfig, FinetuneData, finetune_top1, labelled_subset};
    let mut recipe = run.recipe.clone();
    if let Some(f) = fraction {
        recipe.eval.finetune_fraction = f;
    }
    if let Some(e) = epochs {
        recipe.eval.finetune_epochs = e;
    }
    recipe.validate()?;
    let info = &run.info;
    let device = crate::device::train_device(choice)?;
    check_eval_data(run, splits)?;
    let (train, test) = eval::labelled_splits(splits, &recipe.eval, info.image_side)?;
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
    write_json(&run.root().join("finetune.json"), &report)?;
    Ok(report)
}
