//! Eigenvalues of a symmetric matrix (f64): Householder reduction to tridiagonal form, then the
//! implicit QL algorithm. O(n³) once, so a 1024-wide projector's covariance takes about a second
//! (cyclic Jacobi, kept as the test reference, needs minutes there).

/// Eigenvalues of the symmetric `n × n` row-major matrix `a`, sorted descending.
pub fn symmetric_eigenvalues(a: Vec<f64>, n: usize) -> Vec<f64> {
    let (mut d, mut e) = tridiagonalize(a, n);
    tridiagonal_ql(&mut d, &mut e);
    d.sort_by(|x, y| y.total_cmp(x));
    d
}

/// Householder reduction (lower triangle) to diagonal `d` and sub-diagonal `e` (`e[0]` unused).
fn tridiagonalize(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    for i in (1..n).rev() {
        let l = i - 1;
        let mut h = 0.0;
        if l > 0 {
            let scale: f64 = (0..=l).map(|k| a[i * n + k].abs()).sum();
            if scale == 0.0 {
                e[i] = a[i * n + l];
            } else {
                for k in 0..=l {
                    a[i * n + k] /= scale;
                    h += a[i * n + k] * a[i * n + k];
                }
                let f = a[i * n + l];
                let g = if f >= 0.0 { -h.sqrt() } else { h.sqrt() };
                e[i] = scale * g;
                h -= f * g;
                a[i * n + l] = f - g;
                let mut f = 0.0;
                for j in 0..=l {
                    let mut g = 0.0;
                    for k in 0..=j {
                        g += a[j * n + k] * a[i * n + k];
                    }
                    for k in j + 1..=l {
                        g += a[k * n + j] * a[i * n + k];
                    }
                    e[j] = g / h;
                    f += e[j] * a[i * n + j];
                }
                let hh = f / (h + h);
                for j in 0..=l {
                    let f = a[i * n + j];
                    let g = e[j] - hh * f;
                    e[j] = g;
                    for k in 0..=j {
                        a[j * n + k] -= f * e[k] + g * a[i * n + k];
                    }
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
    }
    for (i, di) in d.iter_mut().enumerate() {
        *di = a[i * n + i];
    }
    (d, e)
}

/// Implicit QL with Wilkinson shifts on a symmetric tridiagonal matrix; `d` becomes the
/// eigenvalues.
fn tridiagonal_ql(d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    if n == 0 {
        return;
    }
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l || iterations == 60 {
                break;
            }
            iterations += 1;
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
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

    /// Cyclic Jacobi: slow but simple, the reference the fast solver is checked against.
    fn jacobi_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
        for _sweep in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                .map(|(i, j)| a[i * n + j].powi(2))
                .sum();
            if off.sqrt() < 1e-14 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    let apq = a[p * n + q];
                    if apq.abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                    let t = if theta == 0.0 {
                        1.0
                    } else {
                        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                    };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for k in 0..n {
                        let (akp, akq) = (a[k * n + p], a[k * n + q]);
                        a[k * n + p] = c * akp - s * akq;
                        a[k * n + q] = s * akp + c * akq;
                    }
                    for k in 0..n {
                        let (apk, aqk) = (a[p * n + k], a[q * n + k]);
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

    #[test]
    fn matches_jacobi_on_random_covariances() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (n, rank) in [(1, 1), (5, 5), (40, 40), (40, 3), (64, 1)] {
            // A covariance of `rank` random directions, with repeated and zero eigenvalues.
            let vecs: Vec<Vec<f64>> = (0..rank)
                .map(|_| (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect();
            let mut a = vec![0f64; n * n];
            for v in &vecs {
                for i in 0..n {
                    for j in 0..n {
                        a[i * n + j] += v[i] * v[j];
                    }
                }
            }
            let fast = symmetric_eigenvalues(a.clone(), n);
            let slow = jacobi_eigenvalues(a, n);
            let scale = slow[0].abs().max(1.0);
            for (f, s) in fast.iter().zip(&slow) {
                assert!(
                    (f - s).abs() < 1e-9 * scale,
                    "n={n} rank={rank}: {fast:?} vs {slow:?}"
                );
            }
        }
    }

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
