//! Training-mode batch normalisation over NCHW, optionally fused with a ReLU, forward and
//! backward in two passes each (burn's composed version makes a dozen, with transposes).
//!
//! Statistics are the biased batch mean and variance per channel: f32 lanes within each
//! `[b, c]` plane, planes merged in f64 in batch order (so results do not depend on threads).
//! Outputs are written once, never zero-filled first.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::simd::{LONG_ROW, lane_sum_by, lane_sums_by, vectorized};

/// Planes per parallel task: enough work per task that scheduling does not show.
const TASK_ELEMENTS: usize = 1 << 14;

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

    fn planes_per_task(&self) -> usize {
        TASK_ELEMENTS.div_ceil(self.spatial.max(1))
    }

    /// `f(plane index, plane)` for every `[b, c]` plane, in parallel tasks of whole planes.
    /// `f` should be `#[inline(always)]`, to be compiled for the CPU's SIMD level.
    #[inline(always)]
    fn map_planes<T: Send + Copy + Default>(
        &self,
        x: &[f32],
        f: impl Fn(usize, &[f32]) -> T + Sync,
    ) -> Vec<T> {
        let (spatial, per_task) = (self.spatial.max(1), self.planes_per_task());
        let mut out = vec![T::default(); self.batch * self.channels];
        out.par_chunks_mut(per_task)
            .zip(x.par_chunks(spatial * per_task))
            .enumerate()
            .for_each(|(task, (out, chunk))| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (i, (o, plane)) in
                            out.iter_mut().zip(chunk.chunks_exact(spatial)).enumerate()
                        {
                            *o = f(task * per_task + i, plane);
                        }
                    },
                )
            });
        out
    }

    /// `N` new tensors of `x`'s size whose planes `i` are written by `fill(i, outs)`, planes in
    /// parallel. `fill` must write every element of each of `outs`.
    #[inline(always)]
    fn fill_planes<const N: usize>(
        &self,
        fill: impl Fn(usize, [&mut [MaybeUninit<f32>]; N]) + Sync,
    ) -> [Vec<f32>; N] {
        let (spatial, per_task) = (self.spatial.max(1), self.planes_per_task());
        let len = self.batch * self.channels * self.spatial;
        let mut outs: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
        let mut chunks = outs
            .each_mut()
            .map(|out| out.spare_capacity_mut()[..len].chunks_mut(spatial * per_task));
        let tasks: Vec<[&mut [MaybeUninit<f32>]; N]> = (0..len.div_ceil(spatial * per_task))
            .map(|_| {
                chunks
                    .each_mut()
                    .map(|c| c.next().expect("one chunk per task"))
            })
            .collect();
        tasks
            .into_par_iter()
            .enumerate()
            .for_each(|(task, mut parts)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for i in 0..parts[0].len() / spatial {
                            let planes = parts
                                .each_mut()
                                .map(|part| &mut part[i * spatial..][..spatial]);
                            fill(task * per_task + i, planes);
                        }
                    },
                )
            });
        for out in &mut outs {
            // SAFETY: the tasks' chunks cover all `len` elements of every output, and `fill`
            // writes each element of its planes.
            unsafe { out.set_len(len) };
        }
        outs
    }
}

fn inv_std(var: f32, epsilon: f64) -> f32 {
    (1.0 / (var as f64 + epsilon).sqrt()) as f32
}

/// A plane's mean and centred sum of squares (`LONG` as [`lane_sum_by`]).
#[inline(always)]
fn plane_stats<const LONG: bool>(plane: &[f32]) -> (f64, f64) {
    let m = (lane_sum_by::<LONG>(plane, plane, |v, _| v) / plane.len() as f64) as f32;
    let q = lane_sum_by::<LONG>(plane, plane, |v, _| (v - m) * (v - m));
    (m as f64, q)
}

/// Returns `(y, mean, var)` of `y = act(bn(x) + residual)`, `act` a ReLU when `relu`.
///
/// One read of `x` for the statistics: each plane's mean and centred sum of squares (the plane
/// is still in L1 for its second pass, and centring avoids catastrophic cancellation), merged
/// per channel in batch order by Chan et al.'s formula, then one pass that normalises.
pub fn forward(
    p: Planes,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
    residual: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.batch * p.channels * p.spatial);
    assert!(residual.is_none_or(|r| r.len() == x.len()));
    let plane_stats = if p.spatial >= LONG_ROW {
        p.map_planes(
            x,
            #[inline(always)]
            |_, plane| plane_stats::<true>(plane),
        )
    } else {
        p.map_planes(
            x,
            #[inline(always)]
            |_, plane| plane_stats::<false>(plane),
        )
    };
    let (mut mean, mut var) = (vec![0.0f32; p.channels], vec![0.0f32; p.channels]);
    for c in 0..p.channels {
        let stats = || (0..p.batch).map(|b| plane_stats[b * p.channels + c]);
        let m = stats().map(|(m, _)| m).sum::<f64>() / p.batch as f64;
        let q: f64 = stats()
            .map(|(pm, pq)| pq + p.spatial as f64 * (pm - m) * (pm - m))
            .sum();
        mean[c] = m as f32;
        var[c] = (q / p.count()) as f32;
    }
    let scales: Vec<(f32, f32)> = (0..p.channels)
        .map(|c| {
            let scale = gamma[c] * inv_std(var[c], epsilon);
            (scale, beta[c] - mean[c] * scale)
        })
        .collect();
    let [y] = p.fill_planes(
        #[inline(always)]
        |i, [out]| {
            let range = i * p.spatial..(i + 1) * p.spatial;
            let inp = &x[range.clone()];
            let (scale, shift) = scales[i % p.channels];
            match (residual, relu) {
                (Some(r), true) => {
                    for ((o, &v), &r) in out.iter_mut().zip(inp).zip(&r[range]) {
                        o.write((v * scale + shift + r).max(0.0));
                    }
                }
                (Some(r), false) => {
                    for ((o, &v), &r) in out.iter_mut().zip(inp).zip(&r[range]) {
                        o.write(v * scale + shift + r);
                    }
                }
                (None, true) => {
                    for (o, &v) in out.iter_mut().zip(inp) {
                        o.write((v * scale + shift).max(0.0));
                    }
                }
                (None, false) => {
                    for (o, &v) in out.iter_mut().zip(inp) {
                        o.write(v * scale + shift);
                    }
                }
            }
        },
    );
    (y, mean, var)
}

/// Gradients of a [`forward`]: `(dx, dgamma, dbeta, dresidual)`, `dresidual` only when
/// `residual_grad`. With a ReLU, `y` is the forward output (its zeros mask `dy`).
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
    residual_grad: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let stats = Stats {
        gamma,
        mean,
        var,
        epsilon,
    };
    match (y, residual_grad) {
        (Some(y), false) => backward_masked::<true, false>(p, x, y, stats, dy),
        (Some(y), true) => backward_masked::<true, true>(p, x, y, stats, dy),
        (None, false) => backward_masked::<false, false>(p, x, dy, stats, dy),
        (None, true) => backward_masked::<false, true>(p, x, dy, stats, dy),
    }
}

/// The forward pass's affine parameter and statistics, per channel.
#[derive(Clone, Copy)]
struct Stats<'a> {
    gamma: &'a [f32],
    mean: &'a [f32],
    var: &'a [f32],
    epsilon: f64,
}

/// [`backward`] where, with `RELU`, the upstream gradient passes only where `y` was positive;
/// with `RESIDUAL`, that passed gradient is also the residual's.
#[inline(always)]
fn backward_masked<const RELU: bool, const RESIDUAL: bool>(
    p: Planes,
    x: &[f32],
    y: &[f32],
    stats: Stats<'_>,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let Stats {
        gamma,
        mean,
        var,
        epsilon,
    } = stats;
    // Plane `i`'s channel mean, dy and y (only indexing, like `planes` below).
    let others = |i: usize| {
        let range = i * p.spatial..(i + 1) * p.spatial;
        (mean[i % p.channels], &dy[range.clone()], &y[range])
    };
    let plane_sums = if p.spatial >= LONG_ROW {
        p.map_planes(
            x,
            #[inline(always)]
            |i, xs| gradient_sums::<RELU, true>(xs, others(i)),
        )
    } else {
        p.map_planes(
            x,
            #[inline(always)]
            |i, xs| gradient_sums::<RELU, false>(xs, others(i)),
        )
    };
    let sums: Vec<(f64, f64)> = (0..p.channels)
        .map(|c| {
            (0..p.batch)
                .map(|b| plane_sums[b * p.channels + c])
                .fold((0.0, 0.0), |acc, (s, t)| (acc.0 + s, acc.1 + t))
        })
        .collect();
    let n = p.count();
    let dbeta: Vec<f32> = sums.iter().map(|(sd, _)| *sd as f32).collect();
    let dgamma: Vec<f32> = sums
        .iter()
        .zip(var)
        .map(|((_, sdx), &v)| (sdx * inv_std(v, epsilon) as f64) as f32)
        .collect();
    // Per channel: (γ·s, mean(dy), mean(dy·x̂), s, mean).
    let coefficients: Vec<[f32; 5]> = (0..p.channels)
        .map(|c| {
            let s = inv_std(var[c], epsilon);
            let (mean_dy, mean_dy_xhat) = ((sums[c].0 / n) as f32, (sums[c].1 / n) as f32 * s);
            [gamma[c] * s, mean_dy, mean_dy_xhat, s, mean[c]]
        })
        .collect();
    // Only indexing: no arithmetic that would need the SIMD level's code generation.
    let planes = |i: usize| {
        let range = i * p.spatial..(i + 1) * p.spatial;
        let c = coefficients[i % p.channels];
        (c, &x[range.clone()], &dy[range.clone()], &y[range])
    };
    if RESIDUAL {
        let [dx, dresidual] = p.fill_planes(
            #[inline(always)]
            |i, [out, r]| {
                let (c, xs, gs, ys) = planes(i);
                dx_plane::<RELU>(c, xs, gs, ys, out, Some(r))
            },
        );
        (dx, dgamma, dbeta, Some(dresidual))
    } else {
        let [dx] = p.fill_planes(
            #[inline(always)]
            |i, [out]| {
                let (c, xs, gs, ys) = planes(i);
                dx_plane::<RELU>(c, xs, gs, ys, out, None)
            },
        );
        (dx, dgamma, dbeta, None)
    }
}

/// One plane's Σ g and Σ g·(x − m) of the passed upstream gradient `g` (`LONG` as
/// [`lane_sum_by`]).
#[inline(always)]
fn gradient_sums<const RELU: bool, const LONG: bool>(
    xs: &[f32],
    (m, gs, ys): (f32, &[f32], &[f32]),
) -> (f64, f64) {
    lane_sums_by::<LONG>(xs, gs, ys, |xv, g, out| {
        let g = passed::<RELU>(g, out);
        (g, g * (xv - m))
    })
}

/// The upstream gradient `g` where the output `out` let it through (with a ReLU: `out > 0`).
#[inline(always)]
fn passed<const RELU: bool>(g: f32, out: f32) -> f32 {
    if RELU && out <= 0.0 { 0.0 } else { g }
}

/// One plane of batch norm's input gradient from the per-channel coefficients `(γ·s, mean(dy),
/// mean(dy·x̂), s, mean)`, and the passed upstream gradient into `passed_out` when given.
#[inline(always)]
fn dx_plane<const RELU: bool>(
    [scale, mean_dy, mean_dy_xhat, s, m]: [f32; 5],
    xs: &[f32],
    gs: &[f32],
    ys: &[f32],
    out: &mut [MaybeUninit<f32>],
    passed_out: Option<&mut [MaybeUninit<f32>]>,
) {
    let dx = |xv: f32, g: f32| scale * (g - mean_dy - (xv - m) * s * mean_dy_xhat);
    match passed_out {
        Some(r) => {
            for ((((o, r), &xv), &g), &out) in out.iter_mut().zip(r).zip(xs).zip(gs).zip(ys) {
                let g = passed::<RELU>(g, out);
                o.write(dx(xv, g));
                r.write(g);
            }
        }
        None => {
            for (((o, &xv), &g), &out) in out.iter_mut().zip(xs).zip(gs).zip(ys) {
                o.write(dx(xv, passed::<RELU>(g, out)));
            }
        }
    }
}
