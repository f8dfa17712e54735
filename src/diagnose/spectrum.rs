//! Eigenvalues of a symmetric matrix (cyclic Jacobi, f64) — enough for D×D embedding covariances.

/// Eigenvalues of the symmetric `n × n` row-major matrix `a`, sorted descending.
pub fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    let scale: f64 = a
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off.sqrt() <= 1e-13 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut eig: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    eig.sort_by(|x, y| y.total_cmp(x));
    eig
}

/// RankMe / effective rank (Roy & Vetterli 2007): exp of the entropy of σ_k / Σσ.
pub fn effective_rank(singular_values: &[f64]) -> f64 {
    let total: f64 = singular_values.iter().map(|s| s.max(0.0)).sum();
    if total <= 0.0 {
        return 1.0;
    }
    let eps = 1e-7;
    let entropy: f64 = singular_values
        .iter()
        .map(|s| s.max(0.0) / total + eps)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigenvalues_of_known_matrices() {
        let e = symmetric_eigenvalues(vec![2.0, 1.0, 1.0, 2.0], 2);
        assert!((e[0] - 3.0).abs() < 1e-10 && (e[1] - 1.0).abs() < 1e-10);
        // diag(1,2,3) rotated stays {3,2,1}: A = [[2,0,-1],[0,2,0]...] use a tridiagonal one:
        // [[2,-1,0],[-1,2,-1],[0,-1,2]] has eigenvalues 2−√2, 2, 2+√2.
        let e = symmetric_eigenvalues(vec![2.0, -1.0, 0.0, -1.0, 2.0, -1.0, 0.0, -1.0, 2.0], 3);
        let s = std::f64::consts::SQRT_2;
        assert!(
            (e[0] - (2.0 + s)).abs() < 1e-10
                && (e[1] - 2.0).abs() < 1e-10
                && (e[2] - (2.0 - s)).abs() < 1e-10
        );
    }

    #[test]
    fn effective_rank_bounds() {
        assert!((effective_rank(&[1.0; 8]) - 8.0).abs() < 1e-4);
        assert!((effective_rank(&[1.0, 0.0, 0.0, 0.0]) - 1.0).abs() < 1e-4);
        // p = (0.5, 0.5, 0, 0) → entropy ln 2 → rank 2.
        assert!((effective_rank(&[3.0, 3.0, 0.0, 0.0]) - 2.0).abs() < 1e-4);
    }
}
