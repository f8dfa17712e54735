//! A picture grid for masked image models: one row per image, one column per stage (original,
//! masked input, prediction, …), each image scaled up with nearest-neighbour pixels.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::font::draw_text;
use super::plot::write_png;
use crate::error::Result;

/// Where masked patches are painted in the "masked input" column: a colour no grayscale or
/// natural image patch is likely to have.
pub const MASK_COLOR: [u8; 3] = [70, 110, 190];

/// One column of the grid.
pub struct Column {
    pub title: String,
    /// Per row, `channels × side × side` pixels in [0, 1] (clamped when drawn).
    pub images: Vec<Vec<f32>>,
    /// Per row, per patch: paint this patch in [`MASK_COLOR`] (empty: none).
    pub masked: Vec<Vec<bool>>,
}

const HEADER: u32 = 22;
const GAP: u32 = 6;

/// Paints pixel (x, y) of a picture drawn `scale` times enlarged with its corner at `origin`.
pub fn put_scaled(
    img: &mut RgbImage,
    (x0, y0): (u32, u32),
    (x, y): (usize, usize),
    scale: u32,
    color: Rgb<u8>,
) {
    for dy in 0..scale {
        for dx in 0..scale {
            img.put_pixel(
                x0 + x as u32 * scale + dx,
                y0 + y as u32 * scale + dy,
                color,
            );
        }
    }
}

/// Draws `columns` side by side and writes the PNG atomically to `path`.
pub fn write_grid(
    columns: &[Column],
    channels: usize,
    side: usize,
    patch: usize,
    path: &Path,
) -> Result<()> {
    let rows = columns.first().map_or(0, |c| c.images.len());
    let scale = (128 / side).max(1) as u32;
    let cell = side as u32 * scale;
    let width = columns.len() as u32 * (cell + GAP) + GAP;
    let height = HEADER + rows as u32 * (cell + GAP) + GAP;
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let plane = side * side;
    let grid = side / patch.max(1);
    for (ci, column) in columns.iter().enumerate() {
        let x0 = GAP + ci as u32 * (cell + GAP);
        draw_text(&mut img, x0 as i64, 8, &column.title, Rgb([0, 0, 0]));
        for (ri, pixels) in column.images.iter().enumerate() {
            let y0 = HEADER + ri as u32 * (cell + GAP);
            let masked = column.masked.get(ri).filter(|m| !m.is_empty());
            for y in 0..side {
                for x in 0..side {
                    let is_masked = masked.is_some_and(|m| m[(y / patch) * grid + x / patch]);
                    let color = if is_masked {
                        MASK_COLOR
                    } else {
                        let v = |c: usize| {
                            (pixels[c * plane + y * side + x].clamp(0.0, 1.0) * 255.0).round() as u8
                        };
                        if channels >= 3 {
                            [v(0), v(1), v(2)]
                        } else {
                            [v(0); 3]
                        }
                    };
                    put_scaled(&mut img, (x0, y0), (x, y), scale, Rgb(color));
                }
            }
        }
    }
    write_png(&img, path)
}
