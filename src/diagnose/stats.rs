//! Collapse statistics of a set of embeddings and the verdict drawn from them.

use serde::Serialize;

use super::spectrum::{effective_rank, symmetric_eigenvalues};

/// Below this fraction of the healthy per-dimension std (1/√d), outputs are (nearly) identical.
pub const COMPLETE_COLLAPSE_STD_RATIO: f64 = 0.1;
/// Below this fraction of the dimension, the effective rank says variation lives in few directions.
pub const DIMENSIONAL_COLLAPSE_RANK_FRACTION: f64 = 0.05;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
pub struct CollapseStats {
    pub samples: usize,
    pub dim: usize,
    /// Mean over dimensions of the std of L2-normalised embeddings.
    pub embedding_std: f64,
    /// What a healthy (isotropic) embedding would have: 1/√d.
    pub healthy_std: f64,
    /// RankMe of the embedding matrix.
    pub effective_rank: f64,
    /// Eigenvalues (= singular values) of the covariance of the L2-normalised embeddings.
    pub singular_values: Vec<f64>,
    pub verdict: Verdict,
}

impl CollapseStats {
    pub fn std_ratio(&self) -> f64 {
        self.embedding_std / self.healthy_std
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
    // Per-dimension std averaged over dimensions: from the covariance diagonal via the trace
    // would give RMS; compute the mean of the stds directly.
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
    let verdict = if embedding_std / healthy_std < COMPLETE_COLLAPSE_STD_RATIO {
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
        effective_rank,
        singular_values: eig,
        verdict,
    }
}
