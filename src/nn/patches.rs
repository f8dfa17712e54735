//! Images ↔ patch rows, in MAE's order: `[b, c, h·p, w·p]` ↔ `[b, h·w, p·p·c]` with each row
//! laid out (pixel row, pixel column, channel), patches row-major over the grid.

use burn::tensor::{Tensor, TensorData};

pub fn patchify(images: Tensor<4>, p: usize) -> Tensor<3> {
    let [b, c, height, width] = images.dims();
    let (h, w) = (height / p, width / p);
    images
        .reshape([b, c, h, p, w, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([b, h * w, p * p * c])
}

/// The inverse of [`patchify`] for a square grid of `channels`-channel patches.
pub fn unpatchify(patches: Tensor<3>, p: usize, channels: usize) -> Tensor<4> {
    let [b, n, _] = patches.dims();
    let grid = n.isqrt();
    patches
        .reshape([b, grid, grid, p, p, channels])
        .permute([0, 5, 1, 3, 2, 4])
        .reshape([b, channels, grid * p, grid * p])
}

/// For sample i of `x [b, n, d]`, the tokens `rows[i]` in that order: `[b, k, d]`. One index per
/// row into the flattened `[b·n, d]` (a `gather` would take one per element, and its backward a
/// scatter over all of them).
pub fn select_rows(x: Tensor<3>, rows: &[&[usize]]) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let k = rows[0].len();
    assert!(
        rows.len() == b
            && rows
                .iter()
                .all(|r| r.len() == k && r.iter().all(|&t| t < n))
    );
    let flat: Vec<i64> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().map(move |&t| (i * n + t) as i64))
        .collect();
    gather_rows(x.reshape([b * n, d]), flat).reshape([b, k, d])
}

/// Rows `index` of `x [r, d]`, in that order: `[index.len(), d]`.
pub fn gather_rows(x: Tensor<2>, index: Vec<i64>) -> Tensor<2> {
    let len = index.len();
    let index = Tensor::from_data(TensorData::new(index, [len]), &x.device());
    x.select(0, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn patch_rows_follow_mae_order_and_invert() {
        // 2 channels, 4×4 image, patch 2: patch 1 is the top-right 2×2 block; its row lists
        // (row 0, col 2) c0, c1, (row 0, col 3) c0, c1, (row 1, col 2) …
        let device = Device::flex();
        let values: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let images = Tensor::<4>::from_data(TensorData::new(values.clone(), [1, 2, 4, 4]), &device);
        let rows = patchify(images.clone(), 2);
        assert_eq!(rows.dims(), [1, 4, 8]);
        let got = crate::host::to_f32(rows.clone());
        let pixel = |c: usize, y: usize, x: usize| (c * 16 + y * 4 + x) as f32;
        let want = [
            pixel(0, 0, 2),
            pixel(1, 0, 2),
            pixel(0, 0, 3),
            pixel(1, 0, 3),
            pixel(0, 1, 2),
            pixel(1, 1, 2),
            pixel(0, 1, 3),
            pixel(1, 1, 3),
        ];
        assert_eq!(&got[8..16], &want);
        assert_eq!(crate::host::to_f32(unpatchify(rows, 2, 2)), values);
    }

    #[test]
    fn select_rows_picks_each_samples_tokens_and_routes_their_gradient_back() {
        let device = Device::flex().autodiff();
        // x[i, t, c] = 100·i + 10·t + c: every value names its sample, token and channel.
        let values: Vec<f32> = (0..2 * 4 * 3)
            .map(|e| (100 * (e / 12) + 10 * (e / 3 % 4) + e % 3) as f32)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(values, [2, 4, 3]), &device).require_grad();
        let rows: [&[usize]; 2] = [&[3, 0], &[1, 2]];
        let picked = select_rows(x.clone(), &rows);
        let want = [
            30.0, 31.0, 32.0, 0.0, 1.0, 2.0, 110.0, 111.0, 112.0, 120.0, 121.0, 122.0,
        ];
        assert_eq!(picked.to_data().try_to_vec::<f32>().unwrap(), want);
        // d(Σ w·picked)/dx: the weight of each picked position lands on its source row, zero
        // on the rows no sample picked.
        let weights: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let w = Tensor::<3>::from_data(TensorData::new(weights, [2, 2, 3]), &device);
        let grads = (picked * w).sum().backward();
        let dx = x
            .grad(&grads)
            .unwrap()
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        // Sample 0 picked tokens 3 then 0, sample 1 tokens 1 then 2.
        let want_dx = [
            [4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0],
            [
                0.0, 0.0, 0.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 0.0, 0.0, 0.0,
            ],
        ];
        assert_eq!(dx, want_dx.concat());
    }
}
