//! DINO's signature picture: where the last block's [CLS] token looks, per attention head, drawn
//! as a heat map over the image (Caron et al. 2021, Fig. 1 and 3).

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::data::ImageSet;
use crate::device::{DeviceChoice, device};
use crate::diagnose::font::draw_text;
use crate::diagnose::grid::put_scaled;
use crate::diagnose::plot::write_png;
use crate::error::{Error, Result};
use crate::eval::features;
use crate::run::Run;

/// Which images `selfsup attention` looks at.
pub enum AttentionImages<'a> {
    /// Image files, resized to the run's image size and channels.
    Files(&'a [PathBuf]),
    /// The first `n` held-out images of the run's data.
    HeldOut(usize),
}

/// What `selfsup attention` drew.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionReport {
    pub picture: PathBuf,
    pub images: usize,
    pub heads: usize,
    /// Patches per side of the attention maps.
    pub grid: usize,
    /// Mean over images and heads of the maps' entropy divided by ln(patches): 1 is a CLS token
    /// that looks everywhere alike, lower is more focused.
    pub normalized_entropy: f64,
    /// Per image, per head: the [CLS] attention over the patches (row-major `grid × grid`),
    /// rescaled to sum to 1 (CLS also attends to itself and to register tokens).
    pub maps: Vec<Vec<Vec<f32>>>,
}

/// Computes the run's [CLS] attention maps on `images` and writes the overlay PNG (the run's
/// `attention.png` unless `out` is given).
pub fn attention_run(
    run: &Run,
    choice: DeviceChoice,
    images: AttentionImages,
    out: Option<&Path>,
) -> Result<AttentionReport> {
    let (recipe, info) = (&run.recipe, &run.info);
    let device = device(choice)?;
    let set = match images {
        AttentionImages::Files(paths) => {
            crate::data::folder::read_files(paths, info.channels, info.image_side)?
        }
        AttentionImages::HeldOut(n) => {
            let splits = run.data()?;
            splits
                .test
                .unwrap_or(splits.train)
                .in_memory(n, info.image_side)?
        }
    };
    if set.is_empty() {
        return Err(Error::Usage("no images to draw".into()));
    }
    let encoder = run.encoder(&device)?;
    let Some(vit) = encoder.vit() else {
        return Err(Error::Usage(format!(
            "{}: attention maps need a ViT encoder, but this run trained a {}; train with model.arch = vit-tiny, vit-small, vit-base or vit",
            run.root().display(),
            recipe.model.describe()
        )));
    };
    let batch = features::image_batch(&set, 0..set.len(), &info.normalize(), &device);
    let weights = vit.cls_attention(batch);
    let [n, heads, patches] = weights.dims();
    let raw = crate::host::to_f32(weights);
    let maps: Vec<Vec<Vec<f32>>> = raw
        .chunks_exact(heads * patches)
        .map(|image| {
            image
                .chunks_exact(patches)
                .map(|head| {
                    let total: f32 = head.iter().sum::<f32>().max(1e-30);
                    head.iter().map(|v| v / total).collect()
                })
                .collect()
        })
        .collect();
    let max_entropy = (patches as f64).ln().max(1e-12);
    let normalized_entropy = maps
        .iter()
        .flatten()
        .map(|m| {
            m.iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| -(p as f64) * (p as f64).ln())
                .sum::<f64>()
                / max_entropy
        })
        .sum::<f64>()
        / (n * heads) as f64;
    let picture = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.root().join("attention.png"));
    draw(&set, &maps, vit.grid(), &picture)?;
    let image = crate::run::tensorboard::Value::png_file(&picture)?;
    crate::run::tensorboard::add_to_run(&run.dir, vec![("attention".into(), image)])?;
    Ok(AttentionReport {
        picture,
        images: n,
        heads,
        grid: vit.grid(),
        normalized_entropy,
        maps,
    })
}

const HEADER: u32 = 22;
const GAP: u32 = 6;
/// How much of an overlay pixel is the heat colour (the rest is the image in gray).
const HEAT_OPACITY: f32 = 0.6;

/// One row per image: the image, the mean over heads, then each head, each map scaled to its own
/// maximum and drawn with nearest-neighbour patches (as DINO's visualisation does).
fn draw(set: &ImageSet, maps: &[Vec<Vec<f32>>], grid: usize, path: &Path) -> Result<()> {
    let side = set.height;
    let heads = maps[0].len();
    let scale = (128 / side).max(1) as u32;
    let cell = side as u32 * scale;
    let columns = heads as u32 + 2;
    let width = columns * (cell + GAP) + GAP;
    let height = HEADER + maps.len() as u32 * (cell + GAP) + GAP;
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let black = Rgb([0, 0, 0]);
    draw_text(&mut img, GAP as i64, 8, "image", black);
    draw_text(&mut img, (2 * GAP + cell) as i64, 8, "mean", black);
    for h in 0..heads {
        let x = GAP + (h as u32 + 2) * (cell + GAP);
        draw_text(&mut img, x as i64, 8, &format!("head {}", h + 1), black);
    }
    let patch = side / grid;
    for (row, image_maps) in maps.iter().enumerate() {
        let y0 = HEADER + row as u32 * (cell + GAP);
        let gray = grayscale(set, row);
        let mean: Vec<f32> = (0..grid * grid)
            .map(|p| image_maps.iter().map(|m| m[p]).sum::<f32>() / heads as f32)
            .collect();
        let mut cells: Vec<Option<&[f32]>> = vec![None, Some(&mean)];
        cells.extend(image_maps.iter().map(|m| Some(m.as_slice())));
        for (col, map) in cells.into_iter().enumerate() {
            let x0 = GAP + col as u32 * (cell + GAP);
            let peak = map.map_or(1.0, |m| m.iter().copied().fold(1e-30, f32::max));
            for y in 0..side {
                for x in 0..side {
                    let g = gray[y * side + x];
                    let color = match map {
                        None => [(g * 255.0).round() as u8; 3],
                        Some(m) => {
                            let heat = heat_color(m[(y / patch) * grid + x / patch] / peak);
                            heat.map(|c| {
                                (255.0 * (HEAT_OPACITY * c + (1.0 - HEAT_OPACITY) * g)).round()
                                    as u8
                            })
                        }
                    };
                    put_scaled(&mut img, (x0, y0), (x, y), scale, Rgb(color));
                }
            }
        }
    }
    write_png(&img, path)
}

/// Image `i` of `set` as gray levels in [0, 1] (the channel mean).
fn grayscale(set: &ImageSet, i: usize) -> Vec<f32> {
    let plane = set.height * set.width;
    let pixels = set.image(i);
    (0..plane)
        .map(|p| {
            (0..set.channels)
                .map(|c| pixels[c * plane + p] as f32)
                .sum::<f32>()
                / (255.0 * set.channels as f32)
        })
        .collect()
}

/// A dark-blue → red → yellow ramp for v in [0, 1], as RGB in [0, 1].
fn heat_color(v: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.05, 0.03, 0.25],
        [0.35, 0.05, 0.55],
        [0.80, 0.15, 0.35],
        [0.98, 0.55, 0.05],
        [1.00, 0.98, 0.60],
    ];
    let x = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let t = x - i as f32;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - t) + STOPS[i + 1][c] * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_ramp_runs_from_dark_to_bright() {
        let luminance = |v: f32| heat_color(v).iter().sum::<f32>();
        let mut last = luminance(0.0);
        for k in 1..=20 {
            let l = luminance(k as f32 / 20.0);
            assert!(l > last, "not brighter at {k}/20");
            last = l;
        }
        assert_eq!(heat_color(-1.0), heat_color(0.0));
        assert_eq!(heat_color(2.0), [1.00, 0.98, 0.60]);
    }
}
