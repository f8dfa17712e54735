//! Collapse statistics of a set of embeddings and the verdict drawn from them.

use serde::{Deserialize, Serialize};

use super::spectrum::{effective_rank, symmetric_eigenvalues};

/// Below this fraction of the healthy per-dimension std (1/√d), taken as the RMS over dimensions
/// (i.e. total variance of the L2-normalised embeddings below its square), outputs are (nearly)
/// identical. The RMS, not the mean, so that variation squeezed into few dimensions (dimensional
/// collapse) is not mistaken for no variation at all.
pub const COMPLETE_COLLAPSE_STD_RATIO: f64 = 0.1;
/// For features analysed around their mean: below this RMS distance to the mean, relative to the
/// RMS norm, every image maps to the same point up to float noise (a ViT's pooled tokens keep a
/// few percent).
pub const CENTRED_COLLAPSE_SPREAD: f64 = 1e-4;
/// Below this fraction of the dimension, the effective rank says variation lives in few directions.
pub const DIMENSIONAL_COLLAPSE_RANK_FRACTION: f64 = 0.05;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    DimensionalCollapse,
    CompleteCollapse,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::DimensionalCollapse => "dimensional_collapse",
            Verdict::CompleteCollapse => "complete_collapse",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Verdict::Healthy => "embeddings vary across images and spread over many directions",
            Verdict::DimensionalCollapse => {
                "embeddings vary, but only along a few directions: the singular-value spectrum falls off a cliff"
            }
            Verdict::CompleteCollapse => {
                "all images map to (nearly) the same embedding: the per-dimension std of the L2-normalised embeddings is close to 0"
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollapseStats {
    pub samples: usize,
    pub dim: usize,
    /// Mean over dimensions of the std of L2-normalised embeddings.
    pub embedding_std: f64,
    /// What a healthy (isotropic) embedding would have: 1/√d.
    pub healthy_std: f64,
    /// Total variance (covariance trace) of the L2-normalised embeddings: 0 when collapsed.
    pub total_variance: f64,
    /// RankMe of the embedding matrix.
    pub effective_rank: f64,
    /// Eigenvalues (= singular values) of the covariance of the L2-normalised embeddings.
    pub singular_values: Vec<f64>,
    pub verdict: Verdict,
    /// Set when the features were analysed around their mean (see [`analyze_centred`]): their RMS
    /// distance to the mean relative to their RMS norm, before centring.
    pub spread: Option<f64>,
    /// What the method's own signals say on the same images (a tokenizer's codebook usage, a
    /// self-distillation teacher's entropies).
    #[serde(flatten)]
    pub readings: super::monitor::Readings,
}

impl CollapseStats {
    /// RMS per-dimension std relative to the healthy 1/√d (= √(total variance)).
    pub fn std_ratio(&self) -> f64 {
        self.total_variance.sqrt()
    }
}

/// Analyses `n × d` row-major embeddings.
pub fn analyze(embeddings: &[f32], n: usize, d: usize) -> CollapseStats {
    assert!(n >= 2 && d >= 1 && embeddings.len() == n * d);
    let mut x: Vec<f64> = embeddings.iter().map(|&v| v as f64).collect();
    for row in x.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let mut mean = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    for row in x.chunks_exact_mut(d) {
        for (v, m) in row.iter_mut().zip(&mean) {
            *v -= m;
        }
    }
    // Covariance D×D (or the n×n Gram when fewer samples than dims: same non-zero spectrum).
    let (size, gram) = if n >= d {
        let mut c = vec![0f64; d * d];
        for row in x.chunks_exact(d) {
            for i in 0..d {
                let ri = row[i];
                if ri == 0.0 {
                    continue;
                }
                for j in i..d {
                    c[i * d + j] += ri * row[j];
                }
            }
        }
        (d, c)
    } else {
        let mut g = vec![0f64; n * n];
        for i in 0..n {
            for j in i..n {
                g[i * n + j] = (0..d).map(|k| x[i * d + k] * x[j * d + k]).sum();
            }
        }
        (n, g)
    };
    let mut cov = gram;
    for i in 0..size {
        for j in 0..i {
            cov[i * size + j] = cov[j * size + i];
        }
    }
    cov.iter_mut().for_each(|v| *v /= (n - 1) as f64);
    let mut eig: Vec<f64> = symmetric_eigenvalues(cov, size)
        .into_iter()
        .map(|e| e.max(0.0))
        .collect();
    eig.resize(d, 0.0);
    let variance_sum: f64 = eig.iter().sum();
    let embedding_std = (0..d)
        .map(|k| {
            let var: f64 = x.chunks_exact(d).map(|r| r[k] * r[k]).sum::<f64>() / (n - 1) as f64;
            var.sqrt()
        })
        .sum::<f64>()
        / d as f64;
    let singular: Vec<f64> = eig.iter().map(|e| e.sqrt()).collect();
    let effective_rank = if variance_sum > 0.0 {
        effective_rank(&singular)
    } else {
        1.0
    };
    let healthy_std = 1.0 / (d as f64).sqrt();
    let verdict = if variance_sum.sqrt() < COMPLETE_COLLAPSE_STD_RATIO {
        Verdict::CompleteCollapse
    } else if effective_rank < (DIMENSIONAL_COLLAPSE_RANK_FRACTION * d as f64).max(2.0) {
        Verdict::DimensionalCollapse
    } else {
        Verdict::Healthy
    };
    CollapseStats {
        samples: n,
        dim: d,
        embedding_std,
        healthy_std,
        total_variance: variance_sum,
        effective_rank,
        singular_values: eig,
        verdict,
        spread: None,
        readings: Default::default(),
    }
}

/// For features with a large offset shared by every image (a ViT's pooled tokens carry the final
/// norm's bias and the average position embedding): the shared mean is removed before the usual
/// analysis, so the verdict reads how the features differ between images. Complete collapse is
/// then a spread around the mean below [`CENTRED_COLLAPSE_SPREAD`] of the features' norm.
pub fn analyze_centred(embeddings: &[f32], n: usize, d: usize) -> CollapseStats {
    assert!(n >= 2 && d >= 1 && embeddings.len() == n * d);
    let mut mean = vec![0f64; d];
    for row in embeddings.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n as f64;
        }
    }
    let (mut energy, mut deviation) = (0.0, 0.0);
    let centred: Vec<f32> = embeddings
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| (v, v as f64 - m)))
        .map(|(v, c)| {
            energy += (v as f64).powi(2);
            deviation += c * c;
            c as f32
        })
        .collect();
    let spread = (deviation / energy.max(1e-300)).sqrt();
    let mut stats = analyze(&centred, n, d);
    if spread < CENTRED_COLLAPSE_SPREAD {
        stats.verdict = Verdict::CompleteCollapse;
    }
    stats.spread = Some(spread);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn gaussian(n: usize, d: usize, rank: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut normal = || {
            let (u, v): (f64, f64) = (rng.random_range(1e-9..1.0), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        (0..n)
            .flat_map(|_| {
                let mut row = vec![0f32; d];
                for v in &mut row[..rank] {
                    *v = normal();
                }
                row
            })
            .collect()
    }

    #[test]
    fn isotropic_gaussian_is_healthy_with_std_near_one_over_sqrt_d() {
        let s = analyze(&gaussian(2000, 32, 32, 1), 2000, 32);
        assert_eq!(s.verdict, Verdict::Healthy);
        assert!((s.std_ratio() - 1.0).abs() < 0.1, "{}", s.std_ratio());
        assert!(s.effective_rank > 28.0, "{}", s.effective_rank);
    }

    #[test]
    fn identical_rows_are_complete_collapse() {
        let row = [0.3f32, -1.0, 2.0, 0.5];
        let data: Vec<f32> = (0..100).flat_map(|_| row).collect();
        let s = analyze(&data, 100, 4);
        assert_eq!(s.verdict, Verdict::CompleteCollapse);
        assert!(s.embedding_std < 1e-6);
    }

    #[test]
    fn variation_in_one_direction_is_dimensional_collapse() {
        // Rank-1 variation around a common offset in 64 dimensions.
        let mut data = gaussian(500, 64, 1, 2);
        for row in data.chunks_exact_mut(64) {
            row[1] += 0.5;
        }
        let s = analyze(&data, 500, 64);
        assert_eq!(
            s.verdict,
            Verdict::DimensionalCollapse,
            "rank {}",
            s.effective_rank
        );
    }

    #[test]
    fn centred_analysis_sees_through_a_shared_offset_but_not_identical_rows() {
        // Isotropic variation of size ~1 on top of an offset of 50 in every dimension: raw, the
        // L2-normalised rows all point the same way; centred, they are healthy.
        let mut data = gaussian(1000, 16, 16, 4);
        data.iter_mut().for_each(|v| *v += 50.0);
        assert_eq!(analyze(&data, 1000, 16).verdict, Verdict::CompleteCollapse);
        let s = analyze_centred(&data, 1000, 16);
        assert_eq!(s.verdict, Verdict::Healthy);
        let spread = s.spread.unwrap();
        assert!((spread - 1.0 / 50.0).abs() < 0.002, "{spread}");
        // Identical rows plus float-noise-sized jitter stay complete collapse.
        let jitter = gaussian(1000, 16, 16, 5);
        let flat: Vec<f32> = jitter.iter().map(|j| 50.0 + 1e-5 * j).collect();
        assert_eq!(
            analyze_centred(&flat, 1000, 16).verdict,
            Verdict::CompleteCollapse
        );
    }

    #[test]
    fn fewer_samples_than_dims_uses_the_gram_matrix() {
        let s = analyze(&gaussian(10, 50, 50, 3), 10, 50);
        assert_eq!(s.singular_values.len(), 50);
        // Centred 10 samples span at most 9 directions.
        assert!(s.singular_values[9] < 1e-9 && s.singular_values[8] > 1e-6);
    }
}
