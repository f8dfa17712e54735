//! Multi-head self-attention `softmax(Q·Kᵀ/√d_h)·V` straight from the fused `qkv` projection,
//! forward and backward, one batch element per task.
//!
//! `qkv` is `[b, n, 3·d]` with each token laid out `[3, heads, d_h]` (timm's order); Q, K and V
//! of a head are read from it in place (only K and V are copied, transposed, into per-task
//! scratch), so no permuted tensors are made. The output is `[b, n, d]` with heads side
//! by side, ready for the output projection.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, as_uninit, gemm, transpose_strided};
use super::geometry::output_buffer;
use super::simd::{LANES, exp, lane_max, lane_sum, vectorized, write_vector};
use pulp::{Simd, WithSimd};

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub batch: usize,
    pub tokens: usize,
    pub dim: usize,
    pub heads: usize,
}

impl Heads {
    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }

    /// Q, K and V of head `h` in one batch element's `[n, 3d]` block: each starts at its
    /// first token's values, with the next token's `3d` further on.
    fn parts<'a>(&self, qkv: &'a [f32], h: usize) -> [&'a [f32]; 3] {
        let (d, hd) = (self.dim, self.head_dim());
        [0, 1, 2].map(|part| &qkv[part * d + h * hd..])
    }
}

/// Row-wise `softmax(scale · s)` in place, over all of one head's `n × n` scores at once: the
/// exponentials in one loop over the whole block (rows of a short sequence would each end in a
/// scalar remainder of the vector loop), maxima and sums per row.
fn softmax_rows(s: &mut [f32], n: usize, scale: f32) {
    vectorized(
        #[inline(always)]
        || {
            for row in s.chunks_exact_mut(n) {
                let max = lane_max(row);
                for v in row.iter_mut() {
                    *v = (*v - max) * scale;
                }
            }
            for v in s.iter_mut() {
                *v = exp(*v);
            }
            for row in s.chunks_exact_mut(n) {
                let inv = (1.0 / lane_sum(row, row, |v, _| v)) as f32;
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
        },
    )
}

/// `(out [b, n, d], probabilities [b, heads, n, n])`; the probabilities are what the backward
/// pass needs (and what attention maps show).
pub fn forward(s: Heads, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (n, d, hd) = (s.tokens, s.dim, s.head_dim());
    assert!(s.heads > 0 && d % s.heads == 0 && qkv.len() == s.batch * n * 3 * d);
    let (out_len, probs_len) = (s.batch * n * d, s.batch * s.heads * n * n);
    let mut out = output_buffer(out_len);
    let mut probs = output_buffer(probs_len);
    out.spare_capacity_mut()[..out_len]
        .par_chunks_mut(n * d)
        .zip(probs.spare_capacity_mut()[..probs_len].par_chunks_mut(s.heads * n * n))
        .zip(qkv.par_chunks(n * 3 * d))
        .for_each_init(Vec::new, |kt, ((out, probs), qkv)| {
            kt.resize(hd * n, 0.0);
            for (h, p) in probs.chunks_exact_mut(n * n).enumerate() {
                let [q, k, v] = s.parts(qkv, h);
                // S = Q·Kᵀ, O = P·V
                transpose_strided(k, n, hd, 3 * d, kt);
                multiply((p, n), Lhs::Rows(q, 3 * d), (kt, n), [n, hd, n]);
                // SAFETY: the product above wrote all `n · n` scores of this head.
                let p = unsafe { p.assume_init_mut() };
                softmax_rows(p, n, s.scale());
                multiply(
                    (&mut out[h * hd..], d),
                    Lhs::Rows(p, n),
                    (v, 3 * d),
                    [n, n, hd],
                );
            }
        });
    // SAFETY: every head wrote its probabilities and its `hd` columns of each output row.
    unsafe {
        out.set_len(out_len);
        probs.set_len(probs_len);
    }
    (out, probs)
}

/// `dqkv [b, n, 3d]`, the gradient of `sum(dout · attention(qkv))`.
pub fn backward(s: Heads, qkv: &[f32], probs: &[f32], dout: &[f32]) -> Vec<f32> {
    let (n, d, hd) = (s.tokens, s.dim, s.head_dim());
    assert!(qkv.len() == s.batch * n * 3 * d && dout.len() == s.batch * n * d);
    assert_eq!(probs.len(), s.batch * s.heads * n * n);
    let mut dqkv = output_buffer(qkv.len());
    dqkv.spare_capacity_mut()[..qkv.len()]
        .par_chunks_mut(n * 3 * d)
        .zip(qkv.par_chunks(n * 3 * d))
        .zip(
            probs
                .par_chunks(s.heads * n * n)
                .zip(dout.par_chunks(n * d)),
        )
        .for_each_init(Vec::new, |scratch, ((dqkv, qkv), (probs, dout))| {
            scratch.resize(n * n + hd * n, 0.0);
            let (ds, vt) = scratch.split_at_mut(n * n);
            for (h, p) in probs.chunks_exact(n * n).enumerate() {
                let [q, k, v] = s.parts(qkv, h);
                let dout_h = &dout[h * hd..];
                // dV = Pᵀ·dO
                multiply(
                    (&mut dqkv[2 * d + h * hd..], 3 * d),
                    Lhs::Columns(p, n),
                    (dout_h, d),
                    [n, n, hd],
                );
                // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ_j dP⊙P) · scale (the softmax backward)
                transpose_strided(v, n, hd, 3 * d, vt);
                multiply(
                    (as_uninit(ds), n),
                    Lhs::Rows(dout_h, d),
                    (vt, n),
                    [n, hd, n],
                );
                let scale = s.scale();
                vectorized(
                    #[inline(always)]
                    || {
                        for (ds_row, p_row) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
                            let dot = lane_sum(ds_row, p_row, |u, v| u * v) as f32;
                            for (g, &pv) in ds_row.iter_mut().zip(p_row) {
                                *g = pv * (*g - dot) * scale;
                            }
                        }
                    },
                );
                // dQ = dS·K, dK = dSᵀ·Q
                multiply(
                    (&mut dqkv[h * hd..], 3 * d),
                    Lhs::Rows(ds, n),
                    (k, 3 * d),
                    [n, n, hd],
                );
                multiply(
                    (&mut dqkv[d + h * hd..], 3 * d),
                    Lhs::Columns(ds, n),
                    (q, 3 * d),
                    [n, n, hd],
                );
            }
        });
    // SAFETY: every head wrote its `hd` columns of dQ, dK and dV in each token's row.
    unsafe { dqkv.set_len(qkv.len()) };
    dqkv
}

/// The left operand of [`multiply`]: `a(i, k)` at `values[i·stride + k]` (`Rows`) or at
/// `values[k·stride + i]` (`Columns`: a transposed operand read in place).
#[derive(Clone, Copy)]
enum Lhs<'a> {
    Rows(&'a [f32], usize),
    Columns(&'a [f32], usize),
}

/// `c[i][..w] = Σ_k a(i, k) · b[k][..w]` for `[rows, depth, w]`, with `c` and `b` given as
/// (values, row stride): only the first `w` values of each row of `c` are written. Short
/// sequences' products (a few dozen tokens or head dimensions on a side, where the gemm crate's
/// packing and dispatch cost more than the arithmetic) run on registers of their own; from
/// [`GEMM_FROM`] on every side, the gemm crate's packed kernel is faster.
fn multiply(
    (c, c_row): (&mut [MaybeUninit<f32>], usize),
    a: Lhs<'_>,
    (b, b_row): (&[f32], usize),
    [rows, depth, w]: [usize; 3],
) {
    if rows.min(depth).min(w) >= GEMM_FROM {
        let a = match a {
            Lhs::Rows(values, stride) => MatRef::strided(values, rows, depth, stride),
            Lhs::Columns(values, stride) => {
                MatRef::strided(values, depth, rows, stride).transpose()
            }
        };
        let b = MatRef::strided(b, depth, w, b_row);
        gemm(MatMut::uninit_strided(c, rows, w, c_row), a, b, false);
        return;
    }
    pulp::Arch::new().dispatch(Product {
        c,
        c_row,
        a,
        depth,
        b,
        b_row,
        rows,
        w,
    })
}

/// The smallest side of a product that [`multiply`] hands to the gemm crate. At one thread on
/// the AVX2 Zen 3 host (`cargo run --release --example attention`, fastest calls): ViT-S/16 at
/// 224 px (197 tokens, head width 64) forward 33.0 → 29.6 ms, backward 61.2 → 53.2 ms; 197
/// tokens at width 32 backward 40.7 → 30.3 ms; 50–145 tokens at width 64 no slower. 17 tokens
/// (DINO's and MAE's encoders) ran 30–60% slower on it and MAE's decoder (width 16) no faster,
/// so those stay on the registers' kernel.
const GEMM_FROM: usize = 32;

/// The operands of [`multiply`], for whichever SIMD width the CPU has.
struct Product<'a> {
    c: &'a mut [MaybeUninit<f32>],
    c_row: usize,
    a: Lhs<'a>,
    depth: usize,
    b: &'a [f32],
    b_row: usize,
    rows: usize,
    w: usize,
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, simd: S) {
        if self.rows == 0 || self.w == 0 {
            return;
        }
        assert!(self.depth == 0 || self.b.len() >= (self.depth - 1) * self.b_row + self.w);
        assert!(self.c.len() >= (self.rows - 1) * self.c_row + self.w);
        // Rows × vectors of accumulators: 24 of AVX-512's 32 registers (12 of AVX2's 16), the
        // rest for one row of `b` and a broadcast. Each value of `a` then feeds several FMAs
        // and each vector of `b` several rows, so loads stay below the FMAs, and two FMA units
        // of four cycles' latency have more independent sums than they need (with AVX2's 4 × 2,
        // exactly as many, MAE's attention took a tenth longer). Narrower products (DINO's and
        // MAE's few tokens) keep eight rows of one vector.
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        match lanes {
            16.. if self.w >= 4 * lanes => self.row_blocks::<S, 6, 4>(simd),
            8..16 if self.w >= 2 * lanes => self.row_blocks::<S, 6, 2>(simd),
            _ => self.row_blocks::<S, 8, 1>(simd),
        }
    }
}

impl Product<'_> {
    /// All rows of `c`, `R` at a time, then 4, then one by one; `V` vectors of columns at a time.
    #[inline(always)]
    fn row_blocks<S: Simd, const R: usize, const V: usize>(&mut self, simd: S) {
        let mut i = 0;
        while i + R <= self.rows {
            self.block::<S, R, V>(simd, i);
            i += R;
        }
        if R > 4 && i + 4 <= self.rows {
            self.block::<S, 4, V>(simd, i);
            i += 4;
        }
        while i < self.rows {
            self.block::<S, 1, V>(simd, i);
            i += 1;
        }
    }

    /// Rows `i0..i0 + R` of `c`.
    #[inline(always)]
    fn block<S: Simd, const R: usize, const V: usize>(&mut self, simd: S, i0: usize) {
        let depth = self.depth;
        match self.a {
            Lhs::Rows(values, stride) => {
                let rows: [&[f32]; R] =
                    std::array::from_fn(|r| &values[(i0 + r) * stride..][..depth]);
                self.columns::<S, R, V>(simd, i0, |k| -> [f32; R] {
                    std::array::from_fn(|r| rows[r][k])
                })
            }
            Lhs::Columns(values, stride) => self.columns::<S, R, V>(simd, i0, |k| {
                *<&[f32; R]>::try_from(&values[k * stride + i0..][..R]).expect("R values")
            }),
        }
    }

    /// Rows `i0..i0 + R` of `c`: `V` whole vectors of columns at a time, then single whole
    /// vectors, then the partial last one, with `a_at(k)` the `R` values of column `k` of `a`.
    #[inline(always)]
    fn columns<S: Simd, const R: usize, const V: usize>(
        &mut self,
        simd: S,
        i0: usize,
        a_at: impl Fn(usize) -> [f32; R],
    ) {
        let j0 = self.whole_vectors::<S, R, V>(simd, i0, 0, &a_at);
        let j0 = self.whole_vectors::<S, R, 1>(simd, i0, j0, &a_at);
        let width = self.w - j0;
        if width == 0 {
            return;
        }
        let (b, b_row) = (self.b, self.b_row);
        // `a_at` moved, not borrowed: called through a reference it was not inlined, and the
        // accumulators went through the stack on every step (the last of 65 columns cost more
        // than the 64 before it).
        let acc: [[S::f32s; 1]; R] = column_sums(simd, self.depth, a_at, |k| {
            [simd.partial_load_f32s(&b[k * b_row + j0..][..width])]
        });
        for (r, [v]) in acc.iter().enumerate() {
            let mut lanes = [0.0f32; LANES];
            simd.partial_store_f32s(&mut lanes[..width], *v);
            self.c[(i0 + r) * self.c_row + j0..][..width].write_copy_of_slice(&lanes[..width]);
        }
    }

    /// Rows `i0..i0 + R` of `c`, columns from `j0` on in groups of `V` whole vectors while
    /// they fit; returns the first column left.
    #[inline(always)]
    fn whole_vectors<S: Simd, const R: usize, const V: usize>(
        &mut self,
        simd: S,
        i0: usize,
        mut j0: usize,
        a_at: &impl Fn(usize) -> [f32; R],
    ) -> usize {
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        let (b, b_row) = (self.b, self.b_row);
        while j0 + V * lanes <= self.w {
            let acc: [[S::f32s; V]; R] = column_sums(simd, self.depth, a_at, |k| {
                let row = &b[k * b_row + j0..][..V * lanes];
                std::array::from_fn(|v| {
                    pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(
                        &row[v * lanes..][..lanes],
                    ))
                })
            });
            for (r, vectors) in acc.into_iter().enumerate() {
                let out = &mut self.c[(i0 + r) * self.c_row + j0..][..V * lanes];
                for (out, vector) in out.chunks_exact_mut(lanes).zip(vectors) {
                    write_vector::<S>(out, vector);
                }
            }
            j0 += V * lanes;
        }
        j0
    }
}

/// `[[Σ_k a_at(k)[r] · b_at(k)[v]; V]; R]` over `k < depth`.
#[inline(always)]
fn column_sums<S: Simd, const R: usize, const V: usize>(
    simd: S,
    depth: usize,
    a_at: impl Fn(usize) -> [f32; R],
    b_at: impl Fn(usize) -> [S::f32s; V],
) -> [[S::f32s; V]; R] {
    let mut acc = [[simd.splat_f32s(0.0); V]; R];
    for k in 0..depth {
        let b = b_at(k);
        for (acc, a) in acc.iter_mut().zip(a_at(k)) {
            let a = simd.splat_f32s(a);
            for (acc, &b) in acc.iter_mut().zip(&b) {
                *acc = simd.mul_add_f32s(a, b, *acc);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::geometry::test_values;

    #[test]
    fn products_match_the_definition_for_both_operand_layouts_on_each_instruction_set() {
        // (rows, depth, w): row blocks of 6, then 4 and 1; groups of 4 (AVX-512) or 2 (AVX2)
        // whole vectors, then whole and partial single vectors; depth 1; the last one large
        // enough for `multiply` to hand it to the gemm crate.
        for (rows, depth, w) in [
            (1, 1, 1),
            (5, 16, 5),
            (13, 7, 17),
            (17, 16, 33),
            (65, 16, 16),
            (9, 3, 40),
            (23, 5, 64),
            (11, 9, 133),
            (37, 33, 45),
        ] {
            for columns in [false, true] {
                let stride = if columns { rows + 1 } else { depth + 2 };
                let values = test_values(stride * if columns { depth } else { rows }, 37, 101);
                let (a, a_at): (Lhs<'_>, &dyn Fn(usize, usize) -> f32) = if columns {
                    (Lhs::Columns(&values, stride), &|i, k| {
                        values[k * stride + i]
                    })
                } else {
                    (Lhs::Rows(&values, stride), &|i, k| values[i * stride + k])
                };
                let (b_row, c_row) = (w + 3, w + 2);
                let b = test_values(depth * b_row, 53, 89);
                let run = |dispatch: &dyn Fn(Product<'_>)| {
                    // Values past `w` in each row of `c` must stay as they were.
                    let mut c = vec![7.0f32; rows * c_row];
                    dispatch(Product {
                        c: as_uninit(&mut c),
                        c_row,
                        a,
                        depth,
                        b: &b,
                        b_row,
                        rows,
                        w,
                    });
                    c
                };
                let mut runs = vec![("best", run(&|p| pulp::Arch::new().dispatch(p)))];
                // From GEMM_FROM on every side, the gemm crate's kernel.
                runs.push((
                    "multiply",
                    run(&|p| multiply((p.c, p.c_row), p.a, (p.b, p.b_row), [rows, depth, w])),
                ));
                #[cfg(target_arch = "x86_64")]
                if let Some(v3) = pulp::x86::V3::try_new() {
                    runs.push(("avx2", run(&|p| pulp::Simd::vectorize(v3, p))));
                }
                runs.push((
                    "scalar",
                    run(&|p| pulp::Simd::vectorize(pulp::Scalar::new(), p)),
                ));
                for (isa, c) in runs {
                    for i in 0..rows {
                        for j in 0..c_row {
                            let want = if j < w {
                                (0..depth)
                                    .map(|k| a_at(i, k) as f64 * b[k * b_row + j] as f64)
                                    .sum::<f64>()
                            } else {
                                7.0
                            };
                            let got = c[i * c_row + j] as f64;
                            assert!(
                                (got - want).abs() < 1e-5,
                                "{isa} {rows}×{depth}·{depth}×{w}, columns {columns}, ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
