//! 3×3, stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray 2016):
//! each 2×2 output tile costs 16 multiplies per channel pair instead of 36, as 16 gemms over
//! transformed tiles. Most of a ResNet's arithmetic is in such layers, in the forward pass, the
//! input gradient (a 3×3 stride-1 convolution itself) and the weight gradient.
//!
//! With `d` a 4×4 input tile, `g` a 3×3 kernel and `Y` the 2×2 output tile:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The weight gradient follows by the adjoint:
//! `dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)] G`. F(2×2, 3×3) only adds and halves, so it is as
//! accurate as the direct product to a few ulp.
//!
//! The transforms run channels-last: each image is transposed to `[h, w, c]` first, so every
//! transform step is a vector operation over all channels of a tile (the tiles of one image
//! row are too few to vectorise over). A transformed tensor is then 16 row-major matrices
//! `[tiles, channels]`, one per tile element ξ, and all three products are plain row-major
//! gemms: `M[ξ] = V[ξ]·Uᵀ[ξ]`, `dU[ξ] += dMᵀ[ξ]·V[ξ]`.

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, gemm, transpose};
use super::geometry::{ConvGeometry, Kept, sized, sized_zeroed, zeroed};
use super::simd::vectorized;
use std::cell::Cell;

/// Tile elements: a 4×4 transformed tile.
const XI: usize = 16;

/// Channels below which the transforms cost more than the multiplies they save.
const MIN_CHANNELS: usize = 32;

/// Whether F(2×2, 3×3) computes this convolution.
fn computes(g: &ConvGeometry) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.groups == 1
        && g.oh > 0
        && g.ow > 0
}

/// Whether this convolution is one F(2×2, 3×3) computes, and computes faster.
pub fn eligible(g: &ConvGeometry) -> bool {
    computes(g) && g.c_in.min(g.c_out) >= MIN_CHANNELS
}

/// The tile grid of one image.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
}

impl Tiles {
    fn of(g: &ConvGeometry) -> Self {
        Tiles {
            th: g.oh.div_ceil(2),
            tw: g.ow.div_ceil(2),
        }
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

/// Channel pairs per vector step of the weight transforms.
const LANE: usize = 16;
type Lane = [f32; LANE];

/// `G v` for 3 lane-vectors: `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`.
#[inline(always)]
fn g_times(a: &Lane, b: &Lane, d: &Lane) -> [Lane; 4] {
    let mut out = [[0.0; LANE]; 4];
    for i in 0..LANE {
        out[0][i] = a[i];
        out[1][i] = 0.5 * (a[i] + b[i] + d[i]);
        out[2][i] = 0.5 * (a[i] - b[i] + d[i]);
        out[3][i] = d[i];
    }
    out
}

/// `Gᵀ v` for 4 lane-vectors: `Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1]`.
#[inline(always)]
fn gt_times(v: [&Lane; 4]) -> [Lane; 3] {
    let mut out = [[0.0; LANE]; 3];
    for i in 0..LANE {
        out[0][i] = v[0][i] + 0.5 * (v[1][i] + v[2][i]);
        out[1][i] = 0.5 * (v[1][i] - v[2][i]);
        out[2][i] = 0.5 * (v[1][i] + v[2][i]) + v[3][i];
    }
    out
}

/// Splits each of the 16 matrices of `t` (`pairs` long each) into the same pair ranges, one
/// per parallel task: `(first pair, the 16 parts)`.
fn pair_blocks(t: &mut [f32], pairs: usize) -> Vec<(usize, Vec<&mut [f32]>)> {
    let per_task = pairs
        .div_ceil(4 * rayon::current_num_threads().max(1))
        .next_multiple_of(LANE)
        .max(LANE);
    let mut blocks: Vec<(usize, Vec<&mut [f32]>)> = (0..pairs.div_ceil(per_task))
        .map(|i| (i * per_task, Vec::with_capacity(XI)))
        .collect();
    for matrix in t.chunks_mut(pairs) {
        for (block, part) in blocks.iter_mut().zip(matrix.chunks_mut(per_task)) {
            block.1.push(part);
        }
    }
    blocks
}

/// `U[ξ] = (G g Gᵀ)[ξ]` for every (c_out, c_in): 16 matrices `[c_out, c_in]`, computed
/// sixteen channel pairs at a time.
fn transform_weights(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let pairs = g.c_out * g.c_in;
    let mut u = vec![0.0f32; XI * pairs];
    pair_blocks(&mut u, pairs)
        .into_par_iter()
        .for_each(|(first, mut parts)| {
            vectorized(
                #[inline(always)]
                || {
                    for start in (0..parts[0].len()).step_by(LANE) {
                        let n = LANE.min(parts[0].len() - start);
                        // The 9 taps of 16 pairs, tap-major.
                        let mut k = [[0.0f32; LANE]; 9];
                        for i in 0..n {
                            let taps = &weight[(first + start + i) * 9..][..9];
                            for (tap, &v) in taps.iter().enumerate() {
                                k[tap][i] = v;
                            }
                        }
                        // (G·g) column by column, then each of its rows times Gᵀ.
                        let cols: [[Lane; 4]; 3] =
                            std::array::from_fn(|c| g_times(&k[c], &k[3 + c], &k[6 + c]));
                        for r in 0..4 {
                            let row = g_times(&cols[0][r], &cols[1][r], &cols[2][r]);
                            for (c, v) in row.iter().enumerate() {
                                parts[r * 4 + c][start..start + n].copy_from_slice(&v[..n]);
                            }
                        }
                    }
                },
            )
        });
    u
}

/// `dg = Gᵀ dU G` from 16 matrices `dU[ξ]` (`[c_out, c_in]`) to the weight layout
/// `[c_out, c_in, 3, 3]`, sixteen channel pairs at a time.
fn untransform_weight_grad(g: &ConvGeometry, du: &[f32]) -> Vec<f32> {
    let pairs = g.c_out * g.c_in;
    let mut dw = vec![0.0f32; 9 * pairs];
    dw.par_chunks_mut(9 * LANE * 64)
        .enumerate()
        .for_each(|(task, kernels)| {
            vectorized(
                #[inline(always)]
                || {
                    for (block, out) in kernels.chunks_mut(9 * LANE).enumerate() {
                        let first = (task * 64 + block) * LANE;
                        let n = out.len() / 9;
                        let m: [Lane; XI] = std::array::from_fn(|xi| {
                            let mut lane = [0.0; LANE];
                            lane[..n].copy_from_slice(&du[xi * pairs + first..][..n]);
                            lane
                        });
                        // Gᵀ along each row of dU (4×3), then down the columns (3×3).
                        let rows: [[Lane; 3]; 4] = std::array::from_fn(|r| {
                            gt_times([&m[r * 4], &m[r * 4 + 1], &m[r * 4 + 2], &m[r * 4 + 3]])
                        });
                        for c in 0..3 {
                            let col =
                                gt_times([&rows[0][c], &rows[1][c], &rows[2][c], &rows[3][c]]);
                            for (r, v) in col.iter().enumerate() {
                                for i in 0..n {
                                    out[i * 9 + r * 3 + c] = v[i];
                                }
                            }
                        }
                    }
                },
            )
        });
    dw
}

/// The first four consecutive `c`-long vectors of `t`.
#[inline(always)]
fn four_vectors(t: &mut [f32], c: usize) -> [&mut [f32]; 4] {
    let mut vectors = t.chunks_exact_mut(c);
    std::array::from_fn(|_| vectors.next().expect("four vectors"))
}

/// `out = f(a, b)` elementwise over equal-length slices: one vectorisable pass.
#[inline(always)]
fn zip_into(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// `V[ξ][tile] = (Bᵀ d B)[ξ]` over all channels, for every tile of one image given
/// channels-last (`[h, w, c_in]`); `v[ξ]` is the image's `[tiles, c_in]` block of matrix ξ.
fn transform_input(
    g: &ConvGeometry,
    grid: Tiles,
    x_hwc: &[f32],
    v: &mut [&mut [f32]],
    q: &mut [f32],
) {
    let c = g.c_in;
    let zeros = vec![0.0f32; c];
    vectorized(
        #[inline(always)]
        || {
            for ty in 0..grid.th {
                for tx in 0..grid.tw {
                    let pixel = |r: usize, col: usize| {
                        let iy = (2 * ty + r) as isize - g.pad[0] as isize;
                        let ix = (2 * tx + col) as isize - g.pad[1] as isize;
                        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                            &zeros[..]
                        } else {
                            &x_hwc[(iy as usize * g.w + ix as usize) * c..][..c]
                        }
                    };
                    // d·B along each input row r: q[r][·] = [d0 − d2, d1 + d2, d2 − d1, d1 − d3].
                    for r in 0..4 {
                        let (d0, d1, d2, d3) = (pixel(r, 0), pixel(r, 1), pixel(r, 2), pixel(r, 3));
                        let [q0, q1, q2, q3] = four_vectors(&mut q[r * 4 * c..], c);
                        zip_into(q0, d0, d2, |a, b| a - b);
                        zip_into(q1, d1, d2, |a, b| a + b);
                        zip_into(q2, d2, d1, |a, b| a - b);
                        zip_into(q3, d1, d3, |a, b| a - b);
                    }
                    // Bᵀ down the rows: [q0 − q2, q1 + q2, q2 − q1, q1 − q3].
                    let t = ty * grid.tw + tx;
                    let qv = |r: usize, col: usize| &q[(r * 4 + col) * c..][..c];
                    for (xi, matrix) in v.iter_mut().enumerate() {
                        let dst = &mut matrix[t * c..][..c];
                        let (row, col) = (xi / 4, xi % 4);
                        let (q0, q1, q2, q3) = (qv(0, col), qv(1, col), qv(2, col), qv(3, col));
                        match row {
                            0 => zip_into(dst, q0, q2, |a, b| a - b),
                            1 => zip_into(dst, q1, q2, |a, b| a + b),
                            2 => zip_into(dst, q2, q1, |a, b| a - b),
                            _ => zip_into(dst, q1, q3, |a, b| a - b),
                        }
                    }
                }
            }
        },
    )
}

/// `y = Aᵀ M A` over all channels for every tile of one image, channels-last
/// (`[oh, ow, c_out]`), from `m` laid out `[16][tiles][c_out]`.
fn transform_output(
    g: &ConvGeometry,
    grid: Tiles,
    m: &[f32],
    tiles: usize,
    t0: usize,
    y_hwc: &mut [f32],
    s: &mut [f32],
) {
    let c = g.c_out;
    vectorized(
        #[inline(always)]
        || {
            for ty in 0..grid.th {
                for tx in 0..grid.tw {
                    let t = t0 + ty * grid.tw + tx;
                    let at = |xi: usize| &m[(xi * tiles + t) * c..][..c];
                    // M·A per row r: s[r][0] = m0 + m1 + m2, s[r][1] = m1 − m2 − m3.
                    for r in 0..4 {
                        let (m0, m1, m2, m3) =
                            (at(r * 4), at(r * 4 + 1), at(r * 4 + 2), at(r * 4 + 3));
                        let (left, right) = s[r * 2 * c..][..2 * c].split_at_mut(c);
                        for ((((l, r), &a), &b), (&cc, &d)) in left
                            .iter_mut()
                            .zip(right.iter_mut())
                            .zip(m0)
                            .zip(m1)
                            .zip(m2.iter().zip(m3))
                        {
                            *l = a + b + cc;
                            *r = b - cc - d;
                        }
                    }
                    // Aᵀ down the rows: output row 0 = s0 + s1 + s2, row 1 = s1 − s2 − s3.
                    for i in 0..2 {
                        let oy = 2 * ty + i;
                        if oy >= g.oh {
                            break;
                        }
                        for j in 0..2 {
                            let ox = 2 * tx + j;
                            if ox >= g.ow {
                                break;
                            }
                            let sv = |r: usize| &s[(r * 2 + j) * c..][..c];
                            let (s0, s1, s2, s3) = (sv(0), sv(1), sv(2), sv(3));
                            let dst = &mut y_hwc[(oy * g.ow + ox) * c..][..c];
                            for ((((o, &a), &b), &cc), &d) in
                                dst.iter_mut().zip(s0).zip(s1).zip(s2).zip(s3)
                            {
                                *o = if i == 0 { a + b + cc } else { b - cc - d };
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `dM = A dY Aᵀ` over all channels for every tile of one image, from `dY` channels-last
/// (`[oh, ow, c_out]`) into `dm[ξ]`, the image's `[tiles, c_out]` block of matrix ξ (the
/// adjoint of [`transform_output`]); outputs past an odd edge count as zero.
fn transform_output_grad(
    g: &ConvGeometry,
    grid: Tiles,
    dy_hwc: &[f32],
    dm: &mut [&mut [f32]],
    p: &mut [f32],
) {
    let c = g.c_out;
    let zeros = vec![0.0f32; c];
    vectorized(
        #[inline(always)]
        || {
            for ty in 0..grid.th {
                for tx in 0..grid.tw {
                    let grad = |i: usize, j: usize| {
                        let (oy, ox) = (2 * ty + i, 2 * tx + j);
                        if oy < g.oh && ox < g.ow {
                            &dy_hwc[(oy * g.ow + ox) * c..][..c]
                        } else {
                            &zeros[..]
                        }
                    };
                    // P = dY·Aᵀ per output row i: [a, a + b, a − b, −b] (a, b its two columns).
                    for i in 0..2 {
                        let (a, b) = (grad(i, 0), grad(i, 1));
                        let [p0, p1, p2, p3] = four_vectors(&mut p[i * 4 * c..], c);
                        p0.copy_from_slice(a);
                        zip_into(p1, a, b, |x, y| x + y);
                        zip_into(p2, a, b, |x, y| x - y);
                        zip_into(p3, a, b, |_, y| -y);
                    }
                    // A down the rows: [P0, P0 + P1, P0 − P1, −P1].
                    let t = ty * grid.tw + tx;
                    for (xi, matrix) in dm.iter_mut().enumerate() {
                        let dst = &mut matrix[t * c..][..c];
                        let (row, col) = (xi / 4, xi % 4);
                        let (top, bottom) = (&p[col * c..][..c], &p[(4 + col) * c..][..c]);
                        match row {
                            0 => dst.copy_from_slice(top),
                            1 => zip_into(dst, top, bottom, |a, b| a + b),
                            2 => zip_into(dst, top, bottom, |a, b| a - b),
                            _ => zip_into(dst, top, bottom, |_, b| -b),
                        }
                    }
                }
            }
        },
    )
}

/// Scratch of one thread: one image channels-last, and the 16 vectors of one tile's
/// transform.
#[derive(Default)]
struct Scratch {
    hwc: Vec<f32>,
    tile: Vec<f32>,
}

/// Tiles per group of images: each of a group's 16 gemms packs its weight matrix once for all
/// of them, so more tiles amortise the packing; fewer keep the transformed tensors in cache.
const GROUP_TILES: usize = 512;

/// Floats of one transformed tensor of a group, at most.
const GROUP_BUDGET: usize = 1 << 22;

/// Images per group: [`GROUP_TILES`] tiles within [`GROUP_BUDGET`], and at least one image
/// per thread for the transforms.
fn images_per_group(g: &ConvGeometry, grid: Tiles) -> usize {
    let per_image = XI * grid.per_image() * g.c_in.max(g.c_out);
    let wanted = GROUP_TILES.div_ceil(grid.per_image().max(1));
    let affordable = GROUP_BUDGET / per_image.max(1);
    wanted
        .min(affordable)
        .max(rayon::current_num_threads())
        .clamp(1, g.batch.max(1))
}

/// A group's transformed tensor (16 matrices `[tiles, channels]`) split by image: for each
/// image, its `per_image` rows of every matrix, so that images fill their tiles in parallel.
fn by_image(
    t: &mut [f32],
    tiles: usize,
    per_image: usize,
    channels: usize,
) -> Vec<Vec<&mut [f32]>> {
    let images = tiles / per_image.max(1);
    let mut parts: Vec<Vec<&mut [f32]>> = (0..images).map(|_| Vec::with_capacity(XI)).collect();
    for matrix in t.chunks_mut(tiles * channels) {
        for (image, rows) in parts
            .iter_mut()
            .zip(matrix.chunks_mut(per_image * channels))
        {
            image.push(rows);
        }
    }
    parts
}

thread_local! {
    /// The two transformed tensors of a group (at most [`GROUP_BUDGET`] values each), kept
    /// between calls: reuse saves each layer an allocation and a zeroing pass, and finds them in
    /// cache (ResNet-18 w8 BYOL step: +5–7 %).
    static TRANSFORMED: Cell<[Vec<f32>; 2]> = const { Cell::new([Vec::new(), Vec::new()]) };
}

/// `y = conv2d(x, weight)` for an [`eligible`] geometry; layouts as in the im2col forward pass.
///
/// Per group of images: input transforms (parallel over images), the 16 products (parallel
/// over ξ), output transforms (parallel over images).
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    debug_assert!(computes(g));
    let grid = Tiles::of(g);
    let u = transform_weights(g, weight);
    let nb = images_per_group(g, grid);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let (x_image, y_image, per) = (g.c_in * hw, g.c_out * ohw, grid.per_image());
    let pairs = g.c_in * g.c_out;
    let mut y = zeroed(g.batch * y_image);
    let mut transformed = Kept::take(&TRANSFORMED);
    let [v, m] = &mut *transformed;
    for (y_group, x_group) in y.chunks_mut(nb * y_image).zip(x.chunks(nb * x_image)) {
        let images = x_group.len() / x_image;
        let tiles = images * per;
        let v = sized_zeroed(v, XI * tiles * g.c_in);
        by_image(v, tiles, per, g.c_in)
            .into_par_iter()
            .zip(x_group.par_chunks(x_image))
            .for_each_init(Scratch::default, |s, (mut parts, image)| {
                let hwc = sized(&mut s.hwc, x_image);
                transpose(image, g.c_in, hw, hwc);
                let tile = sized(&mut s.tile, XI * g.c_in);
                transform_input(g, grid, hwc, &mut parts, tile);
            });
        let m = sized_zeroed(m, XI * tiles * g.c_out);
        m.par_chunks_mut(tiles * g.c_out)
            .enumerate()
            .for_each(|(xi, m_xi)| {
                // M[ξ]ᵀ = U[ξ]·V[ξ]ᵀ, written straight into M[ξ]'s tile-major rows.
                gemm(
                    MatMut::transposed(m_xi, g.c_out, tiles),
                    MatRef::row_major(&u[xi * pairs..][..pairs], g.c_out, g.c_in),
                    MatRef::row_major(&v[xi * tiles * g.c_in..][..tiles * g.c_in], tiles, g.c_in)
                        .transpose(),
                    false,
                );
            });
        let m = &*m;
        y_group.par_chunks_mut(y_image).enumerate().for_each_init(
            Scratch::default,
            |s, (i, image)| {
                let hwc = sized(&mut s.hwc, y_image);
                let tile = sized(&mut s.tile, XI * g.c_out);
                transform_output(g, grid, m, tiles, i * per, hwc, tile);
                transpose(hwc, ohw, g.c_out, image);
            },
        );
    }
    y
}

/// The weight gradient of `sum(dy · conv2d(x, weight))` for an [`eligible`] geometry.
///
/// Per group of images: transforms of the input and of the output gradient (parallel over
/// images), then `dU[ξ] += dM[ξ]ᵀ·V[ξ]` (parallel over ξ: each task owns its accumulator).
pub fn weight_grad(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(computes(g));
    let grid = Tiles::of(g);
    let nb = images_per_group(g, grid);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let (x_image, y_image, per) = (g.c_in * hw, g.c_out * ohw, grid.per_image());
    let pairs = g.c_out * g.c_in;
    let mut du = vec![0.0f32; XI * pairs];
    let mut transformed = Kept::take(&TRANSFORMED);
    let [v, dm] = &mut *transformed;
    for (x_group, dy_group) in x.chunks(nb * x_image).zip(dy.chunks(nb * y_image)) {
        let images = x_group.len() / x_image;
        let tiles = images * per;
        let v = sized_zeroed(v, XI * tiles * g.c_in);
        let dm = sized_zeroed(dm, XI * tiles * g.c_out);
        by_image(v, tiles, per, g.c_in)
            .into_par_iter()
            .zip(by_image(dm, tiles, per, g.c_out))
            .zip(
                x_group
                    .par_chunks(x_image)
                    .zip(dy_group.par_chunks(y_image)),
            )
            .for_each_init(
                Scratch::default,
                |s, ((mut v_parts, mut dm_parts), (image, grad))| {
                    let hwc = sized(&mut s.hwc, x_image.max(y_image));
                    let tile = sized(&mut s.tile, XI * g.c_in.max(g.c_out));
                    transpose(image, g.c_in, hw, hwc);
                    transform_input(g, grid, hwc, &mut v_parts, tile);
                    transpose(grad, g.c_out, ohw, hwc);
                    transform_output_grad(g, grid, hwc, &mut dm_parts, tile);
                },
            );
        let (v, dm) = (&*v, &*dm);
        du.par_chunks_mut(pairs)
            .enumerate()
            .for_each(|(xi, du_xi)| {
                let v_xi =
                    MatRef::row_major(&v[xi * tiles * g.c_in..][..tiles * g.c_in], tiles, g.c_in);
                let dm_xi = MatRef::row_major(
                    &dm[xi * tiles * g.c_out..][..tiles * g.c_out],
                    tiles,
                    g.c_out,
                );
                gemm(
                    MatMut::row_major(du_xi, g.c_out, g.c_in),
                    dm_xi.transpose(),
                    v_xi,
                    true,
                );
            });
    }
    untransform_weight_grad(g, &du)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geometry::test_values;
    use burn::tensor::ops::ConvOptions;

    /// Direct convolution and its weight gradient in f64, the definitions.
    fn direct(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0f64; g.batch * g.c_out * g.oh * g.ow];
        let mut dw = vec![0.0f64; w.len()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let o = ((b * g.c_out + co) * g.oh + oy) * g.ow + ox;
                        for ci in 0..g.c_in {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - g.pad[0] as isize;
                                    let ix = (ox + kx) as isize - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + ci) * g.h + iy as usize) * g.w
                                        + ix as usize]
                                        as f64;
                                    let wi = ((co * g.c_in + ci) * 3 + ky) * 3 + kx;
                                    y[o] += xv * w[wi] as f64;
                                    dw[wi] += xv * dy[o] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dw)
    }

    #[test]
    fn forward_and_weight_grad_match_the_definition() {
        // (batch, c_in, h, w, c_out, padding (begin, end)): odd and even outputs, asymmetric
        // and wide padding, a 1×1 image, more images than threads; the largest first, so the
        // others run in reused transform buffers still holding its values.
        let cases = [
            (3, 33, 5, 3, 40, [(1, 1), (1, 1)]),
            (2, 3, 7, 5, 4, [(1, 1), (1, 1)]),
            (5, 2, 4, 4, 3, [(1, 1), (1, 1)]),
            (1, 4, 6, 9, 2, [(0, 0), (2, 1)]),
            (3, 1, 1, 1, 2, [(1, 1), (1, 1)]),
            (2, 2, 5, 6, 5, [(2, 2), (0, 1)]),
        ];
        for (n, (batch, c_in, h, w, c_out, padding)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new_with_padding([1, 1], padding, [1, 1], 1);
            let g = ConvGeometry::new([batch, c_in, h, w], [c_out, c_in, 3, 3], &options);
            assert!(computes(&g));
            let x = test_values(batch * c_in * h * w, 37, 101);
            let wt = test_values(c_out * c_in * 9, 53, 89);
            let dy = test_values(batch * c_out * g.oh * g.ow, 29, 83);
            let (want_y, want_dw) = direct(&g, &x, &wt, &dy);
            let got_y = forward(&g, &x, &wt);
            let got_dw = weight_grad(&g, &x, &dy);
            for (i, (a, b)) in got_y.iter().zip(&want_y).enumerate() {
                assert!((*a as f64 - b).abs() < 1e-4, "case {n} y[{i}]: {a} vs {b}");
            }
            for (i, (a, b)) in got_dw.iter().zip(&want_dw).enumerate() {
                assert!((*a as f64 - b).abs() < 1e-3, "case {n} dw[{i}]: {a} vs {b}");
            }
        }
    }
}
