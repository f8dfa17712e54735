//! A fully connected layer with bias, `y = x·W + b` over the last dimension, forward and
//! backward straight on the gemm kernel: the bias is the output's initial value (no separate
//! add pass, no zero-filled output), and the weight gradient reads `xᵀ` as a strided view
//! rather than a transposed copy.

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, gemm, par_gemm, par_rows, rows_per_thread};

/// Sizes of one layer: `rows` input vectors of `d_in`, `d_out` outputs each.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// `y [rows, d_out] = x [rows, d_in] · weight [d_in, d_out] + bias`.
pub fn forward(s: Dims, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert!(x.len() == s.rows * s.d_in && weight.len() == s.d_in * s.d_out);
    assert_eq!(bias.len(), s.d_out);
    let w = MatRef::row_major(weight, s.d_in, s.d_out);
    let per_task = rows_per_thread(s.rows);
    par_rows(s.rows, bias, per_task, |first, y| {
        let rows = y.len() / s.d_out;
        let x = MatRef::row_major(&x[first * s.d_in..][..rows * s.d_in], rows, s.d_in);
        gemm(MatMut::row_major(y, rows, s.d_out), x, w, true);
    })
}

/// `dx [rows, d_in] = dy · weightᵀ`.
pub fn input_grad(s: Dims, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let wt = MatRef::row_major(weight, s.d_in, s.d_out).transpose();
    let zeros = vec![0.0f32; s.d_in];
    par_rows(s.rows, &zeros, rows_per_thread(s.rows), |first, dx| {
        let rows = dx.len() / s.d_in;
        let dy = MatRef::row_major(&dy[first * s.d_out..][..rows * s.d_out], rows, s.d_out);
        gemm(MatMut::row_major(dx, rows, s.d_in), dy, wt, false);
    })
}

/// `dweight [d_in, d_out] = xᵀ · dy`.
pub fn weight_grad(s: Dims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0f32; s.d_in * s.d_out];
    par_gemm(
        MatMut::row_major(&mut dw, s.d_in, s.d_out),
        MatRef::row_major(x, s.rows, s.d_in).transpose(),
        MatRef::row_major(dy, s.rows, s.d_out),
        false,
    );
    dw
}

/// `dbias [d_out] = Σ_rows dy`, summed per task and then in task order (deterministic).
pub fn bias_grad(s: Dims, dy: &[f32]) -> Vec<f32> {
    let per_task = rows_per_thread(s.rows) * s.d_out;
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(per_task.max(1))
        .map(|block| {
            let mut sum = vec![0.0f32; s.d_out];
            for row in block.chunks_exact(s.d_out) {
                for (acc, &g) in sum.iter_mut().zip(row) {
                    *acc += g;
                }
            }
            sum
        })
        .collect();
    let mut db = vec![0.0f32; s.d_out];
    for part in partials {
        for (acc, v) in db.iter_mut().zip(part) {
            *acc += v;
        }
    }
    db
}
