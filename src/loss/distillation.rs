//! Self-distillation losses (DINO, iBOT, DINOv2) as free functions: the teacher's targets
//! (centred and sharpened, or Sinkhorn-Knopp normalised), the cross-entropy between teacher and
//! student crops, the teacher's centre update, and DINOv2's KoLeo regulariser.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};

use super::cosine::l2_normalize;

/// DINO's teacher targets: softmax((logits − center) / τ_t), detached. `center` is `[1, K]`.
pub fn centered_teacher(logits: Tensor<2>, center: Tensor<2>, temperature: f64) -> Tensor<2> {
    softmax((logits - center).div_scalar(temperature), 1).detach()
}

/// The centre's EMA over batch means: c ← m·c + (1 − m)·mean(logits) (DINO: m = 0.9).
pub fn update_center(center: Tensor<2>, logits: Tensor<2>, momentum: f64) -> Tensor<2> {
    center.mul_scalar(momentum) + logits.detach().mean_dim(0).mul_scalar(1.0 - momentum)
}

/// DINOv2's teacher targets: Sinkhorn-Knopp on exp(logits / τ_t), `iterations` rounds of making
/// every prototype's total mass 1/K and every sample's 1/B; returned with each sample's row
/// summing to 1 (so every prototype gets B/K of the batch in total), detached.
pub fn sinkhorn_knopp(logits: Tensor<2>, temperature: f64, iterations: usize) -> Tensor<2> {
    let [b, k] = logits.dims();
    // Subtracting the global max keeps exp finite and cancels in the normalisation.
    let scaled = logits.detach().div_scalar(temperature);
    let max = scaled.clone().max();
    let mut q = (scaled - max.unsqueeze()).exp();
    q = q.clone() / q.sum().unsqueeze();
    for _ in 0..iterations {
        q = q.clone() / q.sum_dim(0).mul_scalar(k as f64);
        q = q.clone() / q.sum_dim(1).mul_scalar(b as f64);
    }
    q.mul_scalar(b as f64)
}

/// DINO's loss: the mean over pairs of (teacher crop, student crop) — every teacher target with
/// every student crop except the same view — of the cross-entropy −Σ p_t · log softmax(s / τ_s),
/// averaged over the batch. `teacher` holds the targets for the global crops (`[crops · batch,
/// K]`, crop by crop; no gradient flows to them), `student` the student's logits for all crops
/// (`[crops · batch, K]`), global ones first in the teacher's order. One fused pass on the CPU.
pub fn dino_loss(
    teacher: Tensor<2>,
    student: Tensor<2>,
    batch: usize,
    student_temperature: f64,
) -> Tensor<1> {
    crate::kernels::dino_cross_entropy(teacher, student, batch, student_temperature)
}

/// iBOT's masked patches as rows of the flattened `[crops · patches]` tokens, each weighted
/// 1 / (its crop's masked count × crops): summed, the loss is per crop the mean over its masked
/// patches, averaged over every crop (an unmasked crop counts as 0, as in iBOT's code).
pub fn masked_patch_rows(masks: &[Vec<bool>], patches: usize) -> (Vec<i64>, Vec<f32>) {
    let crops = masks.len();
    let mut rows = Vec::new();
    let mut weights = Vec::new();
    for (i, mask) in masks.iter().enumerate() {
        let count = mask.iter().filter(|&&m| m).count();
        for (j, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            rows.push((i * patches + j) as i64);
            weights.push(1.0 / (count * crops) as f32);
        }
    }
    (rows, weights)
}

/// iBOT's masked patch loss: Σ_rows w · (−Σ_k t_k · log softmax(s / τ_s)_k) over the masked rows'
/// teacher targets `[m, K]`, student logits `[m, K]` and weights `[m, 1]`.
pub fn ibot_patch_loss(
    targets: Tensor<2>,
    student_logits: Tensor<2>,
    student_temperature: f64,
    weights: Tensor<2>,
) -> Tensor<1> {
    let log_probs = log_softmax(student_logits.div_scalar(student_temperature), 1);
    let ce = (targets * log_probs).sum_dim(1).neg();
    (ce * weights).sum()
}

/// DINOv2's KoLeo regulariser on the rows of `x` (L2-normalised first): −mean_i log(min_{j≠i}
/// ‖x_i − x_j‖ + ε), the Kozachenko-Leonenko entropy estimate that spreads features apart.
pub fn koleo(x: Tensor<2>, eps: f64) -> Tensor<1> {
    let x = l2_normalize(x);
    let [n, _] = x.dims();
    let device = x.device();
    // Nearest neighbour by the largest dot product, the diagonal pushed out of reach.
    let dots = x.clone().matmul(x.clone().transpose());
    let eye = Tensor::<2>::eye(n, &device);
    let nearest = (dots - eye.mul_scalar(3.0)).argmax(1);
    let neighbours = x.clone().select(0, nearest.reshape([n]));
    let distance = (x - neighbours)
        .square()
        .sum_dim(1)
        .add_scalar(1e-12)
        .sqrt();
    distance.add_scalar(eps).log().mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{Rows, check_gradient, rows, scalar};

    #[test]
    fn ibot_patch_loss_weights_each_crop_by_its_masked_patches() {
        // Crop 0 masks patches 0 and 2 of 3, crop 1 masks patch 1, crop 2 none: weights
        // 1/(2·3), 1/(2·3) and 1/(1·3).
        let masks = [
            vec![true, false, true],
            vec![false, true, false],
            vec![false, false, false],
        ];
        let (rows_, weights) = masked_patch_rows(&masks, 3);
        assert_eq!(rows_, [0, 2, 4]);
        assert_eq!(weights, [1.0 / 6.0, 1.0 / 6.0, 1.0 / 3.0]);
        // Two prototypes, τ_s = 1, equal student logits: log softmax = ln ½ for both, so each
        // row's cross-entropy is ln 2 whatever its target; with target [1, 0] and student
        // logits [ln 3, 0] it is −ln ¾.
        let targets = rows(&[vec![1.0, 0.0], vec![0.5, 0.5], vec![1.0, 0.0]]);
        let student = rows(&[vec![0.0, 0.0], vec![0.0, 0.0], vec![3f64.ln(), 0.0]]);
        let w = rows(&[vec![1.0 / 6.0], vec![1.0 / 6.0], vec![1.0 / 3.0]]);
        let loss = scalar(ibot_patch_loss(targets, student, 1.0, w));
        let want = (2f64.ln() + 2f64.ln()) / 6.0 - (0.75f64).ln() / 3.0;
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
    }

    #[test]
    fn sinkhorn_balances_prototypes_and_samples() {
        // 4 samples, 3 prototypes, one prototype dominating every row before balancing.
        let logits = rows(&[
            vec![3.0, 0.0, 0.5],
            vec![2.5, 0.2, 0.1],
            vec![2.0, 1.0, 0.0],
            vec![4.0, 0.3, 0.9],
        ]);
        let q = crate::host::to_f32(sinkhorn_knopp(logits, 1.0, 50));
        for row in q.chunks_exact(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{q:?}");
        }
        for k in 0..3 {
            let column: f32 = q.chunks_exact(3).map(|r| r[k]).sum();
            assert!((column - 4.0 / 3.0).abs() < 1e-3, "prototype {k}: {column}");
        }
    }

    #[test]
    fn sinkhorn_matches_hand_computed_iterations() {
        // 2 samples × 2 prototypes, τ = 1: Q = exp([[0, ln 3], [0, 0]]) = [[1, 3], [1, 1]], / 6.
        // Prototype sums (2/6, 4/6): column normalisation (÷ sum·K) gives [[1/4, 3/8], [1/4, 1/8]];
        // sample sums (5/8, 3/8): row normalisation (÷ sum·B) gives [[1/5, 3/10], [1/3, 1/6]];
        // × B = 2: [[0.4, 0.6], [2/3, 1/3]].
        let logits = rows(&[vec![0.0, 3f64.ln()], vec![0.0, 0.0]]);
        let q = crate::host::to_f32(sinkhorn_knopp(logits, 1.0, 1));
        for (g, w) in q.iter().zip([0.4, 0.6, 2.0 / 3.0, 1.0 / 3.0]) {
            assert!((*g as f64 - w).abs() < 1e-6, "{q:?}");
        }
    }

    #[test]
    fn koleo_matches_known_point_sets() {
        // Four points at 0°, 90°, 180°, 270°: every nearest neighbour is √2 away.
        let square = rows(&[
            vec![1.0, 0.0],
            vec![0.0, 2.0],
            vec![-3.0, 0.0],
            vec![0.0, -1.0],
        ]);
        let want = -(2f64.sqrt()).ln();
        assert!((scalar(koleo(square, 0.0)) - want).abs() < 1e-6);
        // 0°, 10°, 180°: the close pair is 2 sin 5° apart, the third point 2 sin 85° from 10°.
        let d = |deg: f64| (deg.to_radians().cos(), deg.to_radians().sin());
        let pts: Rows = [0.0, 10.0, 180.0]
            .iter()
            .map(|&a| {
                let (c, s) = d(a);
                vec![c, s]
            })
            .collect();
        let near = 2.0 * 5f64.to_radians().sin();
        let far = 2.0 * 85f64.to_radians().sin();
        let want = -(2.0 * near.ln() + far.ln()) / 3.0;
        assert!((scalar(koleo(rows(&pts), 0.0)) - want).abs() < 1e-5);
    }

    #[test]
    fn koleo_gradient_matches_finite_differences() {
        let x: Rows = vec![
            vec![1.0, 0.2, -0.3],
            vec![0.1, 1.0, 0.4],
            vec![-0.5, 0.3, 1.0],
            vec![0.9, 0.4, -0.1],
        ];
        let reference = |x: &Rows| {
            let unit: Vec<Vec<f64>> = x
                .iter()
                .map(|r| {
                    let n = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                    r.iter().map(|v| v / n).collect()
                })
                .collect();
            let dist = |a: &[f64], b: &[f64]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| (p - q).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            -(0..unit.len())
                .map(|i| {
                    (0..unit.len())
                        .filter(|&j| j != i)
                        .map(|j| dist(&unit[i], &unit[j]))
                        .fold(f64::INFINITY, f64::min)
                        .ln()
                })
                .sum::<f64>()
                / unit.len() as f64
        };
        check_gradient(&x, |t| koleo(t, 0.0), reference);
    }

    #[test]
    fn dino_loss_pairs_each_teacher_crop_with_the_other_crops() {
        // One teacher crop with target [1, 0]; student crops 0 (same view, skipped) and 1 with
        // logits [ln 3, 0] at τ_s = 1: p = [3/4, 1/4], loss −ln(3/4).
        let teacher = rows(&[vec![1.0, 0.0]]);
        let student = rows(&[vec![0.0, 100.0], vec![3f64.ln(), 0.0]]);
        let loss = scalar(dino_loss(teacher, student, 1, 1.0));
        assert!((loss - (4.0f64 / 3.0).ln()).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn centering_and_sharpening() {
        // Centre [1, 0] removes the first logit's lead; τ_t = 0.5 doubles the remaining gap.
        let p = crate::host::to_f32(centered_teacher(
            rows(&[vec![1.0, 0.5]]),
            rows(&[vec![1.0, 0.0]]),
            0.5,
        ));
        let e = 1f64.exp();
        assert!((p[0] as f64 - 1.0 / (1.0 + e)).abs() < 1e-6, "{p:?}");
        let c = crate::host::to_f32(update_center(
            rows(&[vec![0.0, 0.0]]),
            rows(&[vec![2.0, 4.0], vec![4.0, 0.0]]),
            0.9,
        ));
        assert!(
            (c[0] - 0.3).abs() < 1e-6 && (c[1] - 0.2).abs() < 1e-6,
            "{c:?}"
        );
    }
}
