//! Bounds-checked strided matrix views over slices, and `dst (+)= a · b` on them by the `gemm`
//! crate's packed kernels (single-threaded: callers parallelise over images).

use super::geometry::output_buffer;
use std::mem::MaybeUninit;

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
    data: &'a mut [MaybeUninit<f32>],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
    /// False for a view of memory not yet written: a product may fill it, never add to it.
    initialized: bool,
}

/// `data` as memory to write into.
pub(super) fn as_uninit(data: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and every write through the result (the
    // gemm, the transposes, the attention products, `MaybeUninit::write`) stores an
    // initialised value.
    unsafe { &mut *(data as *mut [f32] as *mut [MaybeUninit<f32>]) }
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

/// `dst[j][i] = src[i][j]` for a row-major `rows × cols` `src`: 8 × 8 blocks in AVX registers
/// where the CPU has AVX (element by element, these were ≈ 4 % of a ResNet-18 w8 step around
/// the Winograd transforms), the edges and other CPUs in 16 × 16 tiles so that both sides
/// touch whole cache lines.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    transpose_strided(src, rows, cols, cols, dst)
}

/// [`transpose`] into memory not yet written (every value of `dst[..rows·cols]` is written):
/// a fresh output needs no zero-filling first.
pub fn transpose_uninit(src: &[f32], rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
    transpose_into(src, rows, cols, cols, dst)
}

/// [`transpose`] of `rows` rows of `cols` values that lie `stride` apart in `src` (a slice of
/// wider rows, such as one head's keys in a fused `qkv`).
pub fn transpose_strided(src: &[f32], rows: usize, cols: usize, stride: usize, dst: &mut [f32]) {
    transpose_into(src, rows, cols, stride, as_uninit(dst))
}

fn transpose_into(
    src: &[f32],
    rows: usize,
    cols: usize,
    stride: usize,
    dst: &mut [MaybeUninit<f32>],
) {
    assert!(cols <= stride && dst.len() >= rows * cols);
    assert!(rows == 0 || src.len() >= (rows - 1) * stride + cols);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        let (rows8, cols8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: AVX is present, `src` holds `rows` rows `stride` apart and `dst` `rows × cols`
        // values (asserted above).
        unsafe { transpose_blocks_avx(src, rows8, stride, cols8, dst, rows) };
        transpose_tiles(src, rows, stride, dst, 0..rows8, cols8..cols);
        transpose_tiles(src, rows, stride, dst, rows8..rows, 0..cols);
        return;
    }
    transpose_tiles(src, rows, stride, dst, 0..rows, 0..cols);
}

/// [`transpose_strided`] of the `src` rows `is` and columns `js` only.
fn transpose_tiles(
    src: &[f32],
    rows: usize,
    stride: usize,
    dst: &mut [MaybeUninit<f32>],
    is: std::ops::Range<usize>,
    js: std::ops::Range<usize>,
) {
    const TILE: usize = 16;
    for i0 in is.clone().step_by(TILE) {
        for j0 in js.clone().step_by(TILE) {
            for i in i0..(i0 + TILE).min(is.end) {
                for j in j0..(j0 + TILE).min(js.end) {
                    dst[j * rows + i].write(src[i * stride + j]);
                }
            }
        }
    }
}

/// The 8 × 8 blocks of [`transpose_strided`] covering `src` rows `0..rows8` and columns
/// `0..cols8` (`src` rows `stride` apart, `dst` `rows` columns; `rows8`, `cols8` multiples of 8).
///
/// # Safety
/// AVX must be available, `src` must hold `rows8` rows `stride` apart of at least `cols8`
/// values and `dst` a `cols8 × rows` matrix.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_blocks_avx(
    src: &[f32],
    rows8: usize,
    stride: usize,
    cols8: usize,
    dst: &mut [MaybeUninit<f32>],
    rows: usize,
) {
    use std::arch::x86_64::*;
    let (src, dst) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
    for i0 in (0..rows8).step_by(8) {
        for j0 in (0..cols8).step_by(8) {
            // SAFETY (loads and stores): rows i0..i0 + 8 ≤ rows and columns j0..j0 + 8 ≤ cols
            // of `src`, the same transposed of `dst`.
            let r: [__m256; 8] = std::array::from_fn(|k| unsafe {
                _mm256_loadu_ps(src.add((i0 + k) * stride + j0))
            });
            // Pairs of rows interleaved, then pairs of pairs: each 128-bit half then holds four
            // rows' values of one column.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
                _mm256_shuffle_ps::<0x44>(t4, t6),
                _mm256_shuffle_ps::<0xEE>(t4, t6),
                _mm256_shuffle_ps::<0x44>(t5, t7),
                _mm256_shuffle_ps::<0xEE>(t5, t7),
            ];
            for k in 0..4 {
                let low = _mm256_permute2f128_ps::<0x20>(s[k], s[k + 4]);
                let high = _mm256_permute2f128_ps::<0x31>(s[k], s[k + 4]);
                unsafe {
                    _mm256_storeu_ps(dst.add((j0 + k) * rows + i0), low);
                    _mm256_storeu_ps(dst.add((j0 + k + 4) * rows + i0), high);
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
            data: as_uninit(data),
            rows,
            cols,
            row_stride,
            col_stride: 1,
            initialized: true,
        }
    }

    /// `data` filled with copies of `row`, as a row-major matrix to accumulate into: a product
    /// with a bias starts from it.
    pub fn repeated_row(data: &'a mut [MaybeUninit<f32>], row: &[f32]) -> Self {
        let cols = row.len();
        assert!(
            cols > 0 && data.len().is_multiple_of(cols),
            "repeated_row: {} values are not whole rows of {cols}",
            data.len()
        );
        for dst in data.chunks_exact_mut(cols) {
            dst.write_copy_of_slice(row);
        }
        Self::written_rows(data, cols)
    }

    /// `data` filled with `rows` (row-major, as long as `data`) plus `row` added to each, as a
    /// matrix to accumulate into: a product with a bias onto a residual starts from it.
    pub fn rows_plus_row(data: &'a mut [MaybeUninit<f32>], rows: &[f32], row: &[f32]) -> Self {
        let cols = row.len();
        assert!(cols > 0 && data.len().is_multiple_of(cols) && rows.len() == data.len());
        for (dst, src) in data.chunks_exact_mut(cols).zip(rows.chunks_exact(cols)) {
            for ((d, &r), &b) in dst.iter_mut().zip(src).zip(row) {
                d.write(r + b);
            }
        }
        Self::written_rows(data, cols)
    }

    /// Row-major `data` of `cols` columns, every value written, to accumulate into.
    fn written_rows(data: &'a mut [MaybeUninit<f32>], cols: usize) -> Self {
        MatMut {
            rows: data.len() / cols,
            data,
            cols,
            row_stride: cols,
            col_stride: 1,
            initialized: true,
        }
    }

    /// A row-major view of memory not yet written, for a product that fills it
    /// (`accumulate = false`): a fresh output needs no zero-filling first.
    pub fn uninit(data: &'a mut [MaybeUninit<f32>], rows: usize, cols: usize) -> Self {
        Self::uninit_strided(data, rows, cols, cols)
    }

    /// [`MatMut::uninit`] with rows `row_stride` apart (values between them left as they are).
    pub fn uninit_strided(
        data: &'a mut [MaybeUninit<f32>],
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Self {
        check_strided(data.len(), rows, cols, row_stride);
        MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
            initialized: false,
        }
    }

    /// The row-major `cols × rows` buffer `data` written as its transpose, `rows × cols`
    /// (column-major: the gemm kernel's own output layout).
    pub fn transposed(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        MatMut {
            data: as_uninit(data),
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
            initialized: true,
        }
    }
}

/// A new row-major `rows × cols` matrix, built in parallel blocks of `rows_per_task` rows:
/// `fill(first_row, block)` writes every value of its block.
///
/// Each block is written by the thread that fills it rather than zeroed up front by one thread
/// (a cold, serial pass over the whole output).
pub fn par_rows(
    rows: usize,
    cols: usize,
    rows_per_task: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = output_buffer(rows * cols);
    if rows * cols == 0 {
        return out;
    }
    let per_task = rows_per_task.max(1);
    out.spare_capacity_mut()[..rows * cols]
        .par_chunks_mut(per_task * cols)
        .enumerate()
        .for_each(|(i, block)| fill(i * per_task, block));
    // SAFETY: the blocks cover all `rows · cols` elements and `fill` writes each of them.
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
    assert!(
        dst.initialized || !accumulate,
        "gemm: cannot accumulate into unwritten memory"
    );
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst.data[r * dst.row_stride + c * dst.col_stride].write(0.0);
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
            dst.data.as_mut_ptr().cast::<f32>(),
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
    fn transpose_matches_the_definition_on_blocks_and_edges() {
        // Whole 8 × 8 blocks, ragged edges on either side, a single row and column, the
        // Winograd shapes (channels × 7², 4² and back).
        for (rows, cols) in [
            (8, 8),
            (16, 24),
            (1, 1),
            (1, 13),
            (13, 1),
            (17, 23),
            (32, 49),
            (49, 32),
            (64, 16),
            (9, 70),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![-1.0f32; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            // The element-by-element path alone, as CPUs without AVX run it.
            let mut tiled = vec![-1.0f32; rows * cols];
            transpose_tiles(&src, rows, cols, as_uninit(&mut tiled), 0..rows, 0..cols);
            for i in 0..rows {
                for j in 0..cols {
                    let want = src[i * cols + j];
                    assert_eq!(dst[j * rows + i], want, "{rows}×{cols} at ({i}, {j})");
                    assert_eq!(
                        tiled[j * rows + i],
                        want,
                        "tiles, {rows}×{cols} at ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn strided_transpose_reads_only_the_rows_it_is_given() {
        // 17 keys of 16 values each inside rows of 48 (a fused qkv at width 16): 8 × 8 blocks
        // and edges, the values between the rows never copied.
        let (rows, cols, stride) = (17, 16, 48);
        let src: Vec<f32> = (0..(rows - 1) * stride + cols).map(|v| v as f32).collect();
        let mut dst = vec![-1.0f32; rows * cols];
        transpose_strided(&src, rows, cols, stride, &mut dst);
        for i in 0..rows {
            for j in 0..cols {
                assert_eq!(dst[j * rows + i], src[i * stride + j], "({i}, {j})");
            }
        }
    }

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
