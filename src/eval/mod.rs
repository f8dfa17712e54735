//! Evaluation of frozen features — kNN and a linear probe — always beside two baselines on the
//! same split: a randomly initialised encoder of the same architecture, and raw pixels.

pub mod features;
pub mod finetune;
pub mod knn;
pub mod linear;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::loader::Normalize;
use crate::data::{ImageSet, Images, Splits};
use crate::error::{Error, Result};
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::{EvalConfig, Recipe};
pub use features::Features;

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Scores {
    pub knn_top1: f64,
    pub linear_top1: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baselines {
    pub random_init: Scores,
    pub pixels: Scores,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub knn_top1: f64,
    pub linear_top1: f64,
    pub baselines: Baselines,
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub train_images: usize,
    pub test_images: usize,
    pub feature_dim: usize,
    /// The side the raw-pixel baseline was taken at (32 for images over 64 px).
    pub pixel_side: usize,
    pub data: String,
    /// Whether the encoder beats the random-init encoder on both kNN and the probe.
    pub beats_random_init: bool,
    pub beats_pixels: bool,
}

/// The labelled (fit, held-out) pair that evaluation uses, in memory (streamed images through
/// the evaluation transform at `side`, the encoder's input side).
pub fn labelled_splits(
    splits: &Splits,
    config: &EvalConfig,
    side: usize,
) -> Result<(ImageSet, ImageSet)> {
    if !splits.train.is_labelled() {
        return Err(Error::Usage(format!(
            "{}: evaluation needs labels, and these images have none; evaluate on an IDX/CIFAR folder, an image folder with one sub-folder per class, or shards with .cls members",
            splits.description
        )));
    }
    match &splits.test {
        Some(test) if test.is_labelled() => Ok((
            splits.train.in_memory(config.max_train, side)?,
            test.in_memory(config.max_test, side)?,
        )),
        _ => {
            // Held out from the train split, then capped: in-memory sets whole (as they always
            // were), streamed ones only as many images as both caps need.
            let read = match (&splits.train, config.max_train, config.max_test) {
                (Images::Stream(_), train, test) if train > 0 && test > 0 => train + test,
                _ => 0,
            };
            let (train, test) = hold_out(&splits.train.in_memory(read, side)?, 0.2);
            let cap = |set: ImageSet, max: usize| if max > 0 { set.take(max) } else { set };
            Ok((cap(train, config.max_train), cap(test, config.max_test)))
        }
    }
}

/// Splits a labelled set into (train, test) with a fixed interleave: every fifth image is held out.
fn hold_out(set: &ImageSet, fraction: f64) -> (ImageSet, ImageSet) {
    let every = (1.0 / fraction).round().max(2.0) as usize;
    let pick = |keep: &dyn Fn(usize) -> bool| {
        let idx: Vec<usize> = (0..set.len()).filter(|&i| keep(i)).collect();
        ImageSet {
            pixels: idx
                .iter()
                .flat_map(|&i| set.image(i).iter().copied())
                .collect(),
            labels: set
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            classes: set.classes.clone(),
            ..*set
        }
    };
    (pick(&|i| i % every != 0), pick(&|i| i % every == 0))
}

fn labels(set: &ImageSet) -> &[u32] {
    set.labels
        .as_deref()
        .expect("labelled_splits keeps only labelled sets")
}

/// Weighted kNN top-1 of `test` features against `train` features.
pub fn knn_score(
    train: &Features,
    train_set: &ImageSet,
    test: &Features,
    test_set: &ImageSet,
    config: &EvalConfig,
    device: &Device,
) -> f64 {
    knn::knn_top1(
        train,
        labels(train_set),
        test,
        labels(test_set),
        train_set.num_classes().max(test_set.num_classes()),
        config.knn_k,
        config.knn_temperature,
        device,
    )
}

/// kNN and linear probe for one pair of feature sets.
pub fn score(
    train: &Features,
    train_set: &ImageSet,
    test: &Features,
    test_set: &ImageSet,
    config: &EvalConfig,
    seed: u64,
    device: &Device,
) -> Scores {
    let knn_top1 = knn_score(train, train_set, test, test_set, config, device);
    let probe = linear::ProbeConfig {
        epochs: config.linear_epochs,
        lr: config.linear_lr,
        weight_decay: config.linear_weight_decay,
        batch_size: 256,
        seed,
    };
    let classes = train_set.num_classes().max(test_set.num_classes());
    let linear_top1 = linear::linear_probe_top1(
        train,
        labels(train_set),
        test,
        labels(test_set),
        classes,
        &probe,
        device,
    );
    Scores {
        knn_top1,
        linear_top1,
    }
}

/// Backbone features of `set` with BatchNorm in eval mode.
pub fn encoder_features(
    encoder: &Backbone,
    set: &ImageSet,
    normalize: &Normalize,
    device: &Device,
) -> Features {
    let encoder = encoder.valid();
    let batch = features::batch_for(set.height);
    features::extract(set, normalize, device, batch, |x| encoder.forward(x))
}

/// The baseline every trained encoder is held against: the recipe's architecture, initialised
/// from the run's seed (+1, so it is not the trained encoder's own starting point).
pub fn random_init_encoder(recipe: &Recipe, shape: ImageShape, device: &Device) -> Backbone {
    device.seed(recipe.train.seed.wrapping_add(1));
    recipe.model.init(shape, device)
}

/// Evaluates `encoder` and both baselines on the labelled splits of `splits`.
pub fn evaluate(
    encoder: &Backbone,
    recipe: &Recipe,
    splits: &Splits,
    normalize: &Normalize,
    side: usize,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Result<EvalReport> {
    let (train_set, test_set) = labelled_splits(splits, &recipe.eval, side)?;
    let seed = recipe.train.seed;
    progress("extracting features of the trained encoder");
    let tr = encoder_features(encoder, &train_set, normalize, device);
    let te = encoder_features(encoder, &test_set, normalize, device);
    progress("scoring the trained encoder");
    let trained = score(&tr, &train_set, &te, &test_set, &recipe.eval, seed, device);

    progress("scoring a randomly initialised encoder");
    let shape = ImageShape {
        channels: train_set.channels,
        side: train_set.height,
    };
    let random = random_init_encoder(recipe, shape, device);
    let rtr = encoder_features(&random, &train_set, normalize, device);
    let rte = encoder_features(&random, &test_set, normalize, device);
    let random_init = score(
        &rtr,
        &train_set,
        &rte,
        &test_set,
        &recipe.eval,
        seed,
        device,
    );

    progress("scoring raw pixels");
    let ptr = features::pixels(&train_set, normalize);
    let pte = features::pixels(&test_set, normalize);
    let pixels = score(
        &ptr,
        &train_set,
        &pte,
        &test_set,
        &recipe.eval,
        seed,
        device,
    );

    Ok(EvalReport {
        knn_top1: trained.knn_top1,
        linear_top1: trained.linear_top1,
        beats_random_init: trained.knn_top1 > random_init.knn_top1
            && trained.linear_top1 > random_init.linear_top1,
        beats_pixels: trained.knn_top1 > pixels.knn_top1
            && trained.linear_top1 > pixels.linear_top1,
        baselines: Baselines {
            random_init,
            pixels,
        },
        knn_k: recipe.eval.knn_k,
        knn_temperature: recipe.eval.knn_temperature,
        train_images: train_set.len(),
        test_images: test_set.len(),
        feature_dim: tr.dim,
        pixel_side: features::pixel_side(train_set.height),
        data: splits.description.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters(n: usize, offset: f32) -> (Features, Vec<u32>) {
        // Three classes around three orthogonal directions, with a little deterministic jitter.
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 3;
            let mut row = vec![0.1 * ((i * 7 + 3) % 5) as f32 / 5.0 + offset; 3];
            row[c] += 1.0;
            data.extend(row);
            labels.push(c as u32);
        }
        (Features { data, n, dim: 3 }, labels)
    }

    #[test]
    fn knn_and_probe_separate_clusters() {
        let device = Device::flex();
        let (tr, ytr) = clusters(90, 0.0);
        let (te, yte) = clusters(30, 0.05);
        let acc = knn::knn_top1(&tr, &ytr, &te, &yte, 3, 5, 0.1, &device);
        assert_eq!(acc, 1.0);
        let probe = linear::ProbeConfig {
            epochs: 30,
            lr: 0.5,
            weight_decay: 0.0,
            batch_size: 16,
            seed: 0,
        };
        let acc = linear::linear_probe_top1(&tr, &ytr, &te, &yte, 3, &probe, &device);
        assert_eq!(acc, 1.0);
    }

    #[test]
    fn knn_weights_votes_by_similarity() {
        // One very close neighbour of class 1 outweighs two distant ones of class 0 at T = 0.1.
        let device = Device::flex();
        let train = Features {
            data: vec![1.0, 0.0, 0.6, 0.8, 0.6, -0.8],
            n: 3,
            dim: 2,
        };
        let test = Features {
            data: vec![1.0, 0.01],
            n: 1,
            dim: 2,
        };
        assert_eq!(
            knn::knn_top1(&train, &[1, 0, 0], &test, &[1], 2, 3, 0.1, &device),
            1.0
        );
        // At a very high temperature the votes are nearly equal and the majority wins.
        assert_eq!(
            knn::knn_top1(&train, &[1, 0, 0], &test, &[0], 2, 3, 100.0, &device),
            1.0
        );
    }
}
