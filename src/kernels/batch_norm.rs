//! Training-mode batch normalisation over NCHW, optionally fused with a ReLU, forward and
//! backward in two passes each (burn's composed version makes a dozen, with transposes).
//!
//! Statistics are the biased batch mean and variance per channel, accumulated in f64.

use rayon::prelude::*;

use super::simd::lane_sums;

/// Partial sums per statistic: batch norm's summation order, which every training trajectory
/// depends on.
const BN_LANES: usize = 8;

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
    let n = p.count();
    let mean: Vec<f32> = p
        .per_channel(|b, c| {
            let plane = &x[p.plane(b, c)];
            lane_sums::<BN_LANES>(plane.len(), |i| (plane[i], 0.0))
        })
        .iter()
        .map(|(s, _)| (s / n) as f32)
        .collect();
    // Two passes: the centred sum of squares does not cancel catastrophically.
    let var: Vec<f32> = p
        .per_channel(|b, c| {
            let (plane, m) = (&x[p.plane(b, c)], mean[c]);
            lane_sums::<BN_LANES>(plane.len(), |i| ((plane[i] - m) * (plane[i] - m), 0.0))
        })
        .iter()
        .map(|(q, _)| (q / n) as f32)
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
    // With a ReLU, the upstream gradient passes only where the output was positive.
    let masked: Vec<f32>;
    let dy = match y {
        Some(y) => {
            masked = dy
                .par_iter()
                .zip(y.par_iter())
                .map(|(&g, &out)| if out > 0.0 { g } else { 0.0 })
                .collect();
            &masked[..]
        }
        None => dy,
    };
    let sums = p.per_channel(|b, c| {
        let (m, s) = (mean[c], inv_std(var[c], epsilon));
        let range = p.plane(b, c);
        let (xs, gs) = (&x[range.clone()], &dy[range]);
        lane_sums::<BN_LANES>(xs.len(), |i| (gs[i], gs[i] * (xs[i] - m) * s))
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
            let range = plane * p.spatial..(plane + 1) * p.spatial;
            let (xs, gs) = (&x[range.clone()], &dy[range]);
            for ((o, &xv), &g) in out.iter_mut().zip(xs).zip(gs) {
                let xhat = (xv - mean[c]) * s;
                *o = scale * (g - mean_dy - xhat * mean_dy_xhat);
            }
        });
    (dx, dgamma, dbeta)
}
