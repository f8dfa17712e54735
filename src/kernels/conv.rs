//! 2-D convolution on the CPU, forward and backward, as im2col + packed gemm per image.
//!
//! Layouts are NCHW throughout. For image `b` and group `g` the column matrix is
//! `col[K, P]` with rows `(c, ky, kx)` (the weight's own `[cog, cg, kh, kw]` order, so the weight
//! needs no repacking) and columns the output positions. Then
//! - forward:      `y_b[g] = W_g · col`                         (`[cog, P]`, straight into NCHW)
//! - input grad:   `dcol = W_gᵀ · dy_b[g]`, scattered back by col2im
//! - weight grad:  `dW_g += dy_b[g] · colᵀ`
//!
//! Images run in parallel; the weight gradient is summed per contiguous block of images and the
//! blocks are added in a fixed order, so results do not depend on scheduling.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, gemm, transpose};
pub use super::geometry::ConvGeometry;
use super::geometry::{output_buffer, sized, zeroed};
use super::{direct, winograd};

/// Fills the column matrix `col` (K rows, `row_stride` apart; image `i` in columns
/// `[i·P, (i+1)·P)`) for one group from the images of `x_chunk` (each `[c_in, h, w]`).
///
/// Row by row, every image in turn: writes stay sequential and the few input planes a row
/// reads stay in cache, however many images there are.
fn im2col(g: &ConvGeometry, group: usize, x_chunk: &[f32], col: &mut [f32], row_stride: usize) {
    let (p, hw) = (g.p(), g.h * g.w);
    let (ys, xs) = g.valid_ranges();
    let mut rows = col.chunks_mut(row_stride);
    for c in 0..g.cg() {
        let plane_start = (group * g.cg() + c) * hw;
        for &(y0, y1, y_off) in &ys {
            for &(x0, x1, x_off) in &xs {
                let row = rows.next().expect("K rows");
                for (x_image, dst_image) in x_chunk
                    .chunks_exact(g.x_image())
                    .zip(row.chunks_exact_mut(p))
                {
                    let plane = &x_image[plane_start..][..hw];
                    dst_image[..y0 * g.ow].fill(0.0);
                    dst_image[y1 * g.ow..].fill(0.0);
                    for oy in y0..y1 {
                        let iy = (oy as isize * g.stride[0] as isize + y_off) as usize;
                        let src = &plane[iy * g.w..][..g.w];
                        let dst = &mut dst_image[oy * g.ow..][..g.ow];
                        dst[..x0].fill(0.0);
                        dst[x1..].fill(0.0);
                        let ix0 = (x0 as isize * g.stride[1] as isize + x_off) as usize;
                        if g.stride[1] == 1 {
                            dst[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                        } else {
                            // Chunks of the stride rather than indices: no bounds check per
                            // value, and a loop the compiler vectorises.
                            for (d, s) in dst[x0..x1].iter_mut().zip(src[ix0..].chunks(g.stride[1]))
                            {
                                *d = s[0];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` (laid out as [`im2col`] fills it) back into the input-gradient
/// images of `dx_chunk`: the adjoint of [`im2col`].
fn col2im(g: &ConvGeometry, group: usize, col: &[f32], row_stride: usize, dx_chunk: &mut [f32]) {
    let (p, hw) = (g.p(), g.h * g.w);
    let (ys, xs) = g.valid_ranges();
    let mut rows = col.chunks(row_stride);
    for c in 0..g.cg() {
        let plane_start = (group * g.cg() + c) * hw;
        for &(y0, y1, y_off) in &ys {
            for &(x0, x1, x_off) in &xs {
                let row = rows.next().expect("K rows");
                for (dx_image, src_image) in dx_chunk
                    .chunks_exact_mut(g.x_image())
                    .zip(row.chunks_exact(p))
                {
                    let plane = &mut dx_image[plane_start..][..hw];
                    for oy in y0..y1 {
                        let iy = (oy as isize * g.stride[0] as isize + y_off) as usize;
                        let dst = &mut plane[iy * g.w..][..g.w];
                        let src = &src_image[oy * g.ow + x0..oy * g.ow + x1];
                        let ix0 = (x0 as isize * g.stride[1] as isize + x_off) as usize;
                        if g.stride[1] == 1 {
                            for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                                *d += s;
                            }
                        } else {
                            for (d, s) in dst[ix0..].chunks_mut(g.stride[1]).zip(src) {
                                d[0] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `W'[g·cg + ci, co, ky, kx] = W[g·cog + co, ci, kh−1−ky, kw−1−kx]`: the weight of the
/// input-gradient convolution.
fn flip_transpose(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (cg, cog, taps) = (g.cg(), g.cog(), g.kh * g.kw);
    let mut flipped = vec![0.0f32; weight.len()];
    if taps == 1 && g.groups == 1 {
        // A pointwise weight: the plain transpose, in vector blocks.
        transpose(weight, cog, cg, &mut flipped);
        return flipped;
    }
    for group in 0..g.groups {
        for co in 0..cog {
            for ci in 0..cg {
                let src = &weight[((group * cog + co) * cg + ci) * taps..][..taps];
                let dst = &mut flipped[((group * cg + ci) * cog + co) * taps..][..taps];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
    flipped
}

/// Images per gemm: enough that a gemm covers `min_columns` output positions, but no more
/// than a thread's share of the batch.
///
/// The forward product wants 64 (a multiple of the gemm kernel's 64-row tile, with the column
/// matrix still in cache); the weight gradient wants 512, since each of its gemms reads and
/// writes the whole weight-sized accumulator.
fn images_per_chunk(g: &ConvGeometry, min_columns: usize) -> usize {
    let share = g.batch.div_ceil(rayon::current_num_threads().max(1));
    min_columns.div_ceil(g.p().max(1)).clamp(1, share.max(1))
}

const FORWARD_COLUMNS: usize = 64;
const WEIGHT_GRAD_COLUMNS: usize = 512;

/// Row stride for a matrix `width` columns wide: a whole number of cache lines, and an odd
/// one, so that consecutive rows fall in different cache sets (a stride of a power-of-two
/// bytes makes the gemm's packing thrash the L1).
pub(super) fn padded(width: usize) -> usize {
    width.next_multiple_of(16) | 16
}

/// Scratch matrices reused across the chunks one thread handles.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    out: Vec<f32>,
}

/// Contiguous chunks `(first image, images)` of the batch, grouped into one block per thread:
/// each block an equal share of the images (to within one), cut into near-equal chunks. Blocks
/// of whole chunks split ResNet-50's 7-px layers 22 : 10 images between two threads.
fn blocks(g: &ConvGeometry) -> Vec<Vec<(usize, usize)>> {
    let nb = images_per_chunk(g, WEIGHT_GRAD_COLUMNS);
    let threads = rayon::current_num_threads().clamp(1, g.batch.max(1));
    (0..threads)
        .map(|t| {
            let (first, end) = (t * g.batch / threads, (t + 1) * g.batch / threads);
            let chunks = (end - first).div_ceil(nb);
            (0..chunks)
                .map(|c| {
                    let start = first + c * (end - first) / chunks;
                    (start, first + (c + 1) * (end - first) / chunks - start)
                })
                .collect()
        })
        .collect()
}

/// `y = conv2d(x, weight)` without bias; `x` is `[batch, c_in, h, w]`, the result
/// `[batch, c_out, oh, ow]`, both row-major.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.x_image());
    assert_eq!(weight.len(), g.c_out * g.k());
    if winograd::eligible(g) {
        return winograd::forward(g, x, weight);
    }
    if direct::eligible(g) {
        return direct::forward(g, x, weight);
    }
    let (k, p, cog) = (g.k(), g.p(), g.cog());
    let nb = images_per_chunk(g, FORWARD_COLUMNS);
    let len = g.batch * g.y_image();
    let mut y = output_buffer(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(nb * g.y_image())
        .zip(x.par_chunks(nb * g.x_image()))
        .for_each_init(Scratch::default, |scratch, (y_chunk, x_chunk)| {
            let images = y_chunk.len() / g.y_image();
            let width = images * p;
            let stride = padded(width);
            for group in 0..g.groups {
                let w_g = MatRef::row_major(&weight[group * cog * k..][..cog * k], cog, k);
                if images == 1 && g.is_pointwise() {
                    // The input image already is the column matrix, the output its NCHW place.
                    let x_g = MatRef::row_major(&x_chunk[group * k * p..][..k * p], k, p);
                    gemm(image_group(y_chunk, group, cog, p), w_g, x_g, false);
                    continue;
                }
                let col = sized(&mut scratch.col, k * stride);
                im2col(g, group, x_chunk, col, stride);
                let col = MatRef::strided(col, k, width, stride);
                if images == 1 {
                    gemm(image_group(y_chunk, group, cog, p), w_g, col, false);
                    continue;
                }
                let out = sized(&mut scratch.out, cog * stride);
                gemm(MatMut::strided(out, cog, width, stride), w_g, col, false);
                for (i, y_image) in y_chunk.chunks_exact_mut(g.y_image()).enumerate() {
                    for co in 0..cog {
                        y_image[(group * cog + co) * p..][..p]
                            .write_copy_of_slice(&out[co * stride + i * p..][..p]);
                    }
                }
            }
        });
    // SAFETY: every image's groups × cog rows of p outputs were written above.
    unsafe { y.set_len(len) };
    y
}

/// Group `group`'s `[cog, p]` outputs in one image's unwritten NCHW output, for its gemm to fill.
fn image_group(y_image: &mut [MaybeUninit<f32>], group: usize, cog: usize, p: usize) -> MatMut<'_> {
    MatMut::uninit(&mut y_image[group * cog * p..][..cog * p], cog, p)
}

/// Gradients of `sum(dy · conv2d(x, weight))`: `(dx, dweight)`, each computed only when asked.
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    assert_eq!(x.len(), g.batch * g.x_image());
    assert_eq!(weight.len(), g.c_out * g.k());
    assert_eq!(dy.len(), g.batch * g.y_image());
    if !want_dx && !want_dw {
        return (None, None);
    }
    if want_dx && let Some(transposed) = g.input_grad_as_conv() {
        // A gathering convolution: no scatter, and the gemm's inner size is c_out·kh·kw.
        let dx = forward(&transposed, dy, &flip_transpose(g, weight));
        let (_, dw) = backward(g, x, weight, dy, false, want_dw);
        return (Some(dx), dw);
    }
    if !want_dx && winograd::eligible(g) {
        return (None, Some(winograd::weight_grad(g, x, dy)));
    }
    if want_dw && direct::eligible(g) {
        // dx of a stride-2 convolution by col2im below (stride 1 took the route above), dw
        // straight from the rows.
        let dx = want_dx.then(|| backward(g, x, weight, dy, true, false).0);
        return (dx.flatten(), Some(direct::weight_grad(g, x, dy)));
    }
    let (k, p, cog) = (g.k(), g.p(), g.cog());
    // Both factors of the weight gradient run along the positions, so the gemm packs one of
    // them value by value: the one with fewer rows, `dy` (dW kept as `[K, cog]`, transposed)
    // when cog ≤ K, the columns (dW as `[cog, K]`) otherwise (ResNet-50's 64 → 256 1×1
    // backward: −13%).
    let dw_transposed = cog <= k;
    let blocks = blocks(g);
    // Each block of images owns a contiguous slice of dx and sums its own weight gradient.
    let mut dx = want_dx.then(|| zeroed(g.batch * g.x_image()));
    let mut dx_blocks: Vec<Option<&mut [f32]>> = Vec::with_capacity(blocks.len());
    match dx.as_mut() {
        Some(dx) => {
            let mut rest = &mut dx[..];
            for block in &blocks {
                let images: usize = block.iter().map(|&(_, images)| images).sum();
                let (head, tail) = rest.split_at_mut(images * g.x_image());
                dx_blocks.push(Some(head));
                rest = tail;
            }
        }
        None => dx_blocks.extend(blocks.iter().map(|_| None)),
    }
    let partials: Vec<Option<Vec<f32>>> = blocks
        .into_par_iter()
        .zip(dx_blocks)
        .map(|(block, mut dx_block)| {
            let mut dw_parts = want_dw.then(|| vec![0.0f32; weight.len()]);
            let mut scratch = Scratch::default();
            let block_first = block.first().map_or(0, |&(first, _)| first);
            for &(first, images) in &block {
                let width = images * p;
                let stride = padded(width);
                let x_chunk = &x[first * g.x_image()..][..images * g.x_image()];
                let dy_chunk = &dy[first * g.y_image()..][..images * g.y_image()];
                for group in 0..g.groups {
                    let w_g = MatRef::row_major(&weight[group * cog * k..][..cog * k], cog, k);
                    // dy of this group as [cog, width]: one image's is already in place,
                    // several are gathered into padded rows.
                    let dy_g = if images == 1 {
                        MatRef::row_major(&dy_chunk[group * cog * p..][..cog * p], cog, p)
                    } else {
                        let out = sized(&mut scratch.out, cog * stride);
                        for (i, dy_image) in dy_chunk.chunks_exact(g.y_image()).enumerate() {
                            for co in 0..cog {
                                out[co * stride + i * p..][..p]
                                    .copy_from_slice(&dy_image[(group * cog + co) * p..][..p]);
                            }
                        }
                        MatRef::strided(out, cog, width, stride)
                    };
                    if let Some(dw_parts) = dw_parts.as_mut() {
                        let col = if images == 1 && g.is_pointwise() {
                            MatRef::row_major(&x_chunk[group * k * p..][..k * p], k, p)
                        } else {
                            let col = sized(&mut scratch.col, k * stride);
                            im2col(g, group, x_chunk, col, stride);
                            MatRef::strided(col, k, width, stride)
                        };
                        let dw_g = &mut dw_parts[group * cog * k..][..cog * k];
                        if dw_transposed {
                            gemm(MatMut::row_major(dw_g, k, cog), col, dy_g.transpose(), true);
                        } else {
                            gemm(MatMut::row_major(dw_g, cog, k), dy_g, col.transpose(), true);
                        }
                    }
                    if let Some(dx_block) = dx_block.as_deref_mut() {
                        let dx_chunk = &mut dx_block[(first - block_first) * g.x_image()..]
                            [..images * g.x_image()];
                        // The column scratch is free again once dW has used it.
                        let dcol = sized(&mut scratch.col, k * stride);
                        gemm(
                            MatMut::strided(dcol, k, width, stride),
                            w_g.transpose(),
                            dy_g,
                            false,
                        );
                        col2im(g, group, dcol, stride, dx_chunk);
                    }
                }
            }
            dw_parts
        })
        .collect();
    let dw = want_dw.then(|| {
        let mut parts = partials.into_iter().flatten();
        let mut sum = parts.next().unwrap_or_else(|| vec![0.0; weight.len()]);
        for part in parts {
            for (s, v) in sum.iter_mut().zip(&part) {
                *s += v;
            }
        }
        if dw_transposed {
            untranspose_groups(g, &sum)
        } else {
            sum
        }
    });
    (dx, dw)
}

/// `[K, cog]` per group back to the weight's `[cog, K]`.
fn untranspose_groups(g: &ConvGeometry, transposed: &[f32]) -> Vec<f32> {
    let (k, cog) = (g.k(), g.cog());
    let mut dw = vec![0.0f32; transposed.len()];
    for (src, dst) in transposed
        .chunks_exact(cog * k)
        .zip(dw.chunks_exact_mut(cog * k))
    {
        transpose(src, k, cog, dst);
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geometry::test_values;
    use burn::tensor::ops::ConvOptions;

    /// Direct seven-loop convolution, the definition.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; g.batch * g.y_image()];
        let (cg, cog) = (g.cg(), g.cog());
        for b in 0..g.batch {
            for co in 0..g.c_out {
                let group = co / cog;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0.0f64;
                        for c in 0..cg {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                        - g.pad[0] as isize;
                                    let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                        - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let ci = group * cg + c;
                                    let xv = x[((b * g.c_in + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = w[((co * cg + c) * g.kh + ky) * g.kw + kx];
                                    acc += xv as f64 * wv as f64;
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

    #[test]
    fn forward_matches_the_definition_on_odd_geometries() {
        // (batch, c_in, h, w, c_out, k, stride, pad (begin, end), dilation, groups)
        let cases = [
            (2, 3, 7, 5, 4, [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1], 1),
            (3, 4, 9, 8, 6, [3, 2], [2, 1], [(0, 2), (1, 0)], [1, 2], 2),
            (1, 6, 5, 5, 6, [3, 3], [1, 2], [(2, 1), (1, 1)], [2, 1], 3),
            (2, 5, 6, 6, 7, [1, 1], [1, 1], [(0, 0), (0, 0)], [1, 1], 1),
            (2, 4, 8, 8, 8, [1, 1], [2, 2], [(0, 0), (0, 0)], [1, 1], 1),
        ];
        for (n, (batch, c_in, h, w, c_out, k, stride, padding, dilation, groups)) in
            cases.into_iter().enumerate()
        {
            let options = ConvOptions::new_with_padding(stride, padding, dilation, groups);
            let g = ConvGeometry::new(
                [batch, c_in, h, w],
                [c_out, c_in / groups, k[0], k[1]],
                &options,
            );
            let x = test_values(batch * c_in * h * w, 37, 101);
            let wt = test_values(c_out * g.k(), 53, 89);
            let want = reference(&g, &x, &wt);
            let got = forward(&g, &x, &wt);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "case {n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x, c: the defining property of the transpose.
        let options = ConvOptions::new_with_padding([2, 1], [(1, 2), (2, 0)], [1, 2], 2);
        let g = ConvGeometry::new([1, 4, 7, 6], [2, 2, 3, 2], &options);
        let x: Vec<f32> = (0..g.x_image()).map(|i| (i % 7) as f32 - 3.0).collect();
        let c: Vec<f32> = (0..g.k() * g.p()).map(|i| (i % 5) as f32 - 2.0).collect();
        for group in 0..2 {
            let mut col = vec![0.0; g.k() * g.p()];
            im2col(&g, group, &x, &mut col, g.p());
            let mut back = vec![0.0; g.x_image()];
            col2im(&g, group, &c, g.p(), &mut back);
            let lhs: f32 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs);
        }
    }
}
