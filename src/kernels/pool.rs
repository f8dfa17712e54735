//! 2-D max pooling, NCHW, forward with the position of each window's maximum and the backward
//! pass that routes gradients to those positions. burn's flex pooling is a generic 3-D loop
//! (≈ 3.5 % of a ResNet-50 step at 224 px for the stem's one pooling layer).

use rayon::prelude::*;

use super::simd::vectorized;

/// One pooling call: `[batch, channels, h, w]` in, `[batch, channels, oh, ow]` out; windows of
/// `kernel`, `stride` apart, over the input padded by `padding` on each side (no dilation,
/// output size rounded down).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Window {
    /// `(oh, ow)`; `None` unless every window overlaps the input (padding at most half the
    /// window, PyTorch's rule) and the output is not empty.
    pub fn output(&self) -> Option<(usize, usize)> {
        let out = |size: usize, k: usize, s: usize, p: usize| {
            let valid = k > 0 && s > 0 && 2 * p <= k && size > 0 && size + 2 * p >= k;
            valid.then(|| (size + 2 * p - k) / s + 1)
        };
        let oh = out(self.h, self.kernel[0], self.stride[0], self.padding[0])?;
        let ow = out(self.w, self.kernel[1], self.stride[1], self.padding[1])?;
        (oh > 0 && ow > 0).then_some((oh, ow))
    }

    fn planes(&self) -> usize {
        self.batch * self.channels
    }
}

/// The input positions `[start, end)` that output position `o`'s window covers along one axis.
fn span(o: usize, kernel: usize, stride: usize, padding: usize, size: usize) -> (usize, usize) {
    let first = (o * stride) as isize - padding as isize;
    let start = first.max(0) as usize;
    let end = ((first + kernel as isize) as usize).min(size);
    (start, end)
}

/// Planes per parallel task: enough work to amortise the task, few enough to share out.
const TASK_PLANES: usize = 4;

/// `(y, argmax)`: each window's maximum and its position `iy·w + ix` within the input plane.
/// The first maximum in row-major order wins ties; a NaN wins over numbers (the last NaN),
/// as in burn and PyTorch.
///
/// A whole output row at a time: for each window position `(iy, kx)` in row-major order, one
/// pass over the outputs whose windows hold it. Each input row is first split by column
/// modulo the stride, so that those passes read consecutive values and run in vectors.
pub fn max_forward(win: &Window, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (oh, ow) = win.output().expect("a valid pooling window");
    let (hw, ohw) = (win.h * win.w, oh * ow);
    assert_eq!(x.len(), win.planes() * hw);
    assert!(
        hw <= u32::MAX as usize,
        "plane too large for 32-bit positions"
    );
    let ([kh, kw], [sy, sx], [py, px]) = (win.kernel, win.stride, win.padding);
    let phase_len = win.w.div_ceil(sx);
    // Per kernel column: the outputs whose window holds it (`lo..hi`), the first one's input
    // column, and where that column sits in the split row.
    let taps: Vec<(usize, usize, usize, usize)> = (0..kw)
        .map(|kx| {
            let lo = px.saturating_sub(kx).div_ceil(sx);
            // The last output whose window holds input column `ox·sx + kx − px ≤ w − 1`.
            let hi = match (win.w + px).checked_sub(kx + 1) {
                Some(last) => (last / sx + 1).min(ow),
                None => 0,
            };
            let hi = hi.max(lo);
            let ix0 = lo * sx + kx - px;
            (lo, hi, ix0, ix0 % sx * phase_len + ix0 / sx)
        })
        .collect();
    let first_columns: Vec<u32> = (0..ow)
        .map(|ox| span(ox, kw, sx, px, win.w).0 as u32)
        .collect();
    let steps: Vec<u32> = (0..ow).map(|i| (i * sx) as u32).collect();
    let mut y = vec![0.0f32; win.planes() * ohw];
    let mut argmax = vec![0u32; win.planes() * ohw];
    y.par_chunks_mut(ohw * TASK_PLANES)
        .zip(argmax.par_chunks_mut(ohw * TASK_PLANES))
        .zip(x.par_chunks(hw * TASK_PLANES))
        .for_each_init(Vec::new, |split, ((y, argmax), x)| {
            split.resize(sx * phase_len, f32::NEG_INFINITY);
            let planes = y.chunks_exact_mut(ohw).zip(argmax.chunks_exact_mut(ohw));
            vectorized(
                #[inline(always)]
                || {
                    for ((y, argmax), x) in planes.zip(x.chunks_exact(hw)) {
                        for oy in 0..oh {
                            let (y0, y1) = span(oy, kh, sy, py, win.h);
                            let best = &mut y[oy * ow..][..ow];
                            let at = &mut argmax[oy * ow..][..ow];
                            best.fill(f32::NEG_INFINITY);
                            // Each window's first position: kept when all it holds is −∞.
                            for (a, &x0) in at.iter_mut().zip(&first_columns) {
                                *a = (y0 * win.w) as u32 + x0;
                            }
                            for iy in y0..y1 {
                                let row = &x[iy * win.w..][..win.w];
                                let split: &[f32] = if sx == 1 {
                                    row
                                } else {
                                    for (phase, part) in
                                        split.chunks_exact_mut(phase_len).enumerate()
                                    {
                                        for (d, &v) in
                                            part.iter_mut().zip(row[phase..].iter().step_by(sx))
                                        {
                                            *d = v;
                                        }
                                    }
                                    split
                                };
                                for &(lo, hi, ix0, from) in &taps {
                                    let first = (iy * win.w + ix0) as u32;
                                    let values = &split[from..][..hi - lo];
                                    let steps = &steps[..hi - lo];
                                    take_larger(
                                        &mut best[lo..hi],
                                        &mut at[lo..hi],
                                        values,
                                        first,
                                        steps,
                                    );
                                }
                            }
                        }
                    }
                },
            )
        });
    (y, argmax)
}

/// `best[i], at[i] = values[i], first + steps[i]` where `values[i]` is larger or NaN.
#[inline(always)]
fn take_larger(best: &mut [f32], at: &mut [u32], values: &[f32], first: u32, steps: &[u32]) {
    let outputs = best
        .iter_mut()
        .zip(at.iter_mut())
        .zip(values.iter().zip(steps));
    for ((b, a), (&v, &step)) in outputs {
        let take = v > *b || v.is_nan();
        *b = if take { v } else { *b };
        *a = if take { first + step } else { *a };
    }
}

/// `dx`: each output's gradient added at its window's maximum.
pub fn max_backward(win: &Window, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    let (oh, ow) = win.output().expect("a valid pooling window");
    let (hw, ohw) = (win.h * win.w, oh * ow);
    assert!(argmax.len() == win.planes() * ohw && dy.len() == argmax.len());
    let mut dx = vec![0.0f32; win.planes() * hw];
    dx.par_chunks_mut(hw * TASK_PLANES)
        .zip(argmax.par_chunks(ohw * TASK_PLANES))
        .zip(dy.par_chunks(ohw * TASK_PLANES))
        .for_each(|((dx, argmax), dy)| {
            let planes = argmax.chunks_exact(ohw).zip(dy.chunks_exact(ohw));
            for (dx, (argmax, dy)) in dx.chunks_exact_mut(hw).zip(planes) {
                for (&at, &g) in argmax.iter().zip(dy) {
                    dx[at as usize] += g;
                }
            }
        });
    dx
}
