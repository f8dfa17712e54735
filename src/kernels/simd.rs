//! Branch-free f32 math that the compiler vectorises, and a dispatcher that compiles a loop for
//! the best instruction set this CPU has (AVX-512, else AVX2+FMA, else the baseline).
//!
//! Each helper is `#[inline(always)]` so that it is compiled inside [`vectorized`]'s
//! target-feature context rather than as a baseline-SSE2 call (where `mul_add`, with no FMA
//! instruction to use, becomes a correct but slow call into libm).

use std::mem::MaybeUninit;

/// Runs `f` compiled for the widest SIMD instruction set available at run time.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `out = vector`, for `out` exactly one vector long: a kernel's accumulators leave their
/// registers one vector at a time (read back through a slice view, an accumulator array is kept
/// in memory and stored on every iteration).
#[inline(always)]
pub(super) fn write_vector<S: pulp::Simd>(out: &mut [MaybeUninit<f32>], vector: S::f32s) {
    assert_eq!(std::mem::size_of_val(out), std::mem::size_of::<S::f32s>());
    // SAFETY: `out` is exactly one vector's bytes (checked above), and an unaligned write
    // needs no alignment.
    unsafe { out.as_mut_ptr().cast::<S::f32s>().write_unaligned(vector) };
}

/// `N` vectors from `buffer[at..]`, without a bounds check: each kernel asserts the furthest
/// index its loop reads once, before the loop. Checked per load, the address arithmetic took a
/// third of the loops' instructions.
///
/// # Safety
/// `at + N · lanes ≤ buffer.len()`.
#[inline(always)]
pub(super) unsafe fn read_vectors<S: pulp::Simd, const N: usize>(
    buffer: &[f32],
    at: usize,
) -> [S::f32s; N] {
    debug_assert!(at + N * std::mem::size_of::<S::f32s>() / 4 <= buffer.len());
    // SAFETY: in bounds by the caller's contract; unaligned reads of plain f32 data.
    unsafe {
        buffer
            .as_ptr()
            .add(at)
            .cast::<[S::f32s; N]>()
            .read_unaligned()
    }
}

/// Lanes of the partial sums in [`lane_sum`]: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// Independent partial sums per lane in [`lane_sums_of`]: one chain of adds would wait on each
/// add's latency.
const CHAINS: usize = 4;

/// Values in one block of [`lane_sums_of`]'s `LONG` loop: a lane of each chain.
pub const BLOCK: usize = CHAINS * LANES;

/// Values from which batch norm's planes go through [`lane_sum_by`]`::<true>`: on shorter ones
/// the block loop's setup cost more than it saved.
pub const LONG_ROW: usize = 2 * BLOCK;

/// `[Σ f(a[i], b[i], c[i])[k]; K]` over slices of equal length in [`LANES`] f32 partial sums
/// per sum, totals as f64. Chunked loops over the slices themselves: the compiler leaves an
/// index-taking closure scalar. `K` is exactly the sums wanted: a spare one that adds zeros
/// still costs its adds (`s + 0.0` is not `s` for `s = −0.0`).
///
/// `LONG` (rows of a [`BLOCK`] or more; batch norm's planes from [`LONG_ROW`]): chain `c`'s lane
/// `l` at `c·LANES + l` and one loop over them all, which the loop vectoriser makes `CHAINS`
/// vectors of; nested per chain, the loops are unrolled into scalar lanes (BN's centred squares
/// and masked gradient sums ran as scalar code), but on short rows that costs less than the
/// block loop's setup. The two are separate instantiations: in one function, either slowed the
/// other.
#[inline(always)]
fn lane_sums_of<const K: usize, const LONG: bool>(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> [f32; K],
) -> [f64; K] {
    assert!(a.len() == b.len() && a.len() == c.len());
    let mut sums = [[0.0f32; LANES]; K];
    let long = a.len() / BLOCK * BLOCK;
    if LONG && long > 0 {
        let mut chains = [[0.0f32; BLOCK]; K];
        for ((ac, bc), cc) in a[..long]
            .chunks_exact(BLOCK)
            .zip(b[..long].chunks_exact(BLOCK))
            .zip(c[..long].chunks_exact(BLOCK))
        {
            for i in 0..BLOCK {
                for (s, v) in chains.iter_mut().zip(f(ac[i], bc[i], cc[i])) {
                    s[i] += v;
                }
            }
        }
        for (s, chain) in sums.iter_mut().zip(chains) {
            for c in 0..CHAINS {
                for l in 0..LANES {
                    s[l] += chain[c * LANES + l];
                }
            }
        }
    } else if long > 0 {
        let mut chains = [[[0.0f32; LANES]; K]; CHAINS];
        for ((ac, bc), cc) in a[..long]
            .chunks_exact(BLOCK)
            .zip(b[..long].chunks_exact(BLOCK))
            .zip(c[..long].chunks_exact(BLOCK))
        {
            for (chain, sums) in chains.iter_mut().enumerate() {
                for l in 0..LANES {
                    let i = chain * LANES + l;
                    for (s, v) in sums.iter_mut().zip(f(ac[i], bc[i], cc[i])) {
                        s[l] += v;
                    }
                }
            }
        }
        for chain in chains {
            for (s, c) in sums.iter_mut().zip(chain) {
                for l in 0..LANES {
                    s[l] += c[l];
                }
            }
        }
    }
    for ((ac, bc), cc) in a[long..]
        .chunks_exact(LANES)
        .zip(b[long..].chunks_exact(LANES))
        .zip(c[long..].chunks_exact(LANES))
    {
        for l in 0..LANES {
            for (s, v) in sums.iter_mut().zip(f(ac[l], bc[l], cc[l])) {
                s[l] += v;
            }
        }
    }
    let tail = a.len() / LANES * LANES;
    for ((&u, &v), &w) in a[tail..].iter().zip(&b[tail..]).zip(&c[tail..]) {
        for (s, v) in sums.iter_mut().zip(f(u, v, w)) {
            s[0] += v;
        }
    }
    sums.map(|lanes| pairwise(lanes, |x, y| x + y) as f64)
}

/// `Σ f(a[i], b[i])` as [`lane_sums_of`].
#[inline(always)]
pub fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    lane_sum_by::<false>(a, b, f)
}

/// [`lane_sum`], through the block loop when `LONG` (see [`lane_sums_of`]).
#[inline(always)]
pub fn lane_sum_by<const LONG: bool>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let [sum] = lane_sums_of::<1, LONG>(a, b, b, |u, v, _| [f(u, v)]);
    sum
}

/// `(Σ f(…).0, Σ f(…).1)` as [`lane_sums_of`], in one pass, through the block loop when
/// `LONG`.
#[inline(always)]
pub fn lane_sums_by<const LONG: bool>(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) -> (f64, f64) {
    let [s, t] = lane_sums_of::<2, LONG>(a, b, c, |u, v, w| f(u, v, w).into());
    (s, t)
}

/// The lanes combined pairwise (`N` a power of two): log₂N vector steps, where a left-to-right
/// fold is N dependent operations — the cost that dominates short rows.
#[inline(always)]
fn pairwise<T: Copy, const N: usize>(mut lanes: [T; N], op: impl Fn(T, T) -> T) -> T {
    let mut width = N;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] = op(lanes[i], lanes[i + width]);
        }
    }
    lanes[0]
}

/// The largest of `values` (−∞ when empty), in [`LANES`] partial maxima so that it vectorises.
#[inline(always)]
pub fn lane_max(values: &[f32]) -> f32 {
    // A plain comparison is one `max` instruction; `f32::max`'s NaN rule costs a compare and a
    // blend per lane.
    let larger = |m: f32, v: f32| if v > m { v } else { m };
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut blocks = values.chunks_exact(LANES);
    for block in &mut blocks {
        for (m, &v) in lanes.iter_mut().zip(block) {
            *m = larger(*m, v);
        }
    }
    // The remainder after the reduction: merged into `lanes`, it became a masked store that
    // the reduction's loads then waited on (a third of a 65-wide softmax).
    blocks
        .remainder()
        .iter()
        .fold(pairwise(lanes, larger), |m, &v| larger(m, v))
}

/// `1.5·2²³`: adding it rounds an f32 of magnitude below 2²² to an integer, held in the
/// low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `eˣ` to a few ulp for `x` in `[-87.3, 88]` (clamped outside, so tiny or huge, never
/// garbage).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2⁸.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let k = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    // Taylor series of eʳ on |r| ≤ ln2/2 (the degree-7 remainder is below 2e-8), by Horner's
    // rule in fused multiply-adds: half the instructions of separate ones, and no division.
    const TAYLOR: [f32; 8] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let p = horner(r, &TAYLOR);
    p * f32::from_bits(((k + 127) << 23) as u32)
}

/// The polynomial with `coefficients` (highest degree first) at `x`, in fused multiply-adds
/// (an instruction each where the SIMD level has them; x86-64-v3 and up, NEON).
#[inline(always)]
fn horner<const N: usize>(x: f32, coefficients: &[f32; N]) -> f32 {
    coefficients[1..]
        .iter()
        .fold(coefficients[0], |acc, &c| acc.mul_add(x, c))
}

/// `(erf(x), e^(−x²))` by Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7 in exact
/// arithmetic, below 5e-7 in f32), the approximation PyTorch's vectorised CPU kernels use.
#[inline(always)]
pub fn erf_and_gauss(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / P.mul_add(a, 1.0);
    let poly = t * horner(t, &[A[4], A[3], A[2], A[1], A[0]]);
    let gauss = exp(-a * a);
    let magnitude = (-poly).mul_add(gauss, 1.0);
    (magnitude.copysign(x), gauss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        for i in -8730..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        // Clamped, not wrapped: tiny and huge instead of garbage.
        assert!((0.0..1e-37).contains(&exp(-1000.0)));
        assert!(exp(1000.0) > 1e38 && exp(1000.0).is_finite());
    }

    #[test]
    fn erf_matches_a_reference_within_its_bound() {
        // erf(0.5), erf(1), erf(2), erf(-1.5) to 10 digits.
        for (x, want) in [
            (0.5f32, 0.520_499_877_8f64),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.5, -0.966_105_146_5),
            (0.0, 0.0),
        ] {
            let (got, gauss) = erf_and_gauss(x);
            assert!(
                (got as f64 - want).abs() < 5e-7,
                "erf({x}) = {got}, want {want}"
            );
            assert!((gauss as f64 - (-(x as f64) * x as f64).exp()).abs() < 1e-7);
        }
    }

    #[test]
    fn lane_max_finds_the_largest_anywhere() {
        assert_eq!(lane_max(&[]), f32::NEG_INFINITY);
        for len in [1, 15, 16, 17, 40] {
            for at in 0..len {
                let mut v: Vec<f32> = (0..len).map(|i| -(i as f32)).collect();
                v[at] = 3.5;
                assert_eq!(lane_max(&v), 3.5, "len {len}, largest at {at}");
            }
        }
    }

    #[test]
    fn lane_sums_add_every_element_once() {
        for len in [0usize, 1, 15, 16, 17, 100, 127, 128, 129, 200, 1000] {
            let (a, b): (Vec<f32>, Vec<f32>) = (0..len).map(|i| (i as f32, 1.0)).unzip();
            let triangle = (len * len.saturating_sub(1) / 2) as f64;
            assert_eq!(lane_sum(&a, &b, |u, v| u * v), triangle, "len {len}");
            assert_eq!(
                lane_sum_by::<true>(&a, &b, |u, v| u * v),
                triangle,
                "len {len}"
            );
            let [sum] = lane_sums_of::<1, false>(&a, &b, &a, |u, v, w| [u + v + w]);
            assert_eq!(sum, 2.0 * triangle + len as f64);
            let sums = lane_sums_by::<false>(&a, &b, &b, |u, v, _| (u, v));
            assert_eq!(sums, (triangle, len as f64), "len {len}");
            let sums = lane_sums_by::<true>(&a, &b, &b, |u, v, _| (u, v));
            assert_eq!(sums, (triangle, len as f64), "len {len}");
        }
    }
}
