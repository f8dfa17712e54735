//! MoCo v1 / v2 (He et al. 2020; Chen et al. 2020b): a momentum key encoder and a queue of past
//! keys as negatives. v1 and v2 differ only in their recipes: v2 has an MLP head, blur, a higher
//! temperature and a cosine learning rate.
//!
//! Shuffling BN: the paper computes BatchNorm statistics per GPU and shuffles the key batch across
//! GPUs, so a query and its key never share statistics (otherwise the model can find the positive
//! through them). On one device we emulate it: both branches run in `shuffle_bn_groups` sub-batches,
//! the queries in order and the keys after a seeded shuffle.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use serde::{Deserialize, Serialize};

use super::branch::{Branch, check_momentum, check_projector, check_temperature};
use super::{
    About, Build, Method, MethodName, Needs, Pass, Progress, Settings, StepCost, StepOutput,
};
use crate::augment::AugmentConfig;
use crate::loss::{info_nce_queue, l2_normalize};
use crate::nn::{Backbone, ModelConfig};
use crate::teacher::{copy_into, ema_update};

/// `[method]` settings of `moco-v1` and `moco-v2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoConfig {
    /// Head widths after the backbone: hidden…, output (v1: one linear layer).
    pub projector: Vec<usize>,
    /// Softmax temperature τ of the contrastive loss (0.07 in v1, 0.2 in v2).
    pub temperature: f64,
    /// The constant key-encoder momentum m.
    pub base_momentum: f64,
    /// Past keys kept as negatives (65536 in the paper).
    pub queue_size: usize,
    /// BatchNorm sub-batches emulating the paper's shuffling BN across GPUs (keys shuffled
    /// between them); 1 turns it off.
    pub shuffle_bn_groups: usize,
}

impl Default for MocoConfig {
    fn default() -> Self {
        MocoConfig {
            projector: vec![512, 512, 512],
            temperature: 0.5,
            base_momentum: 0.99,
            queue_size: 4096,
            shuffle_bn_groups: 2,
        }
    }
}

impl Settings for MocoConfig {
    fn validate(&self, _model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_projector(&self.projector)?;
        check_momentum(self.base_momentum)?;
        check_temperature(self.temperature)?;
        if self.shuffle_bn_groups == 0 {
            return Err("method.shuffle_bn_groups must be at least 1 (1 = off)".into());
        }
        if self.queue_size == 0 {
            return Err("method.queue_size must be at least 1 (the paper uses 65536)".into());
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct Moco {
    /// Query encoder + head (no BatchNorm in the head, as the paper's fc / MLP).
    pub online: Branch,
    /// Momentum key encoder: θ_k ← m·θ_k + (1 − m)·θ_q after every step; no gradients.
    pub key: Branch,
    /// L2-normalised past keys, newest first; a module parameter without gradient so that
    /// checkpoints carry it and `--resume` restores it exactly.
    pub queue: Param<Tensor<2>>,
    temperature: f64,
    momentum: f64,
    shuffle_bn_groups: usize,
}

impl Method for Moco {
    type Config = MocoConfig;
    /// The batch's normalised keys, enqueued after the optimizer step.
    type Carry = Tensor<2>;
    const NEEDS: Needs = Needs::TWO_VIEWS;

    fn about(name: MethodName) -> About {
        let (title, prevents_collapse) = match name {
            MethodName::MocoV1 => ("MoCo v1", "momentum queue of past keys as negatives"),
            _ => ("MoCo v2", "momentum queue of past keys (MLP head, blur)"),
        };
        About {
            title,
            family: "contrastive",
            prevents_collapse,
            negatives: true,
        }
    }

    fn collapse_hint(_config: &MocoConfig) -> &'static str {
        "Check method.temperature, method.queue_size and method.base_momentum (the key encoder must move slowly)."
    }

    fn init(config: &MocoConfig, build: &Build) -> crate::error::Result<Self> {
        let head = |h: crate::nn::MlpConfig| h.with_hidden_bn(false);
        let online = Branch::new(build, &config.projector, head);
        let key = copy_into(Branch::new(build, &config.projector, head), &online);
        let dim = *config.projector.last().expect("validated non-empty");
        let queue = l2_normalize(Tensor::random(
            [config.queue_size, dim],
            Distribution::Normal(0.0, 1.0),
            build.device,
        ));
        Ok(Moco {
            online,
            key,
            queue: Param::from_tensor(queue).set_require_grad(false),
            temperature: config.temperature,
            momentum: config.base_momentum,
            shuffle_bn_groups: config.shuffle_bn_groups,
        })
    }

    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<Tensor<2>> {
        let groups = self.shuffle_bn_groups;
        let q = grouped_forward(&self.online, views[0].clone(), groups, None);
        let order = shuffled_order(views[1].dims()[0], progress.step);
        let k = grouped_forward(&self.key, views[1].clone(), groups, Some(order));
        let k = l2_normalize(k.detach());
        let queue = self.queue.val().detach();
        let loss = info_nce_queue(q.clone(), k.clone(), queue, self.temperature);
        StepOutput {
            loss,
            embeddings: q.detach(),
            terms: Vec::new(),
            carry: k,
            signals: Vec::new(),
        }
    }

    fn after_step(mut self, keys: Tensor<2>, _progress: Progress) -> Self {
        self.key = ema_update(self.key, &self.online, self.momentum);
        let [size, _] = self.queue.val().dims();
        let queue = self.queue.val().detach();
        self.queue = self.queue.map(|_| enqueue(queue, keys, size));
        self
    }

    fn momentum(&self, _progress: Progress) -> Option<f64> {
        Some(self.momentum)
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let [keys, _] = self.queue.dims();
        let b = batch as u64;
        StepCost {
            passes: vec![
                Pass::trained(
                    "query: encoder + projector",
                    1,
                    self.online.stages(sides[0]),
                ),
                Pass::frozen("key: encoder + projector", 1, self.key.stages(sides[1])),
            ],
            // The B × (1 + K) logits against the key and the queue, scaled, and their log-softmax.
            loss: 3 * b * (1 + keys as u64),
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
    }
}

/// A seeded permutation of `0..n` for step `step` (the same after a resume).
fn shuffled_order(n: usize, step: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(step as u64));
    order
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, [indices.len()]), device)
}

/// `branch` applied to `groups` sub-batches (BatchNorm statistics per sub-batch), after permuting
/// the batch by `order` when given; the output rows come back in the input's order.
fn grouped_forward(
    branch: &Branch,
    x: Tensor<4>,
    groups: usize,
    order: Option<Vec<usize>>,
) -> Tensor<2> {
    let n = x.dims()[0];
    if groups <= 1 || n < 2 * groups {
        return branch.forward(x);
    }
    let device = x.device();
    let x = match &order {
        Some(order) => x.select(0, index_tensor(order, &device)),
        None => x,
    };
    let outs: Vec<Tensor<2>> = x
        .chunk(groups, 0)
        .into_iter()
        .map(|part| branch.forward(part))
        .collect();
    let out = Tensor::cat(outs, 0);
    match order {
        Some(order) => {
            let mut inverse = vec![0; n];
            for (position, &original) in order.iter().enumerate() {
                inverse[original] = position;
            }
            out.select(0, index_tensor(&inverse, &device))
        }
        None => out,
    }
}

/// The newest keys in front, the oldest dropped so the queue keeps `size` rows.
pub fn enqueue(queue: Tensor<2>, keys: Tensor<2>, size: usize) -> Tensor<2> {
    let [_, dim] = queue.dims();
    Tensor::cat(vec![keys.detach(), queue], 0).slice([0..size, 0..dim])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::rows;

    #[test]
    fn enqueue_puts_newest_first_and_drops_oldest() {
        let queue = rows(&[vec![1.0, 0.0], vec![2.0, 0.0], vec![3.0, 0.0]]);
        let keys = rows(&[vec![8.0, 0.0], vec![9.0, 0.0]]);
        let out = crate::host::to_f32(enqueue(queue, keys, 3));
        assert_eq!(out, [8.0, 0.0, 9.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn shuffled_groups_return_rows_in_input_order() {
        use crate::nn::MlpConfig;
        use crate::nn::backbone::{ImageShape, ModelConfig};
        let device = burn::tensor::Device::flex();
        let model = ModelConfig {
            width: 2,
            ..ModelConfig::default()
        };
        let shape = ImageShape {
            channels: 1,
            side: 8,
        };
        let encoder = model.init(shape, &device);
        let branch = Branch {
            projector: MlpConfig::new(vec![encoder.out_dim(), 4])
                .with_hidden_bn(false)
                .init(&device),
            encoder,
        };
        let branch = branch.valid(); // eval-mode BatchNorm: grouping cannot change any row
        let x = Tensor::<4>::random([8, 1, 8, 8], Distribution::Default, &device);
        let whole = crate::host::to_f32(branch.forward(x.clone()));
        let grouped =
            crate::host::to_f32(grouped_forward(&branch, x, 2, Some(shuffled_order(8, 3))));
        for (a, b) in whole.iter().zip(&grouped) {
            assert!((a - b).abs() < 1e-5, "{whole:?} vs {grouped:?}");
        }
        let order = shuffled_order(8, 3);
        assert_ne!(order, (0..8).collect::<Vec<_>>());
        assert_eq!(order, shuffled_order(8, 3));
    }

    #[test]
    fn a_batch_larger_than_the_queue_keeps_its_first_keys() {
        let queue = rows(&[vec![1.0]]);
        let keys = rows(&[vec![8.0], vec![9.0]]);
        assert_eq!(crate::host::to_f32(enqueue(queue, keys, 1)), [8.0]);
    }
}
