//! MoCo v1 / v2 (He et al. 2020; Chen et al. 2020b): a momentum key encoder and a queue of past
//! keys as negatives. v1 and v2 differ only in their recipes: v2 has an MLP head, blur, a higher
//! temperature and a cosine learning rate.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use super::branch::Branch;
use super::{Method, Progress, StepOutput};
use crate::loss::{info_nce_queue, l2_normalize};
use crate::nn::Backbone;
use crate::nn::backbone::ImageShape;
use crate::recipe::Recipe;
use crate::teacher::{copy_into, ema_update};

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
}

impl Method for Moco {
    /// The batch's normalised keys, enqueued after the optimizer step.
    type Carry = Tensor<2>;

    fn init(recipe: &Recipe, shape: ImageShape, device: &Device) -> Self {
        let head = |h: crate::nn::MlpConfig| h.with_hidden_bn(false);
        let online = Branch::new(recipe, shape, head, device);
        let key = copy_into(Branch::new(recipe, shape, head, device), &online);
        let dim = *recipe.method.projector.last().expect("validated non-empty");
        let queue = l2_normalize(Tensor::random(
            [recipe.method.queue_size, dim],
            Distribution::Normal(0.0, 1.0),
            device,
        ));
        Moco {
            online,
            key,
            queue: Param::from_tensor(queue).set_require_grad(false),
            temperature: recipe.method.temperature,
            momentum: recipe.method.base_momentum,
        }
    }

    fn step(&self, views: &[Tensor<4>], _progress: Progress) -> StepOutput<Tensor<2>> {
        let q = self.online.forward(views[0].clone());
        let k = l2_normalize(self.key.forward(views[1].clone()).detach());
        let queue = self.queue.val().detach();
        let loss = info_nce_queue(q.clone(), k.clone(), queue, self.temperature);
        StepOutput {
            loss,
            embeddings: q.detach(),
            terms: Vec::new(),
            carry: k,
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

    fn encoder(&self) -> &Backbone {
        &self.online.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.online.forward(images)
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
    fn a_batch_larger_than_the_queue_keeps_its_first_keys() {
        let queue = rows(&[vec![1.0]]);
        let keys = rows(&[vec![8.0], vec![9.0]]);
        assert_eq!(crate::host::to_f32(enqueue(queue, keys, 1)), [8.0]);
    }
}
