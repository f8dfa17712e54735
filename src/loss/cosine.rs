//! Cosine losses of the non-contrastive family.

use burn::tensor::Tensor;

/// Rows divided by their L2 norm (with a small floor, as `F.normalize`).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Mean cosine similarity of matching rows of `a` and `b`, shape `[1]`.
pub fn mean_cosine(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (l2_normalize(a) * l2_normalize(b)).sum_dim(1).mean()
}

/// SimSiam's D(p, z) = −cos(p, z), averaged over the batch. The caller decides whether `z` is
/// detached (the stop-gradient).
pub fn negative_cosine(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    mean_cosine(p, z).neg()
}

/// BYOL's regression loss 2 − 2·cos(p, z′), averaged over the batch.
pub fn byol_regression(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    mean_cosine(p, z).mul_scalar(-2.0).add_scalar(2.0)
}
