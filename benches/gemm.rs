//! The `gemm` crate (what `src/kernels/` multiplies with) on ViT-S/16's qkv and MLP products at
//! batch 32 of 224-px images (6,304 tokens) — forward `x·W`, input gradient `dy·Wᵀ` and weight
//! gradient `xᵀ·dy`, each operand row-major as the linear layer holds it: GFLOP/s, best of 10, on
//! one thread and on the pool. Compare with `benches/torch_gemm.py` (PyTorch's sgemm) on the same
//! machine.
//!
//! Also the CPU's own ceiling: its f32 FMA throughput on independent chains of the widest
//! vectors this build uses, on one thread and on the pool — no product, and no framework, runs
//! faster than that.
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

/// Independent FMA chains per thread: two FMA units of four or five cycles' latency need at
/// least ten in flight, and the chains and two constants must fit in the registers (16 of
/// AVX2's, 32 of AVX-512's) or they spill.
const CHAINS_AVX2: usize = 12;
const CHAINS_AVX512: usize = 24;

/// `iterations` rounds of [`CHAINS_AVX2`] dependent FMAs on 8 lanes; returns the lanes' sum (so
/// the work cannot be dropped).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains_avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let (scale, step) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS_AVX2];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, scale, step);
        }
    }
    let mut lanes = [0.0f32; 8];
    for a in acc {
        let mut v = [0.0f32; 8];
        // SAFETY: `v` holds 8 values.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), a) };
        lanes.iter_mut().zip(v).for_each(|(l, x)| *l += x);
    }
    lanes.iter().sum()
}

/// [`fma_chains_avx2`] on 16 lanes, [`CHAINS_AVX512`] chains.
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
#[target_feature(enable = "avx512f")]
fn fma_chains_avx512(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let (scale, step) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS_AVX512];
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, scale, step);
        }
    }
    acc.into_iter().map(|a| _mm512_reduce_add_ps(a)).sum()
}

/// Runs its rounds of FMA chains; returns their lanes' sum.
type Chains = fn(u64) -> f32;

/// `(FMAs per round, chains)` for the widest FMA this build and CPU have.
#[cfg(target_arch = "x86_64")]
fn widest_fma() -> Option<(usize, Chains)> {
    #[cfg(feature = "avx512")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return Some((16 * CHAINS_AVX512, |n| unsafe { fma_chains_avx512(n) }));
    }
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return Some((8 * CHAINS_AVX2, |n| unsafe { fma_chains_avx2(n) }));
    }
    None
}

/// The f32 FMA peak of `threads` threads running their chains at once, in GFLOP/s (an FMA
/// counted as two), best of three; with its vector width's name.
#[cfg(target_arch = "x86_64")]
fn fma_peak_gflops(threads: usize) -> Option<(f64, &'static str)> {
    let (per_round, chains) = widest_fma()?;
    let iterations = 50_000_000u64;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| std::hint::black_box(chains(iterations)));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (threads * per_round) as f64 * iterations as f64;
    let simd = if per_round == 16 * CHAINS_AVX512 {
        "AVX-512"
    } else {
        "AVX2"
    };
    Some((flops / best / 1e9, simd))
}

fn main() {
    let threads = rayon::current_num_threads();
    #[cfg(target_arch = "x86_64")]
    for t in [1, threads] {
        if let Some((gflops, simd)) = fma_peak_gflops(t) {
            println!(
                "{{\"bench\": \"fma peak\", \"framework\": \"cpu\", \"simd\": \"{simd}\", \"threads\": {t}, \"gflops\": {gflops:.1}}}"
            );
        }
    }
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
