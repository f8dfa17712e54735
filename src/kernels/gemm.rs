//! Bounds-checked strided matrix views over slices, and `dst (+)= a · b` on them by the `gemm`
//! crate's packed kernels (single-threaded: callers parallelise over images).

/// A read-only `rows × cols` matrix at `data[r·row_stride + c·col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable `rows × cols` matrix at `data[r·row_stride + c·col_stride]`: row-major with
/// padded rows, or the transpose of a row-major buffer.
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Panics unless `rows × cols` with rows `row_stride` apart fits in `len` values.
fn check_strided(len: usize, rows: usize, cols: usize, row_stride: usize) {
    assert!(
        cols <= row_stride || rows <= 1,
        "row stride shorter than a row"
    );
    assert!(
        rows == 0 || len >= (rows - 1) * row_stride + cols,
        "matrix view out of bounds"
    );
}

/// `dst[j][i] = src[i][j]` for a row-major `rows × cols` `src`, in 16×16 tiles so that both
/// sides touch whole cache lines.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    dst[j * rows + i] = src[i * cols + j];
                }
            }
        }
    }
}

impl<'a> MatRef<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// Rows `row_stride` apart: padded strides keep rows off the same cache sets.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        check_strided(data.len(), rows, cols, row_stride);
        MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same memory read as the transposed matrix.
    pub fn transpose(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

impl<'a> MatMut<'a> {
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        check_strided(data.len(), rows, cols, row_stride);
        MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The row-major `cols × rows` buffer `data` written as its transpose, `rows × cols`
    /// (column-major: the gemm kernel's own output layout).
    pub fn transposed(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        MatMut {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }
}

/// A new row-major `rows × row.len()` matrix, built in parallel blocks of `rows_per_task`
/// rows: each block starts as copies of `row`, then `finish(first_row, block)` completes it.
///
/// The block is initialised by the thread that finishes it, right before it does, rather than
/// zeroed up front by one thread (a cold, serial pass over the whole output).
pub fn par_rows(
    rows: usize,
    row: &[f32],
    rows_per_task: usize,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let cols = row.len();
    let mut out: Vec<f32> = Vec::with_capacity(rows * cols);
    if rows * cols == 0 {
        return out;
    }
    let task = rows_per_task.max(1) * cols;
    out.spare_capacity_mut()[..rows * cols]
        .par_chunks_mut(task)
        .enumerate()
        .for_each(|(i, block)| {
            for dst in block.chunks_exact_mut(cols) {
                for (d, &v) in dst.iter_mut().zip(row) {
                    d.write(v);
                }
            }
            // SAFETY: every element of the block was written just above.
            let block = unsafe { &mut *(block as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            finish(i * rows_per_task.max(1), block);
        });
    // SAFETY: the blocks cover all `rows · cols` elements, each initialised above.
    unsafe { out.set_len(rows * cols) };
    out
}

/// Rows per task that split `rows` evenly over the thread pool.
pub fn rows_per_thread(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// `dst = a · b`, or `dst += a · b` when `accumulate`, on the calling thread.
pub fn gemm(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) {
    gemm_with(dst, a, b, accumulate, gemm::Parallelism::None)
}

/// [`gemm`] split by the kernel itself over the thread pool: for one large product whose
/// output cannot be split by the caller (a reduction over its inner dimension).
pub fn par_gemm(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) {
    let threads = rayon::current_num_threads().max(1);
    gemm_with(dst, a, b, accumulate, gemm::Parallelism::Rayon(threads))
}

fn gemm_with(
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert_eq!(a.rows, dst.rows, "gemm: rows of a and dst differ");
    assert_eq!(b.cols, dst.cols, "gemm: columns of b and dst differ");
    assert_eq!(a.cols, b.rows, "gemm: inner sizes differ");
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst.data[r * dst.row_stride + c * dst.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    // The views were checked at construction; strides of a transpose stay inside the same extent.
    // SAFETY: every index the kernel touches is below rows·row_stride + cols·col_stride of its
    // view, which lies inside the borrowed slice; `dst` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_transposed_views_and_accumulation() {
        // a = [[1, 2, 3], [4, 5, 6]], b = aᵀ: a·aᵀ = [[14, 32], [32, 77]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [1.0f32; 4];
        let av = MatRef::row_major(&a, 2, 3);
        gemm(MatMut::row_major(&mut out, 2, 2), av, av.transpose(), false);
        assert_eq!(out, [14.0, 32.0, 32.0, 77.0]);
        gemm(MatMut::row_major(&mut out, 2, 2), av, av.transpose(), true);
        assert_eq!(out, [28.0, 64.0, 64.0, 154.0]);
        // aᵀ·a is 3×3: first row [17, 22, 27]
        let mut out = [0.0f32; 9];
        gemm(MatMut::row_major(&mut out, 3, 3), av.transpose(), av, false);
        assert_eq!(&out[..3], &[17.0, 22.0, 27.0]);
    }
}
