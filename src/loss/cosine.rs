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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(rows: &[[f32; 2]]) -> Tensor<2> {
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), 2]), &Device::flex())
    }

    #[test]
    fn negative_cosine_matches_hand_computed_value() {
        // cos = 1 for the first pair, 1/√2 for the second: mean 0.853553.
        let loss = negative_cosine(t(&[[1.0, 0.0], [0.0, 3.0]]), t(&[[2.0, 0.0], [1.0, 1.0]]));
        assert!((loss.into_scalar::<f32>() + 0.853_553).abs() < 1e-5);
    }

    #[test]
    fn byol_regression_is_two_minus_two_cosine() {
        let loss = byol_regression(t(&[[1.0, 0.0], [0.0, 3.0]]), t(&[[2.0, 0.0], [1.0, 1.0]]));
        assert!((loss.into_scalar::<f32>() - (2.0 - 2.0 * 0.853_553)).abs() < 1e-5);
        let opposite = byol_regression(t(&[[1.0, 0.0]]), t(&[[-1.0, 0.0]]));
        assert!((opposite.into_scalar::<f32>() - 4.0).abs() < 1e-6);
    }

    #[test]
    fn negative_cosine_gradient_matches_formula() {
        // d/dp −cos(p, z) = −(z/(|p||z|) − cos·p/|p|²); p = (1, 0), z = (1, 1) → (0, −1/√2).
        let device = Device::flex().autodiff();
        let p = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device)
            .require_grad();
        let z = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device);
        let grads = negative_cosine(p.clone(), z).backward();
        let g = crate::host::to_f32(p.grad(&grads).unwrap());
        assert!(g[0].abs() < 1e-6, "{g:?}");
        assert!(
            (g[1] + std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-5,
            "{g:?}"
        );
    }

    #[test]
    fn l2_normalize_leaves_zero_rows_finite() {
        let out = crate::host::to_f32(l2_normalize(t(&[[0.0, 0.0], [3.0, 4.0]])));
        assert_eq!(out[..2], [0.0, 0.0]);
        assert!((out[2] - 0.6).abs() < 1e-6 && (out[3] - 0.8).abs() < 1e-6);
    }
}
