//! 3×3, stride-1 convolution by Winograd's minimal filtering F(m×m, 3×3) (Lavin & Gray 2016):
//! each m×m output tile comes from an α×α input tile (α = m + 2) by α² products per channel
//! pair instead of 9m², as α² gemms over transformed tiles: F(2×2, 3×3) makes 16 products per
//! 4 outputs (2.25× fewer than direct), F(4×4, 3×3) 36 per 16 (4× fewer). Most of a ResNet's
//! arithmetic is in such layers, in the forward pass, the input gradient (a 3×3 stride-1
//! convolution itself) and the weight gradient.
//!
//! With `d` an input tile, `g` a 3×3 kernel and `Y` the output tile:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The weight gradient follows by the adjoint:
//! `dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)] G`. F(2×2) only adds and halves, so it is as
//! accurate as the direct product to a few ulp; F(4×4)'s transforms scale by up to 8 and 1/24,
//! which costs a few bits more (in the test: errors up to 3e-6 of the sum of the terms'
//! magnitudes, against 3e-7 for F(2×2)); oneDNN and cuDNN use it for the same layers.
//!
//! The transforms run channels-last: each image is transposed to `[h, w, c]` first, so every
//! transform step is a vector operation over all channels of a tile (the tiles of one image
//! row are too few to vectorise over). A transformed tensor is then α² row-major matrices
//! `[tiles, channels]`, one per tile element ξ, and all three products are plain row-major
//! gemms: `M[ξ] = V[ξ]·Uᵀ[ξ]`, `dU[ξ] += dMᵀ[ξ]·V[ξ]`.

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, gemm, transpose, transpose_uninit};
use super::geometry::{ConvGeometry, Kept, output_buffer, sized, sized_zeroed};
use super::simd::{LANES, vectorized};
use std::cell::Cell;

/// The largest input tile side, F(4×4, 3×3)'s, and output tile side.
const MAX_ALPHA: usize = 6;
const MAX_M: usize = 4;

/// `W` channels of one tile element: what every transform step computes on, a vector register
/// for `W` = [`LANES`] (`W` = 1 for the channels past the last whole register).
#[derive(Clone, Copy)]
struct Ch<const W: usize>([f32; W]);

impl<const W: usize> Ch<W> {
    const ZERO: Self = Ch([0.0; W]);

    #[inline(always)]
    fn load(src: &[f32]) -> Self {
        Ch(src[..W].try_into().expect("W values"))
    }

    #[inline(always)]
    fn store(self, dst: &mut [f32]) {
        dst[..W].copy_from_slice(&self.0);
    }
}

impl<const W: usize> std::ops::Add for Ch<W> {
    type Output = Self;
    #[inline(always)]
    fn add(mut self, other: Self) -> Self {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
        self
    }
}

impl<const W: usize> std::ops::Sub for Ch<W> {
    type Output = Self;
    #[inline(always)]
    fn sub(mut self, other: Self) -> Self {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a -= b;
        }
        self
    }
}

impl<const W: usize> std::ops::Mul<Ch<W>> for f32 {
    type Output = Ch<W>;
    #[inline(always)]
    fn mul(self, mut v: Ch<W>) -> Ch<W> {
        for a in v.0.iter_mut() {
            *a *= self;
        }
        v
    }
}

/// One of Winograd's F(m×m, 3×3) algorithms, as its transforms along one line of a tile
/// (each 2-D transform is the line transform along rows, then along columns). Lines are
/// arrays of the largest size; an algorithm reads and writes only its first `A` (or `M`).
trait Algorithm {
    /// Output tile side m.
    const M: usize;
    /// Input tile side α = m + 2.
    const A: usize;
    /// `Bᵀ d`.
    fn bt<const W: usize>(d: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; MAX_ALPHA];
    /// `G g`.
    fn g<const W: usize>(k: [Ch<W>; 3]) -> [Ch<W>; MAX_ALPHA];
    /// `Gᵀ u`, the adjoint of [`Algorithm::g`].
    fn gt<const W: usize>(u: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; 3];
    /// `Aᵀ m`.
    fn at<const W: usize>(m: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; MAX_M];
    /// `A y`, the adjoint of [`Algorithm::at`].
    fn a<const W: usize>(y: [Ch<W>; MAX_M]) -> [Ch<W>; MAX_ALPHA];

    /// Tile elements: the α² products per tile.
    fn xi() -> usize {
        Self::A * Self::A
    }
}

/// F(2×2, 3×3), interpolation points 0, ±1, ∞: only adds and halves.
struct F2;

impl Algorithm for F2 {
    const M: usize = 2;
    const A: usize = 4;

    #[inline(always)]
    fn bt<const W: usize>(d: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; MAX_ALPHA] {
        let z = Ch::ZERO;
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3], z, z]
    }

    #[inline(always)]
    fn g<const W: usize>([k0, k1, k2]: [Ch<W>; 3]) -> [Ch<W>; MAX_ALPHA] {
        let z = Ch::ZERO;
        [k0, 0.5 * (k0 + k1 + k2), 0.5 * (k0 - k1 + k2), k2, z, z]
    }

    #[inline(always)]
    fn gt<const W: usize>(u: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; 3] {
        [
            u[0] + 0.5 * (u[1] + u[2]),
            0.5 * (u[1] - u[2]),
            0.5 * (u[1] + u[2]) + u[3],
        ]
    }

    #[inline(always)]
    fn at<const W: usize>(m: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; MAX_M] {
        let z = Ch::ZERO;
        [m[0] + m[1] + m[2], m[1] - m[2] - m[3], z, z]
    }

    #[inline(always)]
    fn a<const W: usize>(y: [Ch<W>; MAX_M]) -> [Ch<W>; MAX_ALPHA] {
        let z = Ch::ZERO;
        [y[0], y[0] + y[1], y[0] - y[1], Ch::ZERO - y[1], z, z]
    }
}

/// F(4×4, 3×3), interpolation points 0, ±1, ±2, ∞ (Lavin & Gray's matrices).
struct F4;

impl Algorithm for F4 {
    const M: usize = 4;
    const A: usize = 6;

    #[inline(always)]
    fn bt<const W: usize>(d: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; MAX_ALPHA] {
        // Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0;
        //       0 4 0 −5 0 1], sharing the sums that rows 1–4 have in common.
        let (d4_4d2, d3_4d1) = (d[4] - 4.0 * d[2], d[3] - 4.0 * d[1]);
        let (d4_d2, d3_d1) = (d[4] - d[2], 2.0 * (d[3] - d[1]));
        [
            4.0 * d[0] - 5.0 * d[2] + d[4],
            d4_4d2 + d3_4d1,
            d4_4d2 - d3_4d1,
            d4_d2 + d3_d1,
            d4_d2 - d3_d1,
            4.0 * d[1] - 5.0 * d[3] + d[5],
        ]
    }

    #[inline(always)]
    fn g<const W: usize>([k0, k1, k2]: [Ch<W>; 3]) -> [Ch<W>; MAX_ALPHA] {
        // G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙; 1⁄24 −1⁄12 ⅙; 0 0 1].
        let (even, odd) = (k0 + k2, k1);
        let (even4, odd4) = ((1.0 / 24.0) * k0 + (1.0 / 6.0) * k2, (1.0 / 12.0) * k1);
        [
            0.25 * k0,
            (-1.0 / 6.0) * (even + odd),
            (-1.0 / 6.0) * (even - odd),
            even4 + odd4,
            even4 - odd4,
            k2,
        ]
    }

    #[inline(always)]
    fn gt<const W: usize>(u: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; 3] {
        let (s12, d12) = (u[1] + u[2], u[1] - u[2]);
        let (s34, d34) = (u[3] + u[4], u[3] - u[4]);
        [
            0.25 * u[0] - (1.0 / 6.0) * s12 + (1.0 / 24.0) * s34,
            (-1.0 / 6.0) * d12 + (1.0 / 12.0) * d34,
            (-1.0 / 6.0) * s12 + (1.0 / 6.0) * s34 + u[5],
        ]
    }

    #[inline(always)]
    fn at<const W: usize>(m: [Ch<W>; MAX_ALPHA]) -> [Ch<W>; MAX_M] {
        // Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
        let (s12, d12) = (m[1] + m[2], m[1] - m[2]);
        let (s34, d34) = (m[3] + m[4], m[3] - m[4]);
        [
            m[0] + s12 + s34,
            d12 + 2.0 * d34,
            s12 + 4.0 * s34,
            d12 + 8.0 * d34 + m[5],
        ]
    }

    #[inline(always)]
    fn a<const W: usize>(y: [Ch<W>; MAX_M]) -> [Ch<W>; MAX_ALPHA] {
        let (even, odd) = (y[0] + y[2], y[1] + y[3]);
        let (even2, odd2) = (y[0] + 4.0 * y[2], 2.0 * y[1] + 8.0 * y[3]);
        [
            y[0],
            even + odd,
            even - odd,
            even2 + odd2,
            even2 - odd2,
            y[3],
        ]
    }
}

/// Channels below which the transforms cost more than the multiplies they save.
const MIN_CHANNELS: usize = 32;

/// Whether F(m×m, 3×3) computes this convolution.
fn computes(g: &ConvGeometry) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.groups == 1
        && g.oh > 0
        && g.ow > 0
}

/// Whether this convolution is one Winograd's algorithm computes, and computes faster.
pub fn eligible(g: &ConvGeometry) -> bool {
    computes(g) && g.c_in.min(g.c_out) >= MIN_CHANNELS
}

/// Whether F(4×4) rather than F(2×2) computes this convolution: where its products (edge tiles
/// included) are at most ¾ of F(2×2)'s, which pays for its larger transforms.
fn four_by_four(g: &ConvGeometry) -> bool {
    let products = |m: usize| (m + 2) * (m + 2) * g.oh.div_ceil(m) * g.ow.div_ceil(m);
    4 * products(4) <= 3 * products(2)
}

/// The tile grid of one image.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
}

impl Tiles {
    fn of<F: Algorithm>(g: &ConvGeometry) -> Self {
        Tiles {
            th: g.oh.div_ceil(F::M),
            tw: g.ow.div_ceil(F::M),
        }
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

/// Splits each of the α² matrices of `t` (`pairs` long each) into the same pair ranges, one
/// per parallel task: `(first pair, the α² parts)`.
fn pair_blocks(t: &mut [f32], pairs: usize) -> Vec<(usize, Vec<&mut [f32]>)> {
    let per_task = pairs
        .div_ceil(4 * rayon::current_num_threads().max(1))
        .next_multiple_of(LANES)
        .max(LANES);
    let mut blocks: Vec<(usize, Vec<&mut [f32]>)> = (0..pairs.div_ceil(per_task))
        .map(|i| (i * per_task, Vec::with_capacity(MAX_ALPHA * MAX_ALPHA)))
        .collect();
    for matrix in t.chunks_mut(pairs) {
        for (block, part) in blocks.iter_mut().zip(matrix.chunks_mut(per_task)) {
            block.1.push(part);
        }
    }
    blocks
}

/// `u[ξ] = (G g Gᵀ)[ξ]` for every (c_in, c_out): α² matrices `[c_in, c_out]`, computed
/// sixteen channel pairs at a time; every element of `u` is written.
///
/// Transposed relative to the weight so that the forward gemm reads `U[ξ]` (`[c_out, c_in]`)
/// with unit row stride: the gemm packs such a matrix by copying whole columns, a
/// `[c_out, c_in]` one value by value.
fn transform_weights<F: Algorithm>(g: &ConvGeometry, weight: &[f32], u: &mut [f32]) {
    let (a, pairs) = (F::A, g.c_out * g.c_in);
    assert_eq!(u.len(), F::xi() * pairs);
    pair_blocks(u, pairs)
        .into_par_iter()
        .for_each(|(first, mut parts)| {
            vectorized(
                #[inline(always)]
                || {
                    for start in (0..parts[0].len()).step_by(LANES) {
                        let n = LANES.min(parts[0].len() - start);
                        // The 9 taps of 16 pairs, tap-major.
                        let mut k = [Ch::<LANES>::ZERO; 9];
                        for i in 0..n {
                            let pair = first + start + i;
                            let (ci, co) = (pair / g.c_out, pair % g.c_out);
                            let taps = &weight[(co * g.c_in + ci) * 9..][..9];
                            for (tap, &w) in taps.iter().enumerate() {
                                k[tap].0[i] = w;
                            }
                        }
                        // G·g column by column, then each of its rows times Gᵀ.
                        let columns: [[Ch<LANES>; MAX_ALPHA]; 3] =
                            std::array::from_fn(|c| F::g([k[c], k[3 + c], k[6 + c]]));
                        for i in 0..a {
                            let row = F::g([columns[0][i], columns[1][i], columns[2][i]]);
                            for (j, lane) in row.iter().enumerate().take(a) {
                                parts[i * a + j][start..start + n].copy_from_slice(&lane.0[..n]);
                            }
                        }
                    }
                },
            )
        });
}

/// `dg = Gᵀ dU G` from α² matrices `dU[ξ]` (`[c_out, c_in]`) to the weight layout
/// `[c_out, c_in, 3, 3]`, sixteen channel pairs at a time.
fn untransform_weight_grad<F: Algorithm>(g: &ConvGeometry, du: &[f32]) -> Vec<f32> {
    let (a, pairs) = (F::A, g.c_out * g.c_in);
    let mut dw = vec![0.0f32; 9 * pairs];
    dw.par_chunks_mut(9 * LANES * 64)
        .enumerate()
        .for_each(|(task, kernels)| {
            vectorized(
                #[inline(always)]
                || {
                    for (block, out) in kernels.chunks_mut(9 * LANES).enumerate() {
                        let first = (task * 64 + block) * LANES;
                        let n = out.len() / 9;
                        let element = |xi: usize| {
                            let mut lane = Ch::<LANES>::ZERO;
                            lane.0[..n].copy_from_slice(&du[xi * pairs + first..][..n]);
                            lane
                        };
                        // Gᵀ along each row of dU (α × 3), then down the columns (3 × 3).
                        let mut rows = [[Ch::ZERO; 3]; MAX_ALPHA];
                        for (i, row) in rows.iter_mut().enumerate().take(a) {
                            *row = F::gt(std::array::from_fn(|j| {
                                if j < a { element(i * a + j) } else { Ch::ZERO }
                            }));
                        }
                        for c in 0..3 {
                            let column = F::gt(std::array::from_fn(|i| rows[i][c]));
                            for (r, lane) in column.iter().enumerate() {
                                for (i, &value) in lane.0.iter().enumerate().take(n) {
                                    out[i * 9 + r * 3 + c] = value;
                                }
                            }
                        }
                    }
                },
            )
        });
    dw
}

/// The first channel of each whole register of `channels`, then each channel left over.
fn registers(channels: usize) -> (impl Iterator<Item = usize>, impl Iterator<Item = usize>) {
    let whole = channels / LANES * LANES;
    ((0..whole).step_by(LANES), whole..channels)
}

/// `V[ξ][tile] = (Bᵀ d B)[ξ]` over all channels, for every tile of one image given
/// channels-last (`[h, w, c_in]`); `parts[ξ]` is the image's `[tiles, c_in]` block of matrix ξ.
fn transform_input<F: Algorithm>(
    g: &ConvGeometry,
    grid: Tiles,
    x_hwc: &[f32],
    zeros: &[f32],
    parts: &mut [&mut [f32]],
) {
    let (c, a) = (g.c_in, F::A);
    let zeros = &zeros[..c];
    vectorized(
        #[inline(always)]
        || {
            for ty in 0..grid.th {
                for tx in 0..grid.tw {
                    let pixels: [[&[f32]; MAX_ALPHA]; MAX_ALPHA] = std::array::from_fn(|r| {
                        std::array::from_fn(|col| {
                            let iy = (F::M * ty + r) as isize - g.pad[0] as isize;
                            let ix = (F::M * tx + col) as isize - g.pad[1] as isize;
                            if r >= a
                                || col >= a
                                || iy < 0
                                || ix < 0
                                || iy >= g.h as isize
                                || ix >= g.w as isize
                            {
                                zeros
                            } else {
                                &x_hwc[(iy as usize * g.w + ix as usize) * c..][..c]
                            }
                        })
                    });
                    let at = (ty * grid.tw + tx) * c;
                    let (whole, single) = registers(c);
                    for start in whole {
                        input_tile::<F, LANES>(&pixels, start, parts, at + start);
                    }
                    for start in single {
                        input_tile::<F, 1>(&pixels, start, parts, at + start);
                    }
                }
            }
        },
    )
}

/// One tile's input transform for channels `start..start + W`: `d·B` along each input row,
/// then `Bᵀ` down each column, stored at `at` of each `parts[ξ]`.
#[inline(always)]
fn input_tile<F: Algorithm, const W: usize>(
    pixels: &[[&[f32]; MAX_ALPHA]; MAX_ALPHA],
    start: usize,
    parts: &mut [&mut [f32]],
    at: usize,
) {
    let mut rows = [[Ch::<W>::ZERO; MAX_ALPHA]; MAX_ALPHA];
    for (row, line) in rows.iter_mut().zip(pixels).take(F::A) {
        *row = F::bt(std::array::from_fn(|k| Ch::load(&line[k][start..])));
    }
    for j in 0..F::A {
        let column = F::bt(std::array::from_fn(|r| rows[r][j]));
        for (i, value) in column.iter().enumerate().take(F::A) {
            value.store(&mut parts[i * F::A + j][at..]);
        }
    }
}

/// `y = Aᵀ M A` over all channels for every tile of one image, channels-last
/// (`[oh, ow, c_out]`), from `m` laid out `[α²][tiles][c_out]`; tile `t0` is the image's first.
fn transform_output<F: Algorithm>(
    g: &ConvGeometry,
    grid: Tiles,
    m: &[f32],
    tiles: usize,
    t0: usize,
    y_hwc: &mut [f32],
) {
    let c = g.c_out;
    vectorized(
        #[inline(always)]
        || {
            for ty in 0..grid.th {
                for tx in 0..grid.tw {
                    let t = t0 + ty * grid.tw + tx;
                    // The tile's outputs inside the image, as offsets into `y_hwc`.
                    let (rows, cols) = (F::M.min(g.oh - F::M * ty), F::M.min(g.ow - F::M * tx));
                    let first = (F::M * ty * g.ow + F::M * tx) * c;
                    let output = Output {
                        rows,
                        cols,
                        first,
                        row_stride: g.ow * c,
                        c,
                    };
                    let (whole, single) = registers(c);
                    for start in whole {
                        output_tile::<F, LANES>(m, tiles, t, start, y_hwc, &output);
                    }
                    for start in single {
                        output_tile::<F, 1>(m, tiles, t, start, y_hwc, &output);
                    }
                }
            }
        },
    )
}

/// Where one tile's outputs go in a channels-last image: `rows × cols` of them (fewer than
/// m × m at the image's bottom and right edges), the first at `first`.
struct Output {
    rows: usize,
    cols: usize,
    first: usize,
    row_stride: usize,
    c: usize,
}

/// One tile's output transform for channels `start..start + W`: `M·A` along each row, then
/// `Aᵀ` down each column.
#[inline(always)]
fn output_tile<F: Algorithm, const W: usize>(
    m: &[f32],
    tiles: usize,
    t: usize,
    start: usize,
    y_hwc: &mut [f32],
    out: &Output,
) {
    let element = |xi: usize| Ch::<W>::load(&m[(xi * tiles + t) * out.c + start..]);
    let mut rows = [[Ch::<W>::ZERO; MAX_M]; MAX_ALPHA];
    for (r, row) in rows.iter_mut().enumerate().take(F::A) {
        *row = F::at(std::array::from_fn(|k| {
            if k < F::A {
                element(r * F::A + k)
            } else {
                Ch::ZERO
            }
        }));
    }
    for j in 0..out.cols {
        let column = F::at(std::array::from_fn(|r| rows[r][j]));
        for (i, value) in column.iter().enumerate().take(out.rows) {
            value.store(&mut y_hwc[out.first + i * out.row_stride + j * out.c + start..]);
        }
    }
}

/// `dM = A dY Aᵀ` over all channels for every tile of one image, from `dY` channels-last
/// (`[oh, ow, c_out]`) into `dm[ξ]`, the image's `[tiles, c_out]` block of matrix ξ (the
/// adjoint of [`transform_output`]); outputs past the image's edge count as zero.
fn transform_output_grad<F: Algorithm>(
    g: &ConvGeometry,
    grid: Tiles,
    dy_hwc: &[f32],
    zeros: &[f32],
    dm: &mut [&mut [f32]],
) {
    let c = g.c_out;
    let zeros = &zeros[..c];
    vectorized(
        #[inline(always)]
        || {
            for ty in 0..grid.th {
                for tx in 0..grid.tw {
                    let grads: [[&[f32]; MAX_M]; MAX_M] = std::array::from_fn(|i| {
                        std::array::from_fn(|j| {
                            let (oy, ox) = (F::M * ty + i, F::M * tx + j);
                            if i < F::M && j < F::M && oy < g.oh && ox < g.ow {
                                &dy_hwc[(oy * g.ow + ox) * c..][..c]
                            } else {
                                zeros
                            }
                        })
                    });
                    let at = (ty * grid.tw + tx) * c;
                    let (whole, single) = registers(c);
                    for start in whole {
                        output_grad_tile::<F, LANES>(&grads, start, dm, at + start);
                    }
                    for start in single {
                        output_grad_tile::<F, 1>(&grads, start, dm, at + start);
                    }
                }
            }
        },
    )
}

/// One tile's output-gradient transform for channels `start..start + W`: `dY·Aᵀ` along each
/// output row, then `A` down each column, stored at `at` of each `dm[ξ]`.
#[inline(always)]
fn output_grad_tile<F: Algorithm, const W: usize>(
    grads: &[[&[f32]; MAX_M]; MAX_M],
    start: usize,
    dm: &mut [&mut [f32]],
    at: usize,
) {
    let mut rows = [[Ch::<W>::ZERO; MAX_ALPHA]; MAX_M];
    for (row, line) in rows.iter_mut().zip(grads).take(F::M) {
        *row = F::a(std::array::from_fn(|j| Ch::load(&line[j][start..])));
    }
    for k in 0..F::A {
        let column = F::a(std::array::from_fn(|i| rows[i][k]));
        for (r, value) in column.iter().enumerate().take(F::A) {
            value.store(&mut dm[r * F::A + k][at..]);
        }
    }
}

/// Tiles per group of images: each of a group's α² gemms packs its weight matrix once for all
/// of them, so more tiles amortise the packing; fewer keep the transformed tensors in cache.
const GROUP_TILES: usize = 512;

/// Floats of one transformed tensor of a group, at most.
const GROUP_BUDGET: usize = 1 << 22;

/// Images per group: [`GROUP_TILES`] tiles within [`GROUP_BUDGET`], as a multiple of the
/// thread count, so that each thread transforms as many images as the others.
fn images_per_group<F: Algorithm>(g: &ConvGeometry, grid: Tiles) -> usize {
    let per_image = F::xi() * grid.per_image() * g.c_in.max(g.c_out);
    let wanted = GROUP_TILES.div_ceil(grid.per_image().max(1));
    let affordable = GROUP_BUDGET / per_image.max(1);
    let threads = rayon::current_num_threads().max(1);
    (wanted.min(affordable) / threads * threads)
        .max(threads)
        .clamp(1, g.batch.max(1))
}

/// A group's transformed tensor (α² matrices `[tiles, channels]`) split by image: each image's
/// `per_image` rows of every matrix, image after image (`matrices` slices each, the count
/// returned), so that images fill their tiles in parallel. Two allocations, not one per image.
fn by_image(
    t: &mut [f32],
    tiles: usize,
    per_image: usize,
    channels: usize,
) -> (Vec<&mut [f32]>, usize) {
    let images = tiles / per_image.max(1);
    let mut matrices: Vec<_> = t
        .chunks_mut(tiles * channels)
        .map(|matrix| matrix.chunks_mut(per_image * channels))
        .collect();
    let count = matrices.len();
    let mut parts = Vec::with_capacity(images * count);
    for _ in 0..images {
        for matrix in &mut matrices {
            parts.push(
                matrix
                    .next()
                    .expect("every matrix holds every image's rows"),
            );
        }
    }
    (parts, count)
}

/// A parallel task's buffers, reused image after image: a channels-last copy of the image and
/// zeros for the pixels beyond its edge.
#[derive(Default)]
struct Scratch {
    hwc: Vec<f32>,
    zeros: Vec<f32>,
}

impl Scratch {
    fn get(&mut self, len: usize, channels: usize) -> (&mut [f32], &[f32]) {
        if self.zeros.len() < channels {
            self.zeros.resize(channels, 0.0);
        }
        (sized(&mut self.hwc, len), &self.zeros)
    }
}

thread_local! {
    /// The two transformed tensors of a group (at most [`GROUP_BUDGET`] values each), kept
    /// between calls: reuse saves each layer an allocation and a zeroing pass, and finds them in
    /// cache (ResNet-18 w8 BYOL step: +5–7 %).
    static TRANSFORMED: Cell<[Vec<f32>; 2]> = const { Cell::new([Vec::new(), Vec::new()]) };

    /// The transformed weights (forward) or their gradient (α² · c_in · c_out values), kept
    /// between calls for the same reasons: F(4×4)'s for 512 channels (38 MB) would otherwise
    /// be a fresh mapping, page-faulted and cleared, on every call.
    static TRANSFORMED_WEIGHTS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `y = conv2d(x, weight)` for an [`eligible`] geometry; layouts as in the im2col forward pass.
///
/// Per group of images: input transforms (parallel over images), the α² products (parallel
/// over ξ), output transforms (parallel over images).
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    if four_by_four(g) {
        forward_by::<F4>(g, x, weight)
    } else {
        forward_by::<F2>(g, x, weight)
    }
}

fn forward_by<F: Algorithm>(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    debug_assert!(computes(g));
    let grid = Tiles::of::<F>(g);
    let mut u = Kept::take(&TRANSFORMED_WEIGHTS);
    let u = sized(&mut u, F::xi() * g.c_in * g.c_out);
    transform_weights::<F>(g, weight, u);
    let u = &*u;
    let nb = images_per_group::<F>(g, grid);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let (x_image, y_image, per) = (g.c_in * hw, g.c_out * ohw, grid.per_image());
    let pairs = g.c_in * g.c_out;
    let len = g.batch * y_image;
    let mut y = output_buffer(len);
    let mut transformed = Kept::take(&TRANSFORMED);
    let [v, m] = &mut *transformed;
    for (y_group, x_group) in y.spare_capacity_mut()[..len]
        .chunks_mut(nb * y_image)
        .zip(x.chunks(nb * x_image))
    {
        let images = x_group.len() / x_image;
        let tiles = images * per;
        let v = sized_zeroed(v, F::xi() * tiles * g.c_in);
        let (mut v_parts, matrices) = by_image(v, tiles, per, g.c_in);
        v_parts
            .par_chunks_mut(matrices)
            .zip(x_group.par_chunks(x_image))
            .for_each_init(Scratch::default, |scratch, (parts, image)| {
                let (hwc, zeros) = scratch.get(x_image, g.c_in);
                transpose(image, g.c_in, hw, hwc);
                transform_input::<F>(g, grid, hwc, zeros, parts);
            });
        let m = sized_zeroed(m, F::xi() * tiles * g.c_out);
        m.par_chunks_mut(tiles * g.c_out)
            .enumerate()
            .for_each(|(xi, m_xi)| {
                // M[ξ]ᵀ = U[ξ]·V[ξ]ᵀ, written straight into M[ξ]'s tile-major rows.
                gemm(
                    MatMut::transposed(m_xi, g.c_out, tiles),
                    MatRef::row_major(&u[xi * pairs..][..pairs], g.c_in, g.c_out).transpose(),
                    MatRef::row_major(&v[xi * tiles * g.c_in..][..tiles * g.c_in], tiles, g.c_in)
                        .transpose(),
                    false,
                );
            });
        let m = &*m;
        y_group
            .par_chunks_mut(y_image)
            .enumerate()
            .for_each_init(Vec::new, |hwc, (i, image)| {
                let hwc = sized(hwc, y_image);
                transform_output::<F>(g, grid, m, tiles, i * per, hwc);
                transpose_uninit(hwc, ohw, g.c_out, image);
            });
    }
    // SAFETY: each image's output was written whole by the transpose above.
    unsafe { y.set_len(len) };
    y
}

/// The weight gradient of `sum(dy · conv2d(x, weight))` for an [`eligible`] geometry.
///
/// Per group of images: transforms of the input and of the output gradient (parallel over
/// images), then `dU[ξ] += dM[ξ]ᵀ·V[ξ]` (parallel over ξ: each task owns its accumulator).
pub fn weight_grad(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    if four_by_four(g) {
        weight_grad_by::<F4>(g, x, dy)
    } else {
        weight_grad_by::<F2>(g, x, dy)
    }
}

fn weight_grad_by<F: Algorithm>(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(computes(g));
    let grid = Tiles::of::<F>(g);
    let nb = images_per_group::<F>(g, grid);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let (x_image, y_image, per) = (g.c_in * hw, g.c_out * ohw, grid.per_image());
    let pairs = g.c_out * g.c_in;
    let mut du = Kept::take(&TRANSFORMED_WEIGHTS);
    let du = sized(&mut du, F::xi() * pairs);
    let mut transformed = Kept::take(&TRANSFORMED);
    let [v, dm] = &mut *transformed;
    for (group, (x_group, dy_group)) in x
        .chunks(nb * x_image)
        .zip(dy.chunks(nb * y_image))
        .enumerate()
    {
        let images = x_group.len() / x_image;
        let tiles = images * per;
        let v = sized_zeroed(v, F::xi() * tiles * g.c_in);
        let dm = sized_zeroed(dm, F::xi() * tiles * g.c_out);
        let (mut v_parts, matrices) = by_image(v, tiles, per, g.c_in);
        let (mut dm_parts, _) = by_image(dm, tiles, per, g.c_out);
        v_parts
            .par_chunks_mut(matrices)
            .zip(dm_parts.par_chunks_mut(matrices))
            .zip(
                x_group
                    .par_chunks(x_image)
                    .zip(dy_group.par_chunks(y_image)),
            )
            .for_each_init(
                Scratch::default,
                |scratch, ((v_parts, dm_parts), (image, grad))| {
                    let (hwc, zeros) = scratch.get(x_image.max(y_image), g.c_in.max(g.c_out));
                    transpose(image, g.c_in, hw, hwc);
                    transform_input::<F>(g, grid, hwc, zeros, v_parts);
                    transpose(grad, g.c_out, ohw, hwc);
                    transform_output_grad::<F>(g, grid, hwc, zeros, dm_parts);
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
                    // The first group overwrites what a previous call left.
                    group > 0,
                );
            });
    }
    untransform_weight_grad::<F>(g, du)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geometry::test_values;
    use burn::tensor::ops::ConvOptions;

    /// Direct convolution and its weight gradient in f64, the definitions, with the sums of
    /// the terms' magnitudes (the scale that rounding errors are relative to).
    struct Definition {
        y: Vec<f64>,
        y_scale: Vec<f64>,
        dw: Vec<f64>,
        dw_scale: Vec<f64>,
    }

    fn direct(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> Definition {
        let mut d = Definition {
            y: vec![0.0; g.batch * g.c_out * g.oh * g.ow],
            y_scale: vec![0.0; g.batch * g.c_out * g.oh * g.ow],
            dw: vec![0.0; w.len()],
            dw_scale: vec![0.0; w.len()],
        };
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
                                    d.y[o] += xv * w[wi] as f64;
                                    d.y_scale[o] += (xv * w[wi] as f64).abs();
                                    d.dw[wi] += xv * dy[o] as f64;
                                    d.dw_scale[wi] += (xv * dy[o] as f64).abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        d
    }

    /// The largest error of `got` relative to the scale of its sum, over all elements; a sum
    /// of no terms (a tap that only meets padding) is measured against a small one's scale.
    fn worst(got: &[f32], want: &[f64], scale: &[f64]) -> (f64, usize) {
        got.iter()
            .zip(want.iter().zip(scale))
            .map(|(&a, (&b, &s))| (a as f64 - b).abs() / s.max(1e-2))
            .enumerate()
            .fold(
                (0.0, 0),
                |best, (i, e)| if e > best.0 { (e, i) } else { best },
            )
    }

    #[test]
    fn forward_and_weight_grad_match_the_definition_in_both_variants() {
        // (batch, c_in, h, w, c_out, padding (begin, end)): outputs that fill F(4×4)'s tiles and
        // ones that leave partial edge tiles, asymmetric and wide padding, a 1×1 image, more
        // images than threads; the largest first, so the others run in reused transform
        // buffers still holding its values.
        let cases = [
            (3, 33, 9, 11, 40, [(1, 1), (1, 1)]),
            (3, 33, 5, 3, 40, [(1, 1), (1, 1)]),
            (2, 3, 7, 5, 4, [(1, 1), (1, 1)]),
            (5, 2, 4, 4, 3, [(1, 1), (1, 1)]),
            (1, 4, 6, 9, 2, [(0, 0), (2, 1)]),
            (3, 1, 1, 1, 2, [(1, 1), (1, 1)]),
            (2, 2, 5, 6, 5, [(2, 2), (0, 1)]),
            (2, 3, 8, 8, 2, [(1, 1), (1, 1)]),
        ];
        // F(2×2) only adds and halves: a few ulp of the terms' scale. F(4×4) amplifies by
        // its transforms' norms (entries up to 8 and 5, then 1/24).
        type Pass = fn(&ConvGeometry, &[f32], &[f32]) -> Vec<f32>;
        let variants: [(usize, Pass, Pass, f64); 2] = [
            (2, forward_by::<F2>, weight_grad_by::<F2>, 1e-6),
            (4, forward_by::<F4>, weight_grad_by::<F4>, 1e-5),
        ];
        for (m, forward, weight_grad, tolerance) in variants {
            for (n, (batch, c_in, h, w, c_out, padding)) in cases.into_iter().enumerate() {
                let options = ConvOptions::new_with_padding([1, 1], padding, [1, 1], 1);
                let g = ConvGeometry::new([batch, c_in, h, w], [c_out, c_in, 3, 3], &options);
                assert!(computes(&g));
                let x = test_values(batch * c_in * h * w, 37, 101);
                let wt = test_values(c_out * c_in * 9, 53, 89);
                let dy = test_values(batch * c_out * g.oh * g.ow, 29, 83);
                let want = direct(&g, &x, &wt, &dy);
                let (y_error, i) = worst(&forward(&g, &x, &wt), &want.y, &want.y_scale);
                let (dw_error, j) = worst(&weight_grad(&g, &x, &dy), &want.dw, &want.dw_scale);
                println!("F({m}×{m}) case {n}: y {y_error:.1e} at {i}, dw {dw_error:.1e} at {j}");
                assert!(
                    y_error < tolerance,
                    "F({m}×{m}) case {n} y[{i}]: error {y_error:.1e}"
                );
                assert!(
                    dw_error < tolerance,
                    "F({m}×{m}) case {n} dw[{j}]: error {dw_error:.1e}"
                );
            }
        }
    }
}
