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

/// `y [rows, d_out] = x [rows, d_in] · weight [d_in, d_out] + bias (+ residual [rows, d_out])`:
/// the bias (and residual) are the product's initial value.
pub fn forward(
    s: Dims,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> Vec<f32> {
    assert!(x.len() == s.rows * s.d_in && weight.len() == s.d_in * s.d_out);
    assert_eq!(bias.len(), s.d_out);
    assert!(residual.is_none_or(|r| r.len() == s.rows * s.d_out));
    let w = MatRef::row_major(weight, s.d_in, s.d_out);
    let per_task = rows_per_thread(s.rows);
    par_rows(s.rows, s.d_out, per_task, |first, y| {
        let rows = y.len() / s.d_out;
        let x = MatRef::row_major(&x[first * s.d_in..][..rows * s.d_in], rows, s.d_in);
        let start = match residual {
            Some(r) => MatMut::rows_plus_row(y, &r[first * s.d_out..][..y.len()], bias),
            None => MatMut::repeated_row(y, bias),
        };
        gemm(start, x, w, true);
    })
}

/// `dx [rows, d_in] = dy · weightᵀ`.
pub fn input_grad(s: Dims, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let wt = MatRef::row_major(weight, s.d_in, s.d_out).transpose();
    par_rows(s.rows, s.d_in, rows_per_thread(s.rows), |first, dx| {
        let rows = dx.len() / s.d_in;
        let dy = MatRef::row_major(&dy[first * s.d_out..][..rows * s.d_out], rows, s.d_out);
        gemm(MatMut::uninit(dx, rows, s.d_in), dy, wt, false);
    })
}

/// `dweight [d_in, d_out] = xᵀ · dy`. With enough rows, each thread multiplies its own block of
/// rows into a partial sum and the partials are added in block order (deterministic): the gemm
/// kernel's own split of this small output over threads barely beats one thread.
pub fn weight_grad(s: Dims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let product = |first: usize, rows: usize, dw: &mut [f32], parallel: bool| {
        let dst = MatMut::row_major(dw, s.d_in, s.d_out);
        let xt = MatRef::row_major(&x[first * s.d_in..][..rows * s.d_in], rows, s.d_in).transpose();
        let dy = MatRef::row_major(&dy[first * s.d_out..][..rows * s.d_out], rows, s.d_out);
        if parallel {
            par_gemm(dst, xt, dy, false)
        } else {
            gemm(dst, xt, dy, false)
        }
    };
    let per_task = rows_per_thread(s.rows);
    if per_task < MIN_ROWS_PER_PARTIAL || per_task == s.rows {
        let mut dw = vec![0.0f32; s.d_in * s.d_out];
        product(0, s.rows, &mut dw, true);
        return dw;
    }
    let firsts: Vec<usize> = (0..s.rows).step_by(per_task).collect();
    let partials: Vec<Vec<f32>> = firsts
        .par_iter()
        .map(|&first| {
            let mut part = vec![0.0f32; s.d_in * s.d_out];
            product(first, per_task.min(s.rows - first), &mut part, false);
            part
        })
        .collect();
    sum_in_order(s.d_in * s.d_out, partials)
}

/// Per-task partial sums added element-wise in task order (deterministic); zeros when none.
fn sum_in_order(len: usize, partials: Vec<Vec<f32>>) -> Vec<f32> {
    partials
        .into_iter()
        .reduce(|mut total, part| {
            for (acc, v) in total.iter_mut().zip(part) {
                *acc += v;
            }
            total
        })
        .unwrap_or_else(|| vec![0.0; len])
}

/// Below this many rows per thread, a split of the weight gradient's inner dimension costs more
/// in small products than it gains.
const MIN_ROWS_PER_PARTIAL: usize = 256;

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
    sum_in_order(s.d_out, partials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_grad_matches_the_definition_whether_split_or_not() {
        // 1,041 rows: one block below the split's threshold on 8 threads, uneven blocks on 2 and 3.
        let s = Dims {
            rows: 1041,
            d_in: 24,
            d_out: 40,
        };
        let x: Vec<f32> = (0..s.rows * s.d_in)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.002 - 1.0)
            .collect();
        let dy: Vec<f32> = (0..s.rows * s.d_out)
            .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
            .collect();
        let want: Vec<f64> = (0..s.d_in * s.d_out)
            .map(|e| {
                let (i, o) = (e / s.d_out, e % s.d_out);
                (0..s.rows)
                    .map(|r| x[r * s.d_in + i] as f64 * dy[r * s.d_out + o] as f64)
                    .sum()
            })
            .collect();
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| weight_grad(s, &x, &dy));
            for (e, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "{threads} threads, element {e}: {g} vs {w}"
                );
            }
        }
    }
}
