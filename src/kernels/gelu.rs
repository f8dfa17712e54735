//! GELU with the exact (erf) form, `x·Φ(x)`, and its derivative `Φ(x) + x·φ(x)`, both in one
//! vectorised pass (burn's flex backend evaluates erf one scalar libm call at a time), outputs
//! written once without a zeroing pass first (a third of a memory-bound pass's traffic).

use rayon::prelude::*;

use super::simd::{erf_and_gauss, vectorized};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `(Φ(x), φ(x))`: the standard normal CDF and density.
#[inline(always)]
fn cdf_pdf(x: f32) -> (f32, f32) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let (erf, gauss) = erf_and_gauss(x * std::f32::consts::FRAC_1_SQRT_2);
    (0.5 * (1.0 + erf), INV_SQRT_2PI * gauss)
}

pub fn forward(x: &[f32]) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            vectorized(
                #[inline(always)]
                || {
                    for (o, &v) in y.iter_mut().zip(x) {
                        o.write(v * cdf_pdf(v).0);
                    }
                },
            )
        });
    // SAFETY: the chunks cover all `x.len()` values, each written above.
    unsafe { y.set_len(x.len()) };
    y
}

/// `x·Φ(x)` and its slope `Φ(x) + x·φ(x)` in one pass. Training keeps the slope rather than
/// `x`: the backward pass is then one multiplication, not a second erf (whose long dependency
/// chain made each pass cost about as much as the other).
pub fn forward_and_slope(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut y = Vec::with_capacity(x.len());
    let mut slope = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(CHUNK)
        .zip(slope.spare_capacity_mut()[..x.len()].par_chunks_mut(CHUNK))
        .zip(x.par_chunks(CHUNK))
        .for_each(|((y, slope), x)| {
            vectorized(
                #[inline(always)]
                || {
                    for ((o, s), &v) in y.iter_mut().zip(slope.iter_mut()).zip(x) {
                        let (cdf, pdf) = cdf_pdf(v);
                        o.write(v * cdf);
                        s.write(cdf + v * pdf);
                    }
                },
            )
        });
    // SAFETY: the chunks cover all `x.len()` values of both, each written above.
    unsafe {
        y.set_len(x.len());
        slope.set_len(x.len());
    }
    (y, slope)
}

/// `dx = dy · slope`, the slope from [`forward_and_slope`].
pub fn backward(slope: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(slope.len(), dy.len());
    let mut dx = Vec::with_capacity(dy.len());
    dx.spare_capacity_mut()[..dy.len()]
        .par_chunks_mut(CHUNK)
        .zip(slope.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (slope, dy))| {
            vectorized(
                #[inline(always)]
                || {
                    for ((o, &s), &g) in dx.iter_mut().zip(slope).zip(dy) {
                        o.write(g * s);
                    }
                },
            )
        });
    // SAFETY: the chunks cover all `dy.len()` values, each written above.
    unsafe { dx.set_len(dy.len()) };
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_derivative_match_the_definition() {
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.1).collect();
        let (y, dx) = forward_and_slope(&xs);
        assert_eq!(y, forward(&xs));
        assert_eq!(
            backward(&dx, &vec![0.5; xs.len()]),
            dx.iter().map(|d| d * 0.5).collect::<Vec<_>>()
        );
        for ((&x, &y), &d) in xs.iter().zip(&y).zip(&dx) {
            let x = x as f64;
            let cdf = 0.5 * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((y as f64 - x * cdf).abs() < 1e-6, "gelu({x}) = {y}");
            assert!(
                (d as f64 - (cdf + x * pdf)).abs() < 1e-6,
                "gelu'({x}) = {d}"
            );
        }
        // Far tails: x·Φ(x) → 0 and → x, the slope → 0 and → 1.
        let tails = [-12.0f32, 12.0];
        let (y, slopes) = forward_and_slope(&tails);
        assert_eq!(y, vec![-0.0, 12.0]);
        assert!(slopes[0].abs() < 1e-20 && slopes[1] == 1.0, "{slopes:?}");
    }

    /// erf in f64 by its Maclaurin series, an independent reference (exact to ~1e-15 for
    /// |x| ≤ 3, where its terms stay small).
    fn erf_series(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..100 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
