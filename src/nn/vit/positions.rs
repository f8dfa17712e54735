//! Position tables: MAE's fixed 2-D sin-cos embedding, and the bilinear resampling of a learned
//! grid to another side (DINO's local crops, weights trained at another resolution).

use burn::tensor::{Device, Tensor, TensorData};

/// The `[to², from²]` matrix that resamples a row-major `from × from` grid to `to × to` by bilinear
/// interpolation (pixel centres aligned, as `align_corners = false`; edges clamped).
pub fn bilinear_resample(from: usize, to: usize, device: &Device) -> Tensor<2> {
    let taps = |o: usize| {
        let x = ((o as f64 + 0.5) * from as f64 / to as f64 - 0.5).clamp(0.0, (from - 1) as f64);
        let lo = x.floor() as usize;
        let hi = (lo + 1).min(from - 1);
        let w = x - lo as f64;
        [(lo, 1.0 - w), (hi, w)]
    };
    let mut data = vec![0.0f32; to * to * from * from];
    for oi in 0..to {
        for oj in 0..to {
            let row = (oi * to + oj) * from * from;
            for (i, wi) in taps(oi) {
                for (j, wj) in taps(oj) {
                    data[row + i * from + j] += (wi * wj) as f32;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [to * to, from * from]), device)
}

/// MAE's fixed 2-D sin-cos embedding `[1, 1 + grid², dim]`: a zero row for CLS, then per patch
/// (row i, column j) sin/cos of j at dim/4 frequencies followed by the same for i.
pub fn sincos_2d(dim: usize, grid: usize, device: &Device) -> Tensor<3> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut data = vec![0.0f32; dim];
    for i in 0..grid {
        for j in 0..grid {
            for coord in [j, i] {
                data.extend(omega.iter().map(|w| (coord as f64 * w).sin() as f32));
                data.extend(omega.iter().map(|w| (coord as f64 * w).cos() as f32));
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 1 + grid * grid, dim]), device)
}
