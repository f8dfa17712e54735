//! 3×3 convolutions with padding 1 — stride 1 ("same") or 2 (ResNet's downsampling) — on narrow
//! images (output ≤ 32 px wide) with few channels, computed straight from zero-padded input
//! rows: no column matrix, no packing. Forward (and so the stride-1 input gradient, itself such
//! a convolution) and the weight gradient.
//!
//! Below Winograd's channel count, im2col + gemm spends more time copying (a column matrix nine
//! times the input, then the gemm's own packing of it) than multiplying. Here one output row of
//! a block of output channels lives in registers while every input row it needs streams past
//! once, each shifted row feeding one fused multiply-add per channel of the block.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::geometry::{ConvGeometry, output_buffer};
use super::simd::{read_vectors, write_vector};
use super::winograd;
use pulp::{Simd, WithSimd};

const TAPS: usize = 9;

/// Whether [`forward`] and [`weight_grad`] compute this convolution (and are the faster route
/// for it).
pub fn eligible(g: &ConvGeometry) -> bool {
    let shape = g.groups == 1
        && (g.kh, g.kw) == (3, 3)
        && g.dilation == [1, 1]
        && g.pad == [1, 1]
        && g.ow <= 32;
    match g.stride {
        [1, 1] => shape && (g.oh, g.ow) == (g.h, g.w) && !winograd::eligible(g),
        // Against im2col on ResNet-18 at width 8: 2.1× forward and 1.7× weight gradient at 8
        // input channels; at 16 (7-px output rows) forward and backward 0.92× the time on
        // AVX-512, 0.77× on AVX2; at 32 (4-px rows, a quarter of an AVX-512 vector) 1.6–2×
        // slower.
        [2, 2] => shape && g.c_in <= 16,
        _ => false,
    }
}

/// The zero-padded input rows of one input plane, as both kernels read them: for each output
/// column, the input columns under the three taps are each one contiguous vector load away.
///
/// Stride 1: the padded row as is, tap `kx` at offset `kx`. Stride 2: the padded row split into
/// its even then its odd columns (`half` each), so that output column `ox`'s taps — padded
/// columns `2·ox`, `2·ox + 1`, `2·ox + 2` — are at `ox`, `half + ox` and `ox + 1`.
#[derive(Clone, Copy)]
struct PaddedRows {
    /// Values per stored row.
    width: usize,
    /// Offset of each tap's first value in a stored row.
    taps: [usize; 3],
    stride: usize,
}

impl PaddedRows {
    /// Rows wide enough for output rows of `vectors` vectors of `lanes` values.
    fn new(g: &ConvGeometry, vectors: usize, lanes: usize) -> Self {
        let half = vectors * lanes + 1;
        match g.stride[1] {
            1 => PaddedRows {
                width: vectors * lanes + 2,
                taps: [0, 1, 2],
                stride: 1,
            },
            _ => PaddedRows {
                width: 2 * half,
                taps: [0, half, 1],
                stride: 2,
            },
        }
    }

    /// How far past a stored row's start a read of `values` at every tap reaches.
    fn reach(&self, values: usize) -> usize {
        self.taps.iter().max().expect("three taps") + values
    }

    /// Stored row of padded row `y` (input row `y − 1`) of plane `plane` (`h + 2` rows each).
    fn row(&self, g: &ConvGeometry, plane: usize, y: usize) -> usize {
        (plane * (g.h + 2) + y) * self.width
    }

    /// Input row `src` into its stored row `dst` (zero where nothing is written).
    #[inline(always)]
    fn copy<S: Simd>(&self, simd: S, src: &[f32], dst: &mut [f32]) {
        if self.stride == 1 {
            copy_row(simd, src, &mut dst[1..]);
            return;
        }
        // Input column `ix` is padded column `ix + 1`: odd columns from even `ix`. Disjoint
        // slices and whole pairs, so that the compiler vectorises the split.
        let (odd, even) = dst.split_at_mut(self.taps[1]);
        let pairs = src.chunks_exact(2);
        if let [last] = pairs.remainder() {
            even[src.len() / 2] = *last;
        }
        for ((pair, e), o) in pairs.zip(even.iter_mut()).zip(&mut odd[1..]) {
            *e = pair[0];
            *o = pair[1];
        }
    }

    /// Every input plane of one image into `padded` (`c_in · (h + 2)` stored rows, borders
    /// zero and left so across images: only the interior is rewritten).
    #[inline(always)]
    fn fill<S: Simd>(&self, simd: S, g: &ConvGeometry, image: &[f32], padded: &mut Vec<f32>) {
        let (h, w) = (g.h, g.w);
        if padded.len() != g.c_in * (h + 2) * self.width {
            padded.clear();
            padded.resize(g.c_in * (h + 2) * self.width, 0.0);
        }
        for (plane, rows) in image
            .chunks_exact(h * w)
            .zip(padded.chunks_exact_mut((h + 2) * self.width))
        {
            for (src, dst) in plane
                .chunks_exact(w)
                .zip(rows[self.width..].chunks_exact_mut(self.width))
            {
                self.copy(simd, src, dst);
            }
        }
    }
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
    let mut y = output_buffer(len);
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
        // Output channels per block × vectors per segment ≤ the accumulator registers, with a
        // register left for the broadcast weight: AVX-512 has 32, AVX2 16 (at 4 × 3 on AVX2 the
        // compiler spills: 83 against 107 GFLOP/s at 2 × 4, a C loop of the same shape).
        // NEON's 4 lanes and the scalar fallback take the AVX2 shape: correct if not fast.
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        match (self.g.ow.div_ceil(lanes), lanes >= 16) {
            (1, _) => self.rows::<S, 1, 8>(simd),
            (_, true) => self.rows::<S, 2, 8>(simd),
            (_, false) => self.rows::<S, 2, 4>(simd),
        }
    }
}

impl Image<'_> {
    /// Output rows in segments of `NV` vectors: each segment of a block of `CO` output
    /// channels stays in registers while the input rows stream past.
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
        let (oh, ow) = (g.oh, g.ow);
        let segment = NV * lanes;
        let segments = ow.div_ceil(segment);
        let rows = PaddedRows::new(g, segments * NV, lanes);
        rows.fill(simd, g, x, &mut scratch.padded);
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
        // The rows' bounds are checked once per output row segment (below), not per tap.
        let reach = rows.reach(NV * lanes);
        let load = |at: usize, end: usize| -> [S::f32s; NV] {
            debug_assert!(at + NV * lanes <= end);
            // SAFETY: every caller's `at + NV·lanes ≤ end`, and `end ≤ padded.len()` was
            // asserted for its row segment.
            unsafe { read_vectors::<S, NV>(padded, at) }
        };
        for block in 0..blocks {
            let weights = &packed[block * g.c_in * TAPS * CO..][..g.c_in * TAPS * CO];
            let channels = CO.min(g.c_out - block * CO);
            for oy in 0..oh {
                for seg in 0..segments {
                    // The furthest any tap of this segment reads: the last channel's third row.
                    let end = rows.row(g, g.c_in - 1, oy * rows.stride + 2) + seg * segment + reach;
                    assert!(end <= padded.len());
                    let mut acc = [[simd.splat_f32s(0.0); NV]; CO];
                    for (ci, w_ci) in weights.as_chunks::<CO>().0.chunks_exact(TAPS).enumerate() {
                        let w_ci: &[[f32; CO]; TAPS] = w_ci.try_into().expect("packed taps");
                        for ky in 0..3 {
                            let row = rows.row(g, ci, oy * rows.stride + ky) + seg * segment;
                            for (kx, &tap) in rows.taps.iter().enumerate() {
                                let src = load(row + tap, end);
                                let w_tap = &w_ci[ky * 3 + kx];
                                for (a, &wv) in acc.iter_mut().zip(w_tap) {
                                    let wv = simd.splat_f32s(wv);
                                    for (a, &s) in a.iter_mut().zip(&src) {
                                        *a = simd.mul_add_f32s(wv, s, *a);
                                    }
                                }
                            }
                        }
                    }
                    // Whole vectors when what spills past the row lands in this plane's later
                    // rows (or segments), which are written after it; value by value at the
                    // plane's end.
                    let start = oy * ow + seg * segment;
                    let spill_stays_in_plane = start + segment <= oh * ow;
                    for (co, a) in acc.into_iter().enumerate().take(channels) {
                        let plane = &mut y[(block * CO + co) * oh * ow..][..oh * ow];
                        if spill_stays_in_plane {
                            let out = &mut plane[start..][..segment];
                            for (out, vector) in out.chunks_exact_mut(lanes).zip(a) {
                                write_vector::<S>(out, vector);
                            }
                            continue;
                        }
                        let out = &mut plane[start..(oy + 1) * ow];
                        for (out, vector) in out.chunks_mut(lanes).zip(a) {
                            // A copy: reading `acc` through a slice would keep it in memory.
                            let flat: &[f32] =
                                pulp::bytemuck::cast_slice(std::slice::from_ref(&vector));
                            for (o, &v) in out.iter_mut().zip(flat) {
                                o.write(v);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst[..src.len()] = src`: whole vectors as fixed-size moves, the rest value by value. Rows
/// here are a few vectors long, where a call to `memcpy` costs more than the copy, and so do
/// pulp's masked loads and stores (an indirect call per vector: 30% of the 8-channel forward).
#[inline(always)]
fn copy_row<S: Simd>(_simd: S, src: &[f32], dst: &mut [f32]) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    let whole = src.len() / lanes * lanes;
    let (src_vectors, src_rest) = src.split_at(whole);
    let (dst_vectors, dst_rest) = dst[..src.len()].split_at_mut(whole);
    for (s, d) in src_vectors
        .chunks_exact(lanes)
        .zip(dst_vectors.chunks_exact_mut(lanes))
    {
        d.copy_from_slice(s);
    }
    for (d, &s) in dst_rest.iter_mut().zip(src_rest) {
        *d = s;
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
        match (self.g.ow.div_ceil(lanes), lanes >= 16) {
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
        let (oh, ow) = (g.oh, g.ow);
        // Input rows as in the forward pass; dy rows padded with zeros to whole vectors (the
        // padding multiplies the input row's tail, which is not part of this output row).
        let (rows, dw_row) = (PaddedRows::new(g, NV, lanes), NV * lanes);
        let x_reach = rows.reach(lanes);
        let blocks = g.c_out.div_ceil(CO);
        let mut padded = Vec::new();
        let mut dy_rows = vec![0.0f32; blocks * CO * oh * dw_row];
        let zero = simd.splat_f32s(0.0);
        let mut acc_mem = vec![zero; blocks * g.c_in * TAPS * CO];
        for (x_image, dy_image) in x
            .chunks_exact(g.x_image())
            .zip(dy.chunks_exact(g.y_image()))
        {
            rows.fill(simd, g, x_image, &mut padded);
            // dy rows as `[block][oy][co in block][dw_row]`: one output row's `CO` rows
            // together, so the row loop below steps through one slice.
            for (r, src) in dy_image.chunks_exact(ow).enumerate() {
                let (co, oy) = (r / oh, r % oh);
                let at = ((co / CO * oh + oy) * CO + co % CO) * dw_row;
                copy_row(simd, src, &mut dy_rows[at..][..dw_row]);
            }
            for block in 0..blocks {
                let dy_block = &dy_rows[block * CO * oh * dw_row..][..CO * oh * dw_row];
                for ci in 0..g.c_in {
                    for ky in 0..3 {
                        let slot =
                            &mut acc_mem[((block * g.c_in + ci) * TAPS + ky * 3) * CO..][..3 * CO];
                        let mut acc: [[S::f32s; CO]; 3] =
                            std::array::from_fn(|kx| std::array::from_fn(|co| slot[kx * CO + co]));
                        // Vector columns outside the rows: with the columns inside, LLVM
                        // hoists every column's loads ahead of the products and spills them
                        // (AVX2).
                        let (x_step, dy_step) = (rows.width * rows.stride, CO * dw_row);
                        for v in 0..NV {
                            let (x0, dy0) = (rows.row(g, ci, ky) + v * lanes, v * lanes);
                            // The furthest reads of the row loop, checked once.
                            assert!(x0 + (oh - 1) * x_step + x_reach <= padded.len());
                            assert!(
                                dy0 + (oh - 1) * dy_step + (CO - 1) * dw_row + lanes
                                    <= dy_block.len()
                            );
                            for oy in 0..oh {
                                let (x_at, dy_at) = (x0 + oy * x_step, dy0 + oy * dy_step);
                                // SAFETY: within the reaches asserted above.
                                let src: [S::f32s; 3] = std::array::from_fn(|kx| unsafe {
                                    read_vectors::<S, 1>(&padded, x_at + rows.taps[kx])[0]
                                });
                                for co in 0..CO {
                                    // SAFETY: as above.
                                    let [d] = unsafe {
                                        read_vectors::<S, 1>(dy_block, dy_at + co * dw_row)
                                    };
                                    for (a, &s) in acc.iter_mut().zip(&src) {
                                        a[co] = simd.mul_add_f32s(d, s, a[co]);
                                    }
                                }
                            }
                        }
                        // Element by element: a slice copy would keep `acc` in memory.
                        for (kx, a) in acc.into_iter().enumerate() {
                            for (co, v) in a.into_iter().enumerate() {
                                slot[kx * CO + co] = v;
                            }
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

    /// The input value under tap `(ky, kx)` of output `(oy, ox)`, zero outside the image.
    fn tap(g: &ConvGeometry, x: &[f32], b: usize, ci: usize, [oy, ox, ky, kx]: [usize; 4]) -> f64 {
        // Padded coordinates: the input's are one less.
        let (iy, ix) = (oy * g.stride[0] + ky, ox * g.stride[1] + kx);
        if iy == 0 || ix == 0 || iy > g.h || ix > g.w {
            return 0.0;
        }
        x[((b * g.c_in + ci) * g.h + iy - 1) * g.w + ix - 1] as f64
    }

    /// The convolution's definition, zero outside the image.
    fn definition(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0f32; g.batch * g.y_image()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0.0f64;
                        for ci in 0..g.c_in {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    acc += tap(g, x, b, ci, [oy, ox, ky, kx])
                                        * w[(co * g.c_in + ci) * 9 + ky * 3 + kx] as f64;
                                }
                            }
                        }
                        y[((b * g.c_out + co) * g.oh + oy) * g.ow + ox] = acc as f32;
                    }
                }
            }
        }
        y
    }

    /// (batch, c_in, c_out, h, w, stride): partial output blocks, both row widths, odd sizes;
    /// stride 2 on even and odd sizes (the last output column's right tap in the padding or not).
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 10] = [
        (2, 1, 8, 28, 28, 1),
        (3, 8, 8, 7, 9, 1),
        (2, 8, 16, 14, 14, 1),
        (1, 5, 11, 17, 32, 1),
        (2, 16, 3, 4, 1, 1),
        (2, 8, 16, 28, 28, 2),
        (3, 3, 5, 7, 9, 2),
        (1, 8, 11, 40, 63, 2),
        (2, 2, 3, 1, 2, 2),
        (2, 16, 32, 14, 14, 2),
    ];

    fn geometry(
        (batch, c_in, c_out, h, w, stride): (usize, usize, usize, usize, usize, usize),
    ) -> ConvGeometry {
        let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
        let g = ConvGeometry::new([batch, c_in, h, w], [c_out, c_in, 3, 3], &options);
        assert!(eligible(&g), "{g:?}");
        g
    }

    #[test]
    fn matches_the_definition_on_both_row_widths_and_partial_channel_blocks() {
        for shape in SHAPES {
            let g = geometry(shape);
            let (batch, c_in, c_out, h, w, _) = shape;
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
                            for oy in 0..g.oh {
                                for ox in 0..g.ow {
                                    let d = dy[((b * g.c_out + co) * g.oh + oy) * g.ow + ox];
                                    acc += tap(g, x, b, ci, [oy, ox, ky, kx]) * d as f64;
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
        for shape in SHAPES {
            let g = geometry(shape);
            let (batch, c_in, c_out, h, w, _) = shape;
            let x = test_values(batch * c_in * h * w, 37, 101);
            let dy = test_values(batch * c_out * g.oh * g.ow, 29, 97);
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
