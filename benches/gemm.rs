//! The `gemm` crate (what `src/kernels/` multiplies with) on ViT-S/16's qkv and MLP products at
//! batch 32 of 224-px images (6,304 tokens) — forward `x·W`, input gradient `dy·Wᵀ` and weight
//! gradient `xᵀ·dy`, each operand row-major as the linear layer holds it: GFLOP/s, best of 10, on
//! one thread and on the pool. Compare with `benches/torch_gemm.py` (PyTorch's sgemm) on the same
//! machine.
//!
//! cargo bench --bench gemm

use std::time::Instant;

/// Which operand is stored transposed (row-major `[n, k]` for `b`, `[k, m]` for `a`).
#[derive(Clone, Copy)]
enum Layout {
    Plain,
    TransposedB,
    TransposedA,
}

/// `(m, k, n, layout, name)`: the forward product and both gradients of qkv and of the MLP.
const SHAPES: [(usize, usize, usize, Layout, &str); 6] = [
    (6304, 384, 1152, Layout::Plain, "qkv x·W"),
    (6304, 1152, 384, Layout::TransposedB, "qkv dy·Wt"),
    (384, 6304, 1152, Layout::TransposedA, "qkv xt·dy"),
    (6304, 1536, 384, Layout::Plain, "mlp2 x·W"),
    (6304, 384, 1536, Layout::TransposedB, "mlp2 dy·Wt"),
    (1536, 6304, 384, Layout::TransposedA, "mlp2 xt·dy"),
];

fn best_gflops(
    m: usize,
    k: usize,
    n: usize,
    layout: Layout,
    parallelism: gemm::Parallelism,
) -> f64 {
    // (column stride, row stride) of a [m, k] and b [k, n].
    let (a_strides, b_strides) = match layout {
        Layout::Plain => ((1, k as isize), (1, n as isize)),
        Layout::TransposedB => ((1, k as isize), (k as isize, 1)),
        Layout::TransposedA => ((m as isize, 1), (1, n as isize)),
    };
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; m * n];
    let mut best = f64::MAX;
    for _ in 0..10 {
        let start = Instant::now();
        // SAFETY: a holds m·k values, b k·n, c m·n (row-major); the strides stay inside them.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                a_strides.0,
                a_strides.1,
                b.as_ptr(),
                b_strides.0,
                b_strides.1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (m * n * k) as f64 / best / 1e9
}

fn main() {
    let threads = rayon::current_num_threads();
    for (m, k, n, layout, name) in SHAPES {
        for (t, parallelism) in [
            (1, gemm::Parallelism::None),
            (threads, gemm::Parallelism::Rayon(threads)),
        ] {
            println!(
                "{{\"bench\": \"gemm {name} {m}x{k}x{n}\", \"framework\": \"selfsup\", \"threads\": {t}, \"gflops\": {:.1}}}",
                best_gflops(m, k, n, layout, parallelism)
            );
        }
    }
}
