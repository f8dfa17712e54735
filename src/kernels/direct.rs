//! 3×3 stride-1 "same" convolutions on narrow images (≤ 32 px wide) with few channels, computed
//! straight from zero-padded input rows: no column matrix, no packing. Forward (and so the
//! input gradient, itself such a convolution) and the weight gradient.
//!
//! Below Winograd's channel count, im2col + gemm spends more time copying (a column matrix nine
//! times the input, then the gemm's own packing of it) than multiplying. Here one output row of
//! a block of output channels lives in registers while every input row it needs streams past
//! once, each shifted row feeding one fused multiply-add per channel of the block.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use super::winograd;
use pulp::{Simd, WithSimd};

const TAPS: usize = 9;

/// Whether [`forward`] computes this convolution (and is the faster route for it).
pub fn eligible(g: &ConvGeometry) -> bool {
    g.groups == 1
        && (g.kh, g.kw) == (3, 3)
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.pad == [1, 1]
        && (g.oh, g.ow) == (g.h, g.w)
        && g.w <= 32
        && !winograd::eligible(g)
}

/// `y = conv2d(x, weight)` (no bias) for an [`eligible`] geometry; NCHW in and out.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    forward_on(g, x, weight, |image| pulp::Arch::new().dispatch(image))
}

/// [`forward`] with each image run by `dispatch` (tests pick the instruction set).
fn forward_on(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dispatch: impl Fn(Image<'_>) + Sync,
) -> Vec<f32> {
    assert!(eligible(g));
    assert_eq!(x.len(), g.batch * g.x_image());
    assert_eq!(weight.len(), g.c_out * g.c_in * TAPS);
    let len = g.batch * g.y_image();
    let mut y: Vec<f32> = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(g.y_image())
        .zip(x.par_chunks(g.x_image()))
        .for_each_init(Scratch::default, |scratch, (y_image, x_image)| {
            dispatch(Image {
                g,
                x: x_image,
                weight,
                scratch,
                y: y_image,
            })
        });
    // SAFETY: `Image` writes every element of each image's output.
    unsafe { y.set_len(len) };
    y
}

/// Buffers one thread reuses across the images of one `forward` call (fresh for each call).
#[derive(Default)]
struct Scratch {
    /// The image's planes with a zero border, rows a whole number of vectors (+ 2) wide.
    padded: Vec<f32>,
    /// The weight as `[co block][c_in][tap][CO]`, the last block's missing channels zero.
    packed: Vec<f32>,
}

/// One image's convolution, for whichever SIMD width the CPU has.
struct Image<'a> {
    g: &'a ConvGeometry,
    x: &'a [f32],
    weight: &'a [f32],
    scratch: &'a mut Scratch,
    y: &'a mut [MaybeUninit<f32>],
}

impl WithSimd for Image<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Output channels per block × vectors per row ≤ the accumulator registers.
        // (AVX-512 has 32 vector registers, AVX2 16; NEON's 4 lanes and the scalar fallback
        // need more vectors per row, correct if not fast.)
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        match (self.g.w.div_ceil(lanes), lanes >= 16) {
            (1, _) => self.rows::<S, 1, 8>(simd),
            (2, true) => self.rows::<S, 2, 8>(simd),
            (2, false) => self.rows::<S, 2, 6>(simd),
            (3..=4, _) => self.rows::<S, 4, 3>(simd),
            (5..=8, _) => self.rows::<S, 8, 1>(simd),
            _ => self.rows::<S, 32, 1>(simd),
        }
    }
}

impl Image<'_> {
    /// Output rows of `NV` vectors: each block of `CO` output channels stays in registers
    /// while the input rows stream past.
    #[inline(always)]
    fn rows<S: Simd, const NV: usize, const CO: usize>(self, simd: S) {
        let Image {
            g,
            x,
            weight,
            scratch,
            y,
        } = self;
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        let (h, w, ph) = (g.h, g.w, g.h + 2);
        // One zero on the left, enough on the right for NV whole vectors read at offsets 0–2.
        let pw = NV * lanes + 2;
        // The border stays zero across images: only the interior is rewritten.
        let padded = &mut scratch.padded;
        if padded.len() != g.c_in * ph * pw {
            padded.clear();
            padded.resize(g.c_in * ph * pw, 0.0);
        }
        for (plane, rows) in x.chunks_exact(h * w).zip(padded.chunks_exact_mut(ph * pw)) {
            for (src, dst) in plane.chunks_exact(w).zip(rows[pw..].chunks_exact_mut(pw)) {
                copy_row(simd, src, &mut dst[1..]);
            }
        }
        let blocks = g.c_out.div_ceil(CO);
        // The same for every image of the call: packed for the thread's first image.
        if scratch.packed.is_empty() {
            let packed = &mut scratch.packed;
            packed.resize(blocks * g.c_in * TAPS * CO, 0.0);
            for co in 0..g.c_out {
                for (k, &v) in weight[co * g.c_in * TAPS..][..g.c_in * TAPS]
                    .iter()
                    .enumerate()
                {
                    packed[((co / CO) * g.c_in * TAPS + k) * CO + co % CO] = v;
                }
            }
        }
        let (padded, packed) = (&scratch.padded[..], &scratch.packed[..]);
        let load = |at: usize| -> S::f32s {
            pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(&padded[at..at + lanes]))
        };
        for block in 0..blocks {
            let weights = &packed[block * g.c_in * TAPS * CO..][..g.c_in * TAPS * CO];
            let channels = CO.min(g.c_out - block * CO);
            for oy in 0..h {
                let mut acc = [[simd.splat_f32s(0.0); NV]; CO];
                for (ci, w_ci) in weights.chunks_exact(TAPS * CO).enumerate() {
                    for ky in 0..3 {
                        let row = (ci * ph + oy + ky) * pw;
                        for kx in 0..3 {
                            let src: [S::f32s; NV] =
                                std::array::from_fn(|v| load(row + kx + v * lanes));
                            let w_tap: &[f32; CO] = w_ci[(ky * 3 + kx) * CO..][..CO]
                                .try_into()
                                .expect("packed taps");
                            for (a, &wv) in acc.iter_mut().zip(w_tap) {
                                let wv = simd.splat_f32s(wv);
                                for (a, &s) in a.iter_mut().zip(&src) {
                                    *a = simd.mul_add_f32s(wv, s, *a);
                                }
                            }
                        }
                    }
                }
                for (co, a) in acc.iter().enumerate().take(channels) {
                    let flat: &[f32] = pulp::bytemuck::cast_slice(a.as_slice());
                    let out = &mut y[((block * CO + co) * h + oy) * w..][..w];
                    for (o, &v) in out.iter_mut().zip(flat) {
                        o.write(v);
                    }
                }
            }
        }
    }
}

/// `dst[..src.len()] = src` in masked vector moves: rows here are a few vectors long, where a
/// call to `memcpy` costs more than the copy.
#[inline(always)]
fn copy_row<S: Simd>(simd: S, src: &[f32], dst: &mut [f32]) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    for (s, d) in src.chunks(lanes).zip(dst[..src.len()].chunks_mut(lanes)) {
        simd.partial_store_f32s(d, simd.partial_load_f32s(s));
    }
}

/// The weight gradient of `sum(dy · conv2d(x, weight))` for an [`eligible`] geometry,
/// `[c_out, c_in, 3, 3]`.
pub fn weight_grad(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    weight_grad_on(g, x, dy, |images| pulp::Arch::new().dispatch(images))
}

/// [`weight_grad`] with each block of images run by `dispatch` (tests pick the instruction set).
///
/// One contiguous block of images per thread, each summing its own gradient; the blocks' sums
/// are added in order, so results do not depend on scheduling.
fn weight_grad_on(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dispatch: impl Fn(GradImages<'_>) -> Vec<f32> + Sync,
) -> Vec<f32> {
    assert!(eligible(g));
    assert_eq!(x.len(), g.batch * g.x_image());
    assert_eq!(dy.len(), g.batch * g.y_image());
    let per_block = g.batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_block * g.x_image())
        .zip(dy.par_chunks(per_block * g.y_image()))
        .map(|(x, dy)| dispatch(GradImages { g, x, dy }))
        .collect();
    let mut parts = partials.into_iter();
    let mut sum = parts
        .next()
        .unwrap_or_else(|| vec![0.0; g.c_out * g.c_in * TAPS]);
    for part in parts {
        for (s, v) in sum.iter_mut().zip(&part) {
            *s += v;
        }
    }
    sum
}

/// The weight gradient summed over a block of images, for whichever SIMD width the CPU has.
struct GradImages<'a> {
    g: &'a ConvGeometry,
    x: &'a [f32],
    dy: &'a [f32],
}

impl WithSimd for GradImages<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
        // 3 taps × CO channels of accumulators, 3 shifted input vectors and one dy vector in
        // registers: 28 of AVX-512's 32, 16 of AVX2's 16.
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        match (self.g.w.div_ceil(lanes), lanes >= 16) {
            (1, true) => self.sums::<S, 1, 8>(simd),
            (2, true) => self.sums::<S, 2, 8>(simd),
            (1, false) => self.sums::<S, 1, 4>(simd),
            (2, false) => self.sums::<S, 2, 4>(simd),
            (3..=4, _) => self.sums::<S, 4, 4>(simd),
            (5..=8, _) => self.sums::<S, 8, 4>(simd),
            _ => self.sums::<S, 32, 4>(simd),
        }
    }
}

impl GradImages<'_> {
    /// `dW[co, ci, ky, kx] = Σ dy[co, y, x] · x_padded[ci, y + ky, x + kx]` over rows of `NV`
    /// vectors: for a block of `CO` output channels, one input channel and one `ky`, the
    /// 3 × `CO` per-lane sums stay in registers while the rows stream past; they are kept per
    /// lane across images and added across lanes once, at the end.
    #[inline(always)]
    fn sums<S: Simd, const NV: usize, const CO: usize>(self, simd: S) -> Vec<f32> {
        let GradImages { g, x, dy } = self;
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        let (h, w, ph) = (g.h, g.w, g.h + 2);
        // Input rows as in the forward pass; dy rows padded with zeros to whole vectors (the
        // padding multiplies the input row's tail, which is not part of this output row).
        let (pw, dw_row) = (NV * lanes + 2, NV * lanes);
        let blocks = g.c_out.div_ceil(CO);
        let mut padded = vec![0.0f32; g.c_in * ph * pw];
        let mut dy_rows = vec![0.0f32; blocks * CO * h * dw_row];
        let zero = simd.splat_f32s(0.0);
        let mut acc_mem = vec![zero; blocks * g.c_in * TAPS * CO];
        let load = |buffer: &[f32], at: usize| -> S::f32s {
            pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(&buffer[at..at + lanes]))
        };
        for (x_image, dy_image) in x
            .chunks_exact(g.x_image())
            .zip(dy.chunks_exact(g.y_image()))
        {
            for (plane, rows) in x_image
                .chunks_exact(h * w)
                .zip(padded.chunks_exact_mut(ph * pw))
            {
                for (src, dst) in plane.chunks_exact(w).zip(rows[pw..].chunks_exact_mut(pw)) {
                    copy_row(simd, src, &mut dst[1..]);
                }
            }
            for (src, dst) in dy_image
                .chunks_exact(w)
                .zip(dy_rows.chunks_exact_mut(dw_row))
            {
                copy_row(simd, src, dst);
            }
            for block in 0..blocks {
                let dy_block = &dy_rows[block * CO * h * dw_row..][..CO * h * dw_row];
                for ci in 0..g.c_in {
                    for ky in 0..3 {
                        let slot =
                            &mut acc_mem[((block * g.c_in + ci) * TAPS + ky * 3) * CO..][..3 * CO];
                        let mut acc: [[S::f32s; CO]; 3] =
                            std::array::from_fn(|kx| std::array::from_fn(|co| slot[kx * CO + co]));
                        for oy in 0..h {
                            let row = (ci * ph + oy + ky) * pw;
                            for v in 0..NV {
                                let src: [S::f32s; 3] =
                                    std::array::from_fn(|kx| load(&padded, row + kx + v * lanes));
                                for co in 0..CO {
                                    let d = load(dy_block, (co * h + oy) * dw_row + v * lanes);
                                    for (a, &s) in acc.iter_mut().zip(&src) {
                                        a[co] = simd.mul_add_f32s(d, s, a[co]);
                                    }
                                }
                            }
                        }
                        for (kx, a) in acc.iter().enumerate() {
                            slot[kx * CO..][..CO].copy_from_slice(a);
                        }
                    }
                }
            }
        }
        let mut dw = vec![0.0f32; g.c_out * g.c_in * TAPS];
        for (i, d) in dw.iter_mut().enumerate() {
            let (co, k) = (i / (g.c_in * TAPS), i % (g.c_in * TAPS));
            *d = simd.reduce_sum_f32s(acc_mem[((co / CO) * g.c_in * TAPS + k) * CO + co % CO]);
        }
        dw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geometry::test_values;
    use burn::tensor::ops::ConvOptions;

    /// The convolution's definition, zero outside the image.
    fn definition(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0f32; g.batch * g.y_image()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        let mut acc = 0.0f64;
                        for ci in 0..g.c_in {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (oy + ky, ox + kx);
                                    if iy == 0 || ix == 0 || iy > g.h || ix > g.w {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + ci) * g.h + iy - 1) * g.w + ix - 1];
                                    acc +=
                                        xv as f64 * w[(co * g.c_in + ci) * 9 + ky * 3 + kx] as f64;
                                }
                            }
                        }
                        y[((b * g.c_out + co) * g.h + oy) * g.w + ox] = acc as f32;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_definition_on_both_row_widths_and_partial_channel_blocks() {
        // (batch, c_in, c_out, h, w): partial output blocks, both row widths, odd sizes.
        for (batch, c_in, c_out, h, w) in [
            (2, 1, 8, 28, 28),
            (3, 8, 8, 7, 9),
            (2, 8, 16, 14, 14),
            (1, 5, 11, 17, 32),
            (2, 16, 3, 4, 1),
        ] {
            let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            let g = ConvGeometry::new([batch, c_in, h, w], [c_out, c_in, 3, 3], &options);
            assert!(eligible(&g));
            let x = test_values(batch * c_in * h * w, 37, 101);
            let wt = test_values(c_out * c_in * 9, 53, 89);
            let want = definition(&g, &x, &wt);
            // This CPU's best, then AVX2 and the scalar fallback by name: each has its own
            // row width and channel block.
            let mut runs = vec![("best", forward(&g, &x, &wt))];
            #[cfg(target_arch = "x86_64")]
            if let Some(v3) = pulp::x86::V3::try_new() {
                runs.push((
                    "avx2",
                    forward_on(&g, &x, &wt, |i| pulp::Simd::vectorize(v3, i)),
                ));
            }
            runs.push((
                "scalar",
                forward_on(&g, &x, &wt, |i| {
                    pulp::Simd::vectorize(pulp::Scalar::new(), i)
                }),
            ));
            for (isa, got) in runs {
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "{isa} {batch}x{c_in}->{c_out} {h}x{w}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// `dW[co, ci, ky, kx] = Σ dy[b, co, y, x] · x[b, ci, y + ky − 1, x + kx − 1]`, in f64.
    fn weight_grad_definition(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let mut dw = vec![0.0f64; g.c_out * g.c_in * 9];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for ci in 0..g.c_in {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let mut acc = 0.0f64;
                            for oy in 0..g.h {
                                for ox in 0..g.w {
                                    let (iy, ix) = (oy + ky, ox + kx);
                                    if iy == 0 || ix == 0 || iy > g.h || ix > g.w {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + ci) * g.h + iy - 1) * g.w + ix - 1];
                                    let d = dy[((b * g.c_out + co) * g.h + oy) * g.w + ox];
                                    acc += xv as f64 * d as f64;
                                }
                            }
                            dw[(co * g.c_in + ci) * 9 + ky * 3 + kx] += acc;
                        }
                    }
                }
            }
        }
        dw.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn weight_grad_matches_the_definition_on_every_instruction_set() {
        for (batch, c_in, c_out, h, w) in [
            (3, 1, 8, 28, 28),
            (2, 8, 8, 7, 9),
            (5, 8, 16, 14, 14),
            (1, 5, 11, 17, 32),
            (2, 16, 3, 4, 1),
        ] {
            let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            let g = ConvGeometry::new([batch, c_in, h, w], [c_out, c_in, 3, 3], &options);
            let x = test_values(batch * c_in * h * w, 37, 101);
            let dy = test_values(batch * c_out * h * w, 29, 97);
            let want = weight_grad_definition(&g, &x, &dy);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let mut runs = vec![("best", weight_grad(&g, &x, &dy))];
            #[cfg(target_arch = "x86_64")]
            if let Some(v3) = pulp::x86::V3::try_new() {
                runs.push((
                    "avx2",
                    weight_grad_on(&g, &x, &dy, |i| pulp::Simd::vectorize(v3, i)),
                ));
            }
            runs.push((
                "scalar",
                weight_grad_on(&g, &x, &dy, |i| {
                    pulp::Simd::vectorize(pulp::Scalar::new(), i)
                }),
            ));
            for (isa, got) in runs {
                assert_eq!(got.len(), want.len());
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-5 * scale,
                        "{isa} {batch}x{c_in}->{c_out} {h}x{w} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}
