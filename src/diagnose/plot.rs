//! The covariance spectrum as a PNG: log10 of each eigenvalue (normalised by the largest)
//! against its index, with horizontal grid lines at every decade.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::font::draw_text;
use super::stats::CollapseStats;
use crate::error::{Error, Result, write_atomic};

const W: u32 = 720;
const H: u32 = 440;
const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 50;

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < W && (py as u32) < H {
                img.put_pixel(px as u32, py as u32, color);
            }
        }
    }
}

/// Renders the spectrum of `stats` and writes it atomically to `path`.
pub fn write_spectrum(stats: &CollapseStats, title: &str, path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let top = stats
        .singular_values
        .first()
        .copied()
        .unwrap_or(0.0)
        .max(1e-30);
    let logs: Vec<f64> = stats
        .singular_values
        .iter()
        .map(|v| (v.max(top * 1e-12) / top).log10())
        .collect();
    let floor = logs
        .iter()
        .copied()
        .fold(0.0f64, f64::min)
        .floor()
        .min(-1.0);
    let grey = Rgb([215, 215, 215]);
    let black = Rgb([0, 0, 0]);
    for decade in (floor as i64)..=0 {
        let y = TOP as f64 + ph * (decade as f64 / floor);
        line(&mut img, (LEFT as f64, y), (LEFT as f64 + pw, y), grey);
        draw_text(&mut img, 8, y as i64 - 3, &format!("1E{decade}"), black);
    }
    line(
        &mut img,
        (LEFT as f64, TOP as f64),
        (LEFT as f64, TOP as f64 + ph),
        black,
    );
    line(
        &mut img,
        (LEFT as f64, TOP as f64 + ph),
        (LEFT as f64 + pw, TOP as f64 + ph),
        black,
    );
    let n = logs.len().max(2);
    let point = |i: usize, v: f64| {
        (
            LEFT as f64 + pw * i as f64 / (n - 1) as f64,
            TOP as f64 + ph * (v / floor),
        )
    };
    for i in 1..logs.len() {
        line(
            &mut img,
            point(i - 1, logs[i - 1]),
            point(i, logs[i]),
            Rgb([31, 119, 180]),
        );
    }
    draw_text(&mut img, LEFT as i64, 12, title, black);
    draw_text(
        &mut img,
        LEFT as i64,
        (H - 30) as i64,
        &format!(
            "INDEX 1..{}   EFFECTIVE RANK {:.1}   VERDICT {}",
            stats.dim,
            stats.effective_rank,
            stats.verdict.as_str().to_uppercase()
        ),
        black,
    );
    write_png(&img, path)
}

/// Encodes `img` as PNG and writes it atomically.
pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::data(path, format!("cannot encode PNG: {e}")))?;
    write_atomic(path, &bytes)
}
