//! Linear probe: softmax regression on frozen, standardised features (mini-batch SGD with
//! momentum, cosine learning rate, weight decay). Gradients are written out by hand: the model
//! is one matrix, so autodiff would only add bookkeeping.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::features::Features;

pub struct ProbeConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub seed: u64,
}

fn standardize(train: &Features, other: &Features) -> (Vec<f32>, Vec<f32>) {
    let d = train.dim;
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for i in 0..train.n {
        for (k, &v) in train.row(i).iter().enumerate() {
            mean[k] += v as f64;
            sq[k] += (v as f64) * (v as f64);
        }
    }
    let n = train.n.max(1) as f64;
    let stats: Vec<(f32, f32)> = (0..d)
        .map(|k| {
            let m = mean[k] / n;
            let var = (sq[k] / n - m * m).max(0.0);
            (m as f32, (var.sqrt() + 1e-6) as f32)
        })
        .collect();
    let apply = |f: &Features| -> Vec<f32> {
        f.data
            .chunks_exact(d)
            .flat_map(|row| row.iter().zip(&stats).map(|(v, (m, s))| (v - m) / s))
            .collect()
    };
    (apply(train), apply(other))
}

/// Trains on (`train`, `train_labels`) and returns top-1 accuracy on (`test`, `test_labels`).
pub fn linear_probe_top1(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    num_classes: usize,
    config: &ProbeConfig,
    device: &Device,
) -> f64 {
    let d = train.dim;
    let (xtr, xte) = standardize(train, test);
    let x_train = Tensor::<2>::from_data(TensorData::new(xtr, [train.n, d]), device);
    let y_train: Vec<i64> = train_labels.iter().map(|&l| l as i64).collect();
    let y_train = Tensor::<1, Int>::from_data(TensorData::new(y_train, [train.n]), device);
    let mut w = Tensor::<2>::zeros([d, num_classes], device);
    let mut b = Tensor::<1>::zeros([num_classes], device);
    let mut vw = w.clone();
    let mut vb = b.clone();
    let bs = config.batch_size.min(train.n).max(1);
    let steps_per_epoch = train.n.div_ceil(bs);
    let total = (config.epochs * steps_per_epoch).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<i64> = (0..train.n as i64).collect();
    let mut step = 0;
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(bs) {
            let lr =
                config.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            let idx =
                Tensor::<1, Int>::from_data(TensorData::new(chunk.to_vec(), [chunk.len()]), device);
            let x = x_train.clone().select(0, idx.clone());
            let y = y_train
                .clone()
                .select(0, idx)
                .one_hot::<2>(num_classes)
                .float();
            let p = softmax(x.clone().matmul(w.clone()) + b.clone().unsqueeze(), 1);
            let g = (p - y).div_scalar(chunk.len() as f64);
            let gw = x.transpose().matmul(g.clone()) + w.clone().mul_scalar(config.weight_decay);
            let gb = g.sum_dim(0).squeeze_dim(0);
            vw = vw.mul_scalar(0.9) + gw;
            vb = vb.mul_scalar(0.9) + gb;
            w = w - vw.clone().mul_scalar(lr);
            b = b - vb.clone().mul_scalar(lr);
            step += 1;
        }
    }
    let x_test = Tensor::<2>::from_data(TensorData::new(xte, [test.n, d]), device);
    let predicted = crate::host::to_i64((x_test.matmul(w) + b.unsqueeze()).argmax(1));
    let correct = predicted
        .iter()
        .zip(test_labels)
        .filter(|(p, l)| **p == **l as i64)
        .count();
    correct as f64 / test.n.max(1) as f64
}
