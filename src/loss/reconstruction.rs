//! Masked-image-modeling losses: each averages only over masked patches (`mask` is `[b, n]`,
//! 1 = masked), which is what makes the task prediction rather than copying.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Σ over masked patches of `per_patch` (`[b, n]`) / number of masked patches.
fn masked_mean(per_patch: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    (per_patch * mask.clone()).sum() / mask.sum().clamp_min(1.0)
}

/// MAE's loss: the mean squared error of each patch's values, averaged over masked patches.
pub fn masked_mse(pred: Tensor<3>, target: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
    let [b, n, _] = pred.dims();
    masked_mean((pred - target).square().mean_dim(2).reshape([b, n]), mask)
}

/// The mean squared error over every value: MAE's loss when `pred` and `target` hold the masked
/// patches alone (gathered, as many for each image), the same value as [`masked_mse`] over all.
pub fn mse(pred: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    (pred - target).square().mean()
}

/// SimMIM's loss: the mean absolute error over masked pixels.
pub fn masked_l1(pred: Tensor<3>, target: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
    let [b, n, _] = pred.dims();
    masked_mean((pred - target).abs().mean_dim(2).reshape([b, n]), mask)
}

/// MAE's norm_pix_loss target: each patch row standardised by its own mean and unbiased variance
/// (ε = 1e-6 inside the root, as the paper's code).
pub fn normalize_patches(target: Tensor<3>) -> Tensor<3> {
    let (mean, std) = patch_mean_std(target.clone());
    (target - mean) / std
}

/// Each patch row's mean and √(unbiased variance + 1e-6), `[b, n, 1]` each.
pub fn patch_mean_std(target: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    let k = target.dims()[2];
    let mean = target.clone().mean_dim(2);
    let var = (target - mean.clone())
        .square()
        .sum_dim(2)
        .div_scalar((k.max(2) - 1) as f64);
    (mean, var.add_scalar(1e-6).sqrt())
}

/// BEiT's loss: softmax cross-entropy of `logits` (`[b, n, classes]`) against token ids
/// (`[b, n]`), averaged over masked positions.
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
) -> Tensor<1> {
    let [b, n, _] = logits.dims();
    let picked = log_softmax(logits, 2).gather(2, targets.reshape([b, n, 1]));
    masked_mean(picked.reshape([b, n]).neg(), mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::scalar;
    use burn::tensor::{Device, TensorData};

    fn t3(values: &[f32], shape: [usize; 3]) -> Tensor<3> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Device::flex())
    }

    fn mask(values: &[f32], shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Device::flex())
    }

    #[test]
    fn pixel_losses_count_only_masked_patches() {
        // Two patches of two values; only patch 1 is masked. Patch 0's huge error must not count.
        let pred = t3(&[100.0, -100.0, 1.0, 3.0], [1, 2, 2]);
        let target = t3(&[0.0, 0.0, 2.0, 1.0], [1, 2, 2]);
        let m = mask(&[0.0, 1.0], [1, 2]);
        // MSE of patch 1: (1 + 4) / 2 = 2.5; L1: (1 + 2) / 2 = 1.5.
        assert!((scalar(masked_mse(pred.clone(), target.clone(), m.clone())) - 2.5).abs() < 1e-6);
        let masked = |t: Tensor<3>| t.slice([0..1, 1..2]);
        assert!((scalar(mse(masked(pred.clone()), masked(target.clone()))) - 2.5).abs() < 1e-6);
        assert!((scalar(masked_l1(pred, target, m)) - 1.5).abs() < 1e-6);
    }

    #[test]
    fn normalized_patches_have_zero_mean_unit_unbiased_variance() {
        // Row [1, 2, 3]: mean 2, unbiased var 1 → [−1, 0, 1] (ε shifts it by < 1e-6).
        let got = crate::host::to_f32(normalize_patches(t3(&[1.0, 2.0, 3.0], [1, 1, 3])));
        for (g, w) in got.iter().zip([-1.0, 0.0, 1.0]) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn cross_entropy_matches_hand_computed_value() {
        // Position 0 (masked): logits [0, ln 3] → p(class 1) = 3/4, loss ln(4/3).
        // Position 1 is not masked and must not count.
        let logits = t3(&[0.0, 3f32.ln(), 5.0, -5.0], [1, 2, 2]);
        let targets =
            Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 1], [1, 2]), &Device::flex());
        let loss = scalar(masked_cross_entropy(
            logits,
            targets,
            mask(&[1.0, 0.0], [1, 2]),
        ));
        assert!((loss - (4.0f64 / 3.0).ln()).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn mse_gradient_reaches_masked_predictions_only() {
        let device = Device::flex().autodiff();
        let pred = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 3.0, 5.0, 7.0], [1, 2, 2]),
            &device,
        )
        .require_grad();
        let target = Tensor::<3>::zeros([1, 2, 2], &device);
        let m = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device);
        let grads = masked_mse(pred.clone(), target, m).backward();
        // d/dp mean((p − 0)²) over the masked patch's 2 values = p; nothing for patch 1.
        let g = crate::host::to_f32(pred.grad(&grads).unwrap());
        assert_eq!(g, vec![1.0, 3.0, 0.0, 0.0]);
    }
}
