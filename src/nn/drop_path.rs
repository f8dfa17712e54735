//! Stochastic depth (Huang et al. 2016): drop a residual branch per sample while training.

use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

#[derive(Module, Debug)]
pub struct DropPath {
    prob: f64,
    training: Param<Flag>,
}

impl DropPath {
    pub fn new(prob: f64) -> Self {
        DropPath {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Zeroes whole samples with probability `prob` and rescales the rest by 1/(1 − prob); the
    /// identity in evaluation (`valid()`) or off the autodiff device.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.is_identity_on(&x) {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mut shape = [1usize; D];
        shape[0] = x.dims()[0];
        let mask = Tensor::<D>::random(shape, Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }

    /// Whether [`Self::forward`] returns tensors like `x` unchanged.
    pub fn is_identity_on<const D: usize>(&self, x: &Tensor<D>) -> bool {
        self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff()
    }
}
