//! kNN and linear probe of a run's frozen encoder beside both baselines; `eval.json`.

use burn::tensor::Device;

use super::check_eval_data;
use crate::data::Splits;
use crate::device::{DeviceChoice, device};
use crate::error::Result;
use crate::eval::{self, EvalReport};
use crate::nn::Backbone;
use crate::run::{Run, tensorboard, write_json};

/// Evaluates the run's final encoder on `splits` (its own data, or other labelled data of the
/// same image shape).
pub fn evaluate_run(
    run: &Run,
    splits: &Splits,
    choice: DeviceChoice,
    progress: impl FnMut(&str),
) -> Result<EvalReport> {
    let device = device(choice)?;
    let encoder = run.encoder(&device)?;
    evaluate_encoder(run, &encoder, splits, &device, progress)
}

/// kNN / linear probe of `encoder` (the run's, trained or in memory) beside both baselines;
/// writes `eval.json`.
pub fn evaluate_encoder(
    run: &Run,
    encoder: &Backbone,
    splits: &Splits,
    device: &Device,
    progress: impl FnMut(&str),
) -> Result<EvalReport> {
    check_eval_data(run, splits)?;
    let report = eval::evaluate(
        encoder,
        &run.recipe,
        splits,
        &run.info.normalize(),
        run.info.image_side,
        device,
        progress,
    )?;
    write_json(&run.dir.eval_path(), &report)?;
    let random = &report.baselines.random_init;
    let scalars = [
        ("eval/knn_top1", report.knn_top1),
        ("eval/linear_top1", report.linear_top1),
        ("eval/random_init_knn_top1", random.knn_top1),
        ("eval/random_init_linear_top1", random.linear_top1),
    ]
    .map(|(tag, v)| (tag.to_string(), tensorboard::Value::Scalar(v as f32)));
    tensorboard::add_to_run(&run.dir, scalars.into())?;
    Ok(report)
}

/// kNN / linear probe of an imported encoder (`--init`) on labelled `splits`, beside a random-init
/// encoder of the same architecture and raw pixels, with the default evaluation settings.
pub fn evaluate_imported(
    imported: &crate::weights::Imported,
    splits: &Splits,
    device: &Device,
    progress: impl FnMut(&str),
) -> Result<EvalReport> {
    let recipe = crate::recipe::Recipe {
        model: imported.model.clone(),
        ..Default::default()
    };
    eval::evaluate(
        &imported.encoder,
        &recipe,
        splits,
        &imported.normalize,
        imported.shape.side,
        device,
        progress,
    )
}
