//! Fine-tuning evaluation: the whole encoder plus a linear head trained end to end on (a fraction
//! of) the labels, reported beside the same training from a random initialisation. This is where
//! MAE shines and a linear probe undersells it (He et al. 2021, §4.3).

use burn::module::Module;
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::augment::ops::hflip;
use crate::data::ImageSet;
use crate::data::loader::Normalize;
use crate::eval::features::images;
use crate::nn::Backbone;
use crate::nn::vit::linear;
use crate::optim::{ConstantLr, Optimizer, OptimizerConfig, OptimizerKind, WarmupCosine};

/// Settings of one fine-tuning run (the recipe's `eval.finetune_*`).
#[derive(Clone, Debug)]
pub struct FinetuneConfig {
    /// Fraction of the labelled training images used (class labels of the rest are ignored).
    pub fraction: f64,
    pub epochs: usize,
    /// AdamW learning rate at batch 256 (scaled by batch / 256), after one warmup epoch, cosine.
    pub base_lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub seed: u64,
}

#[derive(Module, Debug)]
pub struct Classifier {
    pub encoder: Backbone,
    pub head: Linear,
}

impl Classifier {
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        crate::kernels::linear_layer(&self.head, self.encoder.forward(images))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FinetuneReport {
    pub top1: f64,
    pub random_init_top1: f64,
    pub beats_random_init: bool,
    pub labelled_images: usize,
    pub fraction: f64,
    pub epochs: usize,
    pub test_images: usize,
    pub data: String,
}

/// A seeded random `fraction` of `set` (at least one image per batch's worth).
pub fn labelled_subset(set: &ImageSet, fraction: f64, seed: u64) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..set.len()).collect();
    ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let keep = ((set.len() as f64 * fraction).round() as usize).clamp(1, set.len());
    ids.truncate(keep);
    ids
}

/// Images `ids` of `set`, each flipped with probability ½ when `rng` is given.
fn batch(
    set: &ImageSet,
    ids: &[usize],
    normalize: &Normalize,
    mut rng: Option<&mut ChaCha8Rng>,
    device: &Device,
) -> Tensor<4> {
    images(set, ids.iter().copied(), normalize, device, |img| {
        if let Some(rng) = rng.as_deref_mut()
            && rng.random::<bool>()
        {
            hflip(img);
        }
    })
}

fn labels_of(set: &ImageSet) -> &[u32] {
    set.labels
        .as_deref()
        .expect("labelled_splits keeps labelled sets")
}

/// The labelled images fine-tuning trains on (`ids` of `train`) and is scored on.
pub struct FinetuneData<'a> {
    pub train: &'a ImageSet,
    pub ids: &'a [usize],
    pub test: &'a ImageSet,
    pub normalize: &'a Normalize,
}

/// Trains `encoder` + a fresh linear head on the labelled images (random flips), then returns
/// top-1 on the test images. `device` must be an autodiff device. `progress(done, total)` is
/// called after each step.
pub fn finetune_top1(
    encoder: Backbone,
    data: &FinetuneData,
    config: &FinetuneConfig,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> f64 {
    let FinetuneData {
        train,
        ids,
        test,
        normalize,
    } = *data;
    let classes = train.num_classes().max(test.num_classes());
    device.seed(config.seed);
    let mut model = Classifier {
        head: linear(encoder.out_dim(), classes, device),
        encoder,
    };
    let mut optimizer = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Adamw,
        base_lr: config.base_lr,
        weight_decay: config.weight_decay,
        betas: [0.9, 0.999],
        ..OptimizerConfig::default()
    });
    let bs = config.batch_size.min(ids.len()).max(2);
    let steps_per_epoch = (ids.len() / bs).max(1);
    let total = config.epochs * steps_per_epoch;
    let peak = config.base_lr * bs as f64 / 256.0;
    let schedule = WarmupCosine {
        base_lr: peak,
        warmup_steps: steps_per_epoch,
        total_steps: total,
        final_fraction: 0.0,
    };
    let labels = labels_of(train);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order = ids.to_vec();
    let mut step = 0;
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks_exact(bs).take(steps_per_epoch) {
            let x = batch(train, chunk, normalize, Some(&mut rng), device);
            let y: Vec<i64> = chunk.iter().map(|&i| labels[i] as i64).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [chunk.len()]), device);
            let logp = log_softmax(model.forward(x), 1);
            let loss = logp.gather(1, y.reshape([chunk.len(), 1])).mean().neg();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(
                schedule.lr(step),
                peak,
                model,
                grads,
                &ConstantLr::default(),
            );
            step += 1;
            progress(step, total);
        }
    }
    let model = model.valid();
    let plain = device.clone().inner();
    let test_labels = labels_of(test);
    let mut correct = 0;
    let all: Vec<usize> = (0..test.len()).collect();
    for chunk in all.chunks(256) {
        let x = batch(test, chunk, normalize, None, &plain);
        let predicted = crate::host::to_i64(model.forward(x).argmax(1));
        correct += predicted
            .iter()
            .zip(chunk)
            .filter(|(p, i)| **p == test_labels[**i] as i64)
            .count();
    }
    correct as f64 / test.len().max(1) as f64
}
