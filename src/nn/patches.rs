//! Images ↔ patch rows, in MAE's order: `[b, c, h·p, w·p]` ↔ `[b, h·w, p·p·c]` with each row
//! laid out (pixel row, pixel column, channel), patches row-major over the grid.

use burn::tensor::Tensor;

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
}
