//! Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021).

use burn::tensor::Tensor;

/// The loss and its two parts, for logging.
pub struct BarlowTerms {
    /// Σ(1 − C_ii)² + λ Σ_{i≠j} C_ij².
    pub loss: Tensor<1>,
    /// Σ(1 − C_ii)²: how far the views are from perfectly correlated, dimension by dimension.
    pub invariance: Tensor<1>,
    /// Σ_{i≠j} C_ij² (before λ): redundancy between dimensions.
    pub redundancy: Tensor<1>,
}

/// Each column standardised over the batch, as the paper's affine-free BatchNorm (biased variance,
/// ε = 1e-5). A constant column becomes all zeros rather than NaN.
pub fn standardize_batch(z: Tensor<2>) -> Tensor<2> {
    let mean = z.clone().mean_dim(0);
    let centered = z - mean;
    let var = centered.clone().square().mean_dim(0);
    centered / var.add_scalar(1e-5).sqrt()
}

/// Barlow Twins on two views' embeddings `[n, d]`: C = z̃₁ᵀz̃₂ / n of the batch-standardised
/// embeddings. For a constant batch C = 0, so the loss is exactly d (no NaN).
pub fn barlow_twins(z1: Tensor<2>, z2: Tensor<2>, lambda: f64) -> BarlowTerms {
    let [n, _] = z1.dims();
    let a = standardize_batch(z1);
    let b = standardize_batch(z2);
    let diag = (a.clone() * b.clone()).sum_dim(0).div_scalar(n as f64);
    let c = a.transpose().matmul(b).div_scalar(n as f64);
    let invariance = diag.clone().sub_scalar(1.0).square().sum();
    let redundancy = c.square().sum() - diag.square().sum();
    BarlowTerms {
        loss: invariance.clone() + redundancy.clone().mul_scalar(lambda),
        invariance,
        redundancy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{Rows, check_gradient, rows, scalar};

    fn standardize(z: &Rows) -> Rows {
        let (n, d) = (z.len(), z[0].len());
        let mut out = z.clone();
        for j in 0..d {
            let mean = z.iter().map(|r| r[j]).sum::<f64>() / n as f64;
            let var = z.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                out[i][j] = (z[i][j] - mean) / (var + 1e-5).sqrt();
            }
        }
        out
    }

    #[allow(clippy::needless_range_loop)] // the cross-correlation's definition, index by index
    fn reference(z1: &Rows, z2: &Rows, lambda: f64) -> (f64, f64, f64) {
        let (a, b) = (standardize(z1), standardize(z2));
        let (n, d) = (a.len(), a[0].len());
        let (mut on, mut off) = (0.0, 0.0);
        for i in 0..d {
            for j in 0..d {
                let c = (0..n).map(|k| a[k][i] * b[k][j]).sum::<f64>() / n as f64;
                if i == j {
                    on += (1.0 - c).powi(2);
                } else {
                    off += c * c;
                }
            }
        }
        (on + lambda * off, on, off)
    }

    fn sample(n: usize, d: usize, seed: usize) -> Rows {
        (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| ((i * 5 + j * 7 + seed * 3) % 13) as f64 / 4.0 - 1.5)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn matches_the_papers_formula() {
        let (a, b) = (sample(8, 5, 1), sample(8, 5, 2));
        for lambda in [5e-3, 0.5, 1.0] {
            let terms = barlow_twins(rows(&a), rows(&b), lambda);
            let (loss, on, off) = reference(&a, &b, lambda);
            for (got, want) in [
                (scalar(terms.loss), loss),
                (scalar(terms.invariance), on),
                (scalar(terms.redundancy), off),
            ] {
                assert!((got - want).abs() < 1e-5 * want.max(1.0), "{got} vs {want}");
            }
        }
    }

    #[test]
    fn batch_of_two_hand_value() {
        // Two samples standardise a column with spread ±1 (variance 1) to ±1/√(1+1e-5) and one
        // with ±0.5 (variance 0.25) to ±0.5/√(0.25+1e-5). Every |C_ij| is then
        // s = 1/(√(1+1e-5)·√(1+4e-5)). Column 0 agrees between views (C₀₀ = s), column 1 is
        // flipped (C₁₁ = −s), C₀₁ = −s, C₁₀ = s: loss = (1−s)² + (1+s)² + λ·2s² = 2 + (2 + 2λ)s².
        let z1 = rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]);
        let z2 = rows(&[vec![0.0, 1.0], vec![1.0, 0.0]]);
        let got = scalar(barlow_twins(z1, z2, 0.1).loss);
        let s = 1.0 / ((1.0f64 + 1e-5).sqrt() * (1.0f64 + 4e-5).sqrt());
        let want = 2.0 + 2.2 * s * s;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn constant_batch_returns_dimension_not_nan() {
        let z = vec![vec![0.7, -0.2, 3.0]; 4];
        let terms = barlow_twins(rows(&z), rows(&z), 5e-3);
        assert_eq!(scalar(terms.loss), 3.0);
        assert_eq!(scalar(terms.redundancy), 0.0);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (a, b) = (sample(6, 3, 3), sample(6, 3, 4));
        check_gradient(
            &a,
            |x| barlow_twins(x, rows(&b), 0.1).loss,
            |x| reference(x, &b, 0.1).0,
        );
    }
}
