//! Training-mode batch normalisation over NCHW, optionally fused with a ReLU, forward and
//! backward in two passes each (burn's composed version makes a dozen, with transposes).
//!
//! Statistics are the biased batch mean and variance per channel, accumulated in f64.

use rayon::prelude::*;

/// `[batch, channels, spatial]` of an NCHW tensor with `spatial = h·w`.
#[derive(Clone, Copy, Debug)]
pub struct Planes {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl Planes {
    fn count(&self) -> f64 {
        (self.batch * self.spatial) as f64
    }

    /// Per channel, `f(plane)` summed over the batch, channels in parallel.
    fn per_channel<F>(&self, f: F) -> Vec<(f64, f64)>
    where
        F: Fn(usize, usize) -> (f64, f64) + Sync,
    {
        (0..self.channels)
            .into_par_iter()
            .map(|c| {
                (0..self.batch).fold((0.0, 0.0), |acc, b| {
                    let (s, t) = f(b, c);
                    (acc.0 + s, acc.1 + t)
                })
            })
            .collect()
    }

    fn plane(&self, b: usize, c: usize) -> std::ops::Range<usize> {
        let start = (b * self.channels + c) * self.spatial;
        start..start + self.spatial
    }
}

fn inv_std(var: f32, epsilon: f64) -> f32 {
    (1.0 / (var as f64 + epsilon).sqrt()) as f32
}

/// Returns `(y, mean, var)`.
pub fn forward(
    p: Planes,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.batch * p.channels * p.spatial);
    let sums = p.per_channel(|b, c| {
        x[p.plane(b, c)].iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
            let v = v as f64;
            (s + v, q + v * v)
        })
    });
    let n = p.count();
    let mean: Vec<f32> = sums.iter().map(|(s, _)| (s / n) as f32).collect();
    let var: Vec<f32> = sums
        .iter()
        .map(|(s, q)| ((q / n) - (s / n) * (s / n)).max(0.0) as f32)
        .collect();
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(p.spatial.max(1))
        .zip(x.par_chunks(p.spatial.max(1)))
        .enumerate()
        .for_each(|(i, (out, inp))| {
            let c = i % p.channels;
            let scale = gamma[c] * inv_std(var[c], epsilon);
            let shift = beta[c] - mean[c] * scale;
            if relu {
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = (v * scale + shift).max(0.0);
                }
            } else {
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = v * scale + shift;
                }
            }
        });
    (y, mean, var)
}

/// Gradients `(dx, dgamma, dbeta)`. With `relu`, `y` is the forward output (its zeros mask `dy`).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    p: Planes,
    x: &[f32],
    y: Option<&[f32]>,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let masked = |i: usize| match y {
        Some(y) if y[i] <= 0.0 => 0.0,
        _ => dy[i],
    };
    let sums = p.per_channel(|b, c| {
        let (m, s) = (mean[c], inv_std(var[c], epsilon));
        p.plane(b, c).fold((0.0f64, 0.0f64), |(sd, sdx), i| {
            let g = masked(i);
            (sd + g as f64, sdx + (g * (x[i] - m) * s) as f64)
        })
    });
    let n = p.count();
    let dbeta: Vec<f32> = sums.iter().map(|(sd, _)| *sd as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|(_, sdx)| *sdx as f32).collect();
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(p.spatial.max(1))
        .enumerate()
        .for_each(|(plane, out)| {
            let c = plane % p.channels;
            let s = inv_std(var[c], epsilon);
            let (mean_dy, mean_dy_xhat) = ((sums[c].0 / n) as f32, (sums[c].1 / n) as f32);
            let scale = gamma[c] * s;
            let start = plane * p.spatial;
            for (j, o) in out.iter_mut().enumerate() {
                let i = start + j;
                let xhat = (x[i] - mean[c]) * s;
                *o = scale * (masked(i) - mean_dy - xhat * mean_dy_xhat);
            }
        });
    (dx, dgamma, dbeta)
}
