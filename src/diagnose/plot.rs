//! The covariance spectrum as a PNG: log10 of each eigenvalue (normalised by the largest)
//! against its index, with horizontal grid lines at every decade.

use std::path::Path;

use image::RgbImage;

use super::chart::{Chart, PALETTE, Series};
use super::stats::CollapseStats;
use crate::error::{Error, Result, write_atomic};

/// Renders the spectrum of `stats` and writes it atomically to `path`.
pub fn write_spectrum(stats: &CollapseStats, title: &str, path: &Path) -> Result<()> {
    let top = stats
        .singular_values
        .first()
        .copied()
        .unwrap_or(0.0)
        .max(1e-30);
    let points = stats
        .singular_values
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, v.max(top * 1e-12) / top))
        .collect();
    Chart {
        title: title.to_string(),
        x_label: "INDEX".into(),
        y_label: "EIGENVALUE / LARGEST".into(),
        log_y: true,
        series: vec![Series {
            label: String::new(),
            color: PALETTE[0],
            points,
        }],
        threshold: None,
        note: format!(
            "INDEX 1..{}   EFFECTIVE RANK {:.1}   VERDICT {}",
            stats.dim,
            stats.effective_rank,
            stats.verdict.as_str().to_uppercase()
        ),
    }
    .write(path)
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
