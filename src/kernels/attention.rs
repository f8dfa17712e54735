//! Multi-head self-attention `softmax(Q·Kᵀ/√d_h)·V` straight from the fused `qkv` projection,
//! forward and backward, one batch element per task.
//!
//! `qkv` is `[b, n, 3·d]` with each token laid out `[3, heads, d_h]` (timm's order); Q, K and V
//! of a head are strided views into it, so no permute or slice copies are made. The output is
//! `[b, n, d]` with heads side by side, ready for the output projection.

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, gemm};
use super::geometry::zeroed;
use super::simd::{exp, lane_max, lane_sum, vectorized};

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

    /// Q, K and V of head `h` in one batch element's `[n, 3d]` block.
    fn views<'a>(&self, qkv: &'a [f32], h: usize) -> [MatRef<'a>; 3] {
        let (n, d, hd) = (self.tokens, self.dim, self.head_dim());
        [0, 1, 2].map(|part| MatRef::strided(&qkv[part * d + h * hd..], n, hd, 3 * d))
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
    let mut out = zeroed(s.batch * n * d);
    let mut probs = zeroed(s.batch * s.heads * n * n);
    out.par_chunks_mut(n * d)
        .zip(probs.par_chunks_mut(s.heads * n * n))
        .zip(qkv.par_chunks(n * 3 * d))
        .for_each(|((out, probs), qkv)| {
            for (h, p) in probs.chunks_exact_mut(n * n).enumerate() {
                let [q, k, v] = s.views(qkv, h);
                gemm(MatMut::row_major(p, n, n), q, k.transpose(), false);
                softmax_rows(p, n, s.scale());
                let dst = MatMut::strided(&mut out[h * hd..], n, hd, d);
                gemm(dst, MatRef::row_major(p, n, n), v, false);
            }
        });
    (out, probs)
}

/// `dqkv [b, n, 3d]`, the gradient of `sum(dout · attention(qkv))`.
pub fn backward(s: Heads, qkv: &[f32], probs: &[f32], dout: &[f32]) -> Vec<f32> {
    let (n, d, hd) = (s.tokens, s.dim, s.head_dim());
    assert!(qkv.len() == s.batch * n * 3 * d && dout.len() == s.batch * n * d);
    assert_eq!(probs.len(), s.batch * s.heads * n * n);
    let mut dqkv = zeroed(qkv.len());
    dqkv.par_chunks_mut(n * 3 * d)
        .zip(qkv.par_chunks(n * 3 * d))
        .zip(
            probs
                .par_chunks(s.heads * n * n)
                .zip(dout.par_chunks(n * d)),
        )
        .for_each_init(Vec::new, |scratch, ((dqkv, qkv), (probs, dout))| {
            scratch.resize(n * n, 0.0);
            let ds = &mut scratch[..n * n];
            for (h, p) in probs.chunks_exact(n * n).enumerate() {
                let [q, k, v] = s.views(qkv, h);
                let p_mat = MatRef::row_major(p, n, n);
                let dout_h = MatRef::strided(&dout[h * hd..], n, hd, d);
                // dV = Pᵀ·dO
                let dv = MatMut::strided(&mut dqkv[2 * d + h * hd..], n, hd, 3 * d);
                gemm(dv, p_mat.transpose(), dout_h, false);
                // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ_j dP⊙P) · scale (the softmax backward)
                gemm(MatMut::row_major(ds, n, n), dout_h, v.transpose(), false);
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
                let ds_mat = MatRef::row_major(ds, n, n);
                // dQ = dS·K, dK = dSᵀ·Q
                let dq = MatMut::strided(&mut dqkv[h * hd..], n, hd, 3 * d);
                gemm(dq, ds_mat, k, false);
                let dk = MatMut::strided(&mut dqkv[d + h * hd..], n, hd, 3 * d);
                gemm(dk, ds_mat.transpose(), q, false);
            }
        });
    dqkv
}
