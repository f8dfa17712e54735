//! VICReg's variance / invariance / covariance loss (Bardes et al. 2022).

use burn::tensor::Tensor;

/// The weights λ (invariance), μ (variance), ν (covariance); the paper's are 25 / 25 / 1.
#[derive(Clone, Copy, Debug)]
pub struct VicRegWeights {
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
}

impl Default for VicRegWeights {
    fn default() -> Self {
        VicRegWeights {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
        }
    }
}

/// The weighted loss and each unweighted term, for logging.
pub struct VicRegTerms {
    pub loss: Tensor<1>,
    /// Mean squared error between the two views' embeddings.
    pub invariance: Tensor<1>,
    /// Mean hinge max(0, 1 − √(Var(z_j) + 1e-4)), averaged over both views.
    pub variance: Tensor<1>,
    /// Σ of squared off-diagonal covariances / d, summed over both views.
    pub covariance: Tensor<1>,
}

fn variance_term(centered: Tensor<2>, n: usize) -> Tensor<1> {
    let var = centered.square().sum_dim(0).div_scalar((n - 1) as f64);
    let std = var.add_scalar(1e-4).sqrt();
    std.neg().add_scalar(1.0).clamp_min(0.0).mean()
}

fn covariance_term(centered: Tensor<2>, n: usize) -> Tensor<1> {
    let [_, d] = centered.dims();
    let var = centered
        .clone()
        .square()
        .sum_dim(0)
        .div_scalar((n - 1) as f64);
    let cov = centered
        .clone()
        .transpose()
        .matmul(centered)
        .div_scalar((n - 1) as f64);
    (cov.square().sum() - var.square().sum()).div_scalar(d as f64)
}

/// VICReg on two views' embeddings `[n, d]`, n ≥ 2 (the variance uses n − 1). For a constant
/// batch the variance term is 1 − √1e-4 = 0.99 per view and the covariance term 0 — finite, and
/// large enough to push the embeddings apart.
pub fn vicreg(z1: Tensor<2>, z2: Tensor<2>, weights: VicRegWeights) -> VicRegTerms {
    let [n, _] = z1.dims();
    assert!(n >= 2, "VICReg needs at least two samples per batch");
    let invariance = (z1.clone() - z2.clone()).square().mean();
    let a = z1.clone() - z1.mean_dim(0);
    let b = z2.clone() - z2.mean_dim(0);
    let variance = (variance_term(a.clone(), n) + variance_term(b.clone(), n)).div_scalar(2.0);
    let covariance = covariance_term(a, n) + covariance_term(b, n);
    VicRegTerms {
        loss: invariance.clone().mul_scalar(weights.invariance)
            + variance.clone().mul_scalar(weights.variance)
            + covariance.clone().mul_scalar(weights.covariance),
        invariance,
        variance,
        covariance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{Rows, check_gradient, rows, scalar};

    fn centered(z: &Rows) -> Rows {
        let (n, d) = (z.len(), z[0].len());
        let means: Vec<f64> = (0..d)
            .map(|j| z.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        z.iter()
            .map(|r| r.iter().zip(&means).map(|(v, m)| v - m).collect())
            .collect()
    }

    fn var_cov(z: &Rows) -> (f64, f64) {
        let c = centered(z);
        let (n, d) = (c.len(), c[0].len());
        let cov =
            |i: usize, j: usize| (0..n).map(|k| c[k][i] * c[k][j]).sum::<f64>() / (n - 1) as f64;
        let var = (0..d)
            .map(|j| (1.0 - (cov(j, j) + 1e-4).sqrt()).max(0.0))
            .sum::<f64>()
            / d as f64;
        let mut off = 0.0;
        for i in 0..d {
            for j in 0..d {
                if i != j {
                    off += cov(i, j).powi(2);
                }
            }
        }
        (var, off / d as f64)
    }

    fn reference(a: &Rows, b: &Rows, w: VicRegWeights) -> [f64; 4] {
        let (n, d) = (a.len(), a[0].len());
        let inv = (0..n)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| (a[i][j] - b[i][j]).powi(2))
            .sum::<f64>()
            / (n * d) as f64;
        let (va, ca) = var_cov(a);
        let (vb, cb) = var_cov(b);
        let var = (va + vb) / 2.0;
        let cov = ca + cb;
        [
            w.invariance * inv + w.variance * var + w.covariance * cov,
            inv,
            var,
            cov,
        ]
    }

    fn sample(n: usize, d: usize, seed: usize) -> Rows {
        (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| ((i * 3 + j * 5 + seed * 7) % 11) as f64 / 8.0 - 0.6)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn matches_the_papers_formula_term_by_term() {
        let (a, b) = (sample(7, 4, 1), sample(7, 4, 2));
        let w = VicRegWeights::default();
        let t = vicreg(rows(&a), rows(&b), w);
        let want = reference(&a, &b, w);
        let got = [t.loss, t.invariance, t.variance, t.covariance].map(scalar);
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-5 * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn batch_of_two_hand_value() {
        // z1 = [(0,0),(2,2)], z2 = [(0,0),(2,0)]. Invariance: (0+0+0+4)/4 = 1.
        // z1: var 2 per column (n−1 = 1) → std √2.0001 > 1, no hinge; cov 2 off-diagonal twice → 8/2 = 4.
        // z2: column 0 var 2 (no hinge), column 1 var 0 → hinge 1 − 0.01 = 0.99; mean over 2 dims
        // 0.495; covariance 0. Variance term (0 + 0.495)/2 = 0.2475; covariance 4.
        let z1 = rows(&[vec![0.0, 0.0], vec![2.0, 2.0]]);
        let z2 = rows(&[vec![0.0, 0.0], vec![2.0, 0.0]]);
        let t = vicreg(z1, z2, VicRegWeights::default());
        assert!((scalar(t.invariance) - 1.0).abs() < 1e-6);
        assert!((scalar(t.variance) - 0.2475).abs() < 1e-6);
        assert!((scalar(t.covariance) - 4.0).abs() < 1e-5);
        assert!((scalar(t.loss) - (25.0 + 25.0 * 0.2475 + 4.0)).abs() < 1e-4);
    }

    #[test]
    fn constant_batch_is_finite() {
        let z = vec![vec![1.5, -0.5, 0.25]; 5];
        let t = vicreg(rows(&z), rows(&z), VicRegWeights::default());
        assert!((scalar(t.variance) - 0.99).abs() < 1e-6);
        assert_eq!(scalar(t.covariance), 0.0);
        assert_eq!(scalar(t.invariance), 0.0);
        assert!((scalar(t.loss) - 25.0 * 0.99).abs() < 1e-4);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (a, b) = (sample(5, 3, 3), sample(5, 3, 4));
        let w = VicRegWeights::default();
        check_gradient(
            &a,
            |x| vicreg(x, rows(&b), w).loss,
            |x| reference(x, &b, w)[0],
        );
    }
}
