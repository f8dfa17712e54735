//! A 2-D map of a run's held-out embeddings (`selfsup map`) beside the same map for the
//! random-init encoder, points coloured by label: what training changed, at a glance. t-SNE
//! (Barnes-Hut, started from the PCA map so the picture is the same every time) or PCA alone,
//! with the silhouette score of each map and of the features themselves.

use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::held_out_images;
use crate::data::Splits;
use crate::device::{DeviceChoice, device};
use crate::diagnose::plot::write_png;
use crate::diagnose::scatter::{Scatter, panels_with_legend};
use crate::error::{Error, Result};
use crate::eval::{Features, encoder_features, random_init_encoder};
use crate::nn::backbone::ImageShape;
use crate::run::{Run, tensorboard};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Projection {
    Tsne,
    Pca,
}

#[derive(Clone, Debug)]
pub struct MapOptions {
    pub projection: Projection,
    /// Held-out images to place (the first ones of the held-out split).
    pub images: usize,
    /// t-SNE's perplexity: about how many neighbours each point keeps close.
    pub perplexity: f64,
    pub out: Option<PathBuf>,
    pub device: DeviceChoice,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            projection: Projection::Tsne,
            images: 2000,
            perplexity: 30.0,
            out: None,
            device: DeviceChoice::Cpu,
        }
    }
}

/// How well one encoder's features separate the labels.
#[derive(Clone, Debug, Serialize)]
pub struct Separation {
    /// Mean silhouette of the 2-D map (Euclidean), −1 to 1: higher, classes apart.
    pub map_silhouette: Option<f64>,
    /// The same on the features themselves (cosine distance): what the map tries to show.
    pub feature_silhouette: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapReport {
    pub picture: PathBuf,
    pub projection: Projection,
    pub images: usize,
    pub labelled: bool,
    pub trained: Separation,
    pub random_init: Separation,
    pub seconds: f64,
}

/// Maps the run's trained encoder and its random-init twin on the same held-out images and
/// writes both maps side by side (default `<run>/map.png`).
pub fn map_run(
    run: &Run,
    splits: &Splits,
    options: &MapOptions,
    mut progress: impl FnMut(&str),
) -> Result<MapReport> {
    let start = std::time::Instant::now();
    if options.images < 10 {
        return Err(Error::Usage(format!(
            "--images {}: a map needs at least 10 images",
            options.images
        )));
    }
    let set = held_out_images(run, splits, options.images)?;
    if set.len() < 10 {
        return Err(Error::Usage(format!(
            "the data holds {} images; a map needs at least 10",
            set.len()
        )));
    }
    let labels = set.labels.clone();
    let device = device(options.device)?;
    let normalize = run.info.normalize();
    progress("extracting features of the trained encoder");
    let trained = encoder_features(&run.encoder(&device)?, &set, &normalize, &device);
    progress("extracting features of the random-init encoder");
    let shape = ImageShape {
        channels: set.channels,
        side: set.height,
    };
    let random = random_init_encoder(&run.recipe, shape, &device);
    let random = encoder_features(&random, &set, &normalize, &device);
    let mut panels = Vec::new();
    let mut separations = Vec::new();
    for (name, features) in [("TRAINED ENCODER", &trained), ("RANDOM INIT", &random)] {
        progress(&format!("mapping the {} features", name.to_lowercase()));
        let unit = l2_normalised(features);
        let points = match options.projection {
            Projection::Pca => pca_2d(&unit, features.dim),
            Projection::Tsne => tsne_2d(&unit, features.dim, options.perplexity)?,
        };
        let separation = Separation {
            map_silhouette: labels.as_deref().and_then(|l| silhouette(&points, l)),
            feature_silhouette: labels
                .as_deref()
                .and_then(|l| feature_silhouette(&unit, features.dim, l)),
        };
        let subtitle = match separation.map_silhouette {
            Some(s) => format!("SILHOUETTE {s:.3}"),
            None => "UNLABELLED".into(),
        };
        let method = match options.projection {
            Projection::Tsne => "T-SNE",
            Projection::Pca => "PCA",
        };
        panels.push(
            Scatter {
                title: format!("{name}  {method}  {} IMAGES", set.len()),
                subtitle,
                points: &points,
                classes: labels.as_deref(),
            }
            .render(),
        );
        separations.push(separation);
    }
    let names: Vec<String> = match &labels {
        Some(l) => {
            let classes = l.iter().copied().max().map_or(0, |m| m as usize + 1);
            (0..classes)
                .map(|c| {
                    let name = set.classes.get(c).cloned().unwrap_or_else(|| c.to_string());
                    name.chars().take(20).collect()
                })
                .collect()
        }
        None => Vec::new(),
    };
    let picture = options
        .out
        .clone()
        .unwrap_or_else(|| run.root().join("map.png"));
    write_png(&panels_with_legend(&panels, &names), &picture)?;
    tensorboard::add_to_run(
        &run.dir,
        vec![("map".into(), tensorboard::Value::png_file(&picture)?)],
    )?;
    let random_init = separations.pop().expect("two panels");
    let trained = separations.pop().expect("two panels");
    Ok(MapReport {
        picture,
        projection: options.projection,
        images: set.len(),
        labelled: labels.is_some(),
        trained,
        random_init,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn l2_normalised(f: &Features) -> Vec<f32> {
    f.data
        .chunks(f.dim)
        .flat_map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter().map(move |v| v / norm)
        })
        .collect()
}

/// The rows' coordinates on their two leading principal components (power iteration on the
/// centred rows; deterministic).
fn pca_2d(rows: &[f32], dim: usize) -> Vec<(f32, f32)> {
    let n = rows.len() / dim;
    let mut mean = vec![0f64; dim];
    for row in rows.chunks(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v) / n as f64;
        }
    }
    let centred: Vec<f64> = rows
        .chunks(dim)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| f64::from(*v) - m))
        .collect();
    // v ← Xᵀ(X v), orthogonal to the components found before.
    let mut components: Vec<Vec<f64>> = Vec::new();
    for k in 0..2 {
        let mut v: Vec<f64> = (0..dim)
            .map(|i| 1.0 + ((i * 7 + k * 3) % 11) as f64)
            .collect();
        for _ in 0..300 {
            let xv: Vec<f64> = centred
                .chunks(dim)
                .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let mut next = vec![0f64; dim];
            for (row, s) in centred.chunks(dim).zip(&xv) {
                for (n, a) in next.iter_mut().zip(row) {
                    *n += a * s;
                }
            }
            for c in &components {
                let dot: f64 = next.iter().zip(c).map(|(a, b)| a * b).sum();
                for (n, b) in next.iter_mut().zip(c) {
                    *n -= dot * b;
                }
            }
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-30 {
                break;
            }
            v = next.into_iter().map(|x| x / norm).collect();
        }
        components.push(v);
    }
    centred
        .chunks(dim)
        .map(|row| {
            let project = |c: &Vec<f64>| row.iter().zip(c).map(|(a, b)| a * b).sum::<f64>() as f32;
            (project(&components[0]), project(&components[1]))
        })
        .collect()
}

/// Barnes-Hut t-SNE (θ = 0.5, 1,000 iterations) from the PCA map scaled to std 1e-4 (as
/// scikit-learn's `init="pca"`), so the same features always give the same map.
fn tsne_2d(rows: &[f32], dim: usize, perplexity: f64) -> Result<Vec<(f32, f32)>> {
    let n = rows.len() / dim;
    if (n as f64) < 3.0 * perplexity + 2.0 {
        return Err(Error::Usage(format!(
            "t-SNE with perplexity {perplexity} needs more than {:.0} images (have {n}); use more images, a lower --perplexity, or --projection pca",
            3.0 * perplexity + 1.0
        )));
    }
    let pca = pca_2d(rows, dim);
    let std = {
        let m = pca.iter().map(|p| p.0 as f64).sum::<f64>() / n as f64;
        (pca.iter().map(|p| (p.0 as f64 - m).powi(2)).sum::<f64>() / n as f64)
            .sqrt()
            .max(1e-12)
    };
    let init: Vec<f32> = pca
        .iter()
        .flat_map(|p| [p.0, p.1])
        .map(|v| (v as f64 / std * 1e-4) as f32)
        .collect();
    let data: Vec<&[f32]> = rows.chunks(dim).collect();
    let euclid = |a: &&[f32], b: &&[f32]| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let y = bhtsne::tSNE::new(&data)
        .embedding_dim(2)
        .perplexity(perplexity as f32)
        .epochs(1000)
        .initial_embedding(init)
        .barnes_hut(0.5, euclid)
        .embedding();
    Ok(y.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Mean silhouette of points under `distance`; `None` with fewer than two labels.
fn mean_silhouette(
    n: usize,
    labels: &[u32],
    distance: impl Fn(usize, usize) -> f64 + Sync,
) -> Option<f64> {
    let classes = labels.iter().copied().max()? as usize + 1;
    let counts = labels.iter().fold(vec![0usize; classes], |mut c, &l| {
        c[l as usize] += 1;
        c
    });
    if counts.iter().filter(|&&c| c > 0).count() < 2 {
        return None;
    }
    let total: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let own = labels[i] as usize;
            if counts[own] < 2 {
                return 0.0; // scikit-learn's convention for a singleton cluster
            }
            let mut sums = vec![0f64; classes];
            for j in 0..n {
                if j != i {
                    sums[labels[j] as usize] += distance(i, j);
                }
            }
            let a = sums[own] / (counts[own] - 1) as f64;
            let b = (0..classes)
                .filter(|&c| c != own && counts[c] > 0)
                .map(|c| sums[c] / counts[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if a.max(b) > 0.0 {
                (b - a) / a.max(b)
            } else {
                0.0
            }
        })
        .sum();
    Some(total / n as f64)
}

fn silhouette(points: &[(f32, f32)], labels: &[u32]) -> Option<f64> {
    mean_silhouette(points.len(), labels, |i, j| {
        let (a, b) = (points[i], points[j]);
        (f64::from(a.0 - b.0).powi(2) + f64::from(a.1 - b.1).powi(2)).sqrt()
    })
}

/// Silhouette in the feature space, with cosine distance (the rows are unit vectors).
fn feature_silhouette(unit: &[f32], dim: usize, labels: &[u32]) -> Option<f64> {
    let n = unit.len() / dim;
    mean_silhouette(n, labels, |i, j| {
        let (a, b) = (&unit[i * dim..(i + 1) * dim], &unit[j * dim..(j + 1) * dim]);
        1.0 - a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum::<f64>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silhouette_matches_a_hand_computation() {
        // Two clusters on a line: {0, 1} and {4, 6}.
        let points = [(0.0, 0.0), (1.0, 0.0), (4.0, 0.0), (6.0, 0.0)];
        let labels = [0, 0, 1, 1];
        // Point 0: a = 1, b = (4 + 6) / 2 = 5 → 0.8; point 1: a = 1, b = 4 → 0.75;
        // point 2: a = 2, b = 3.5 → 1.5 / 3.5; point 3: a = 2, b = 5.5 → 3.5 / 5.5.
        let expected = (0.8 + 0.75 + 1.5 / 3.5 + 3.5 / 5.5) / 4.0;
        let got = silhouette(&points, &labels).unwrap();
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        assert_eq!(silhouette(&points, &[0, 0, 0, 0]), None);
    }

    #[test]
    fn pca_finds_the_direction_of_largest_spread() {
        // Along (3, 4)/5 at t = −12..12, each at ±0.5 along (−4, 3)/5: uncorrelated spreads of
        // 52 and 0.25, so the map is (±t, ±0.5).
        let pairs: Vec<(f32, f32)> = (-12..=12)
            .flat_map(|t| [(t as f32, 0.5), (t as f32, -0.5)])
            .collect();
        let rows: Vec<f32> = pairs
            .iter()
            .flat_map(|&(t, s)| [0.6 * t - 0.8 * s, 0.8 * t + 0.6 * s, 0.0])
            .collect();
        let map = pca_2d(&rows, 3);
        for ((x, y), (t, s)) in map.iter().zip(&pairs) {
            assert!((x.abs() - t.abs()).abs() < 1e-4, "{x} vs ±{t}");
            assert!((y.abs() - s.abs()).abs() < 1e-4, "{y} vs ±{s}");
        }
    }
}
