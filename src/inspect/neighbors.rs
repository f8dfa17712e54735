//! Nearest neighbours and near-duplicates in an embedding file written by `embed`: the check a
//! user makes before trusting an embedding, and the clean-up a photo folder usually needs.

use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::eval::features::Features;

/// One row of the `.csv` beside an embedding file.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub split: String,
    pub name: String,
    pub label: Option<u32>,
}

/// Reads features (`.npy` float32 `[n, d]`, or `.safetensors` with `features`) and the `.csv`
/// that names their rows.
pub fn read_embeddings(path: &Path) -> Result<(Features, Vec<Row>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: &str| Error::Data {
        path: path.to_path_buf(),
        msg: format!("{msg}; give a file written by `selfsup embed`"),
    };
    let (n, dim, data) = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
                return Err(bad("not a .npy file"));
            }
            let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let header = std::str::from_utf8(
                bytes
                    .get(10..10 + len)
                    .ok_or_else(|| bad("truncated header"))?,
            )
            .map_err(|_| bad("unreadable header"))?;
            if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
                return Err(bad("not a C-ordered float32 array"));
            }
            let shape = header
                .split("'shape': (")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .ok_or_else(|| bad("no shape in the header"))?;
            let dims: Vec<usize> = shape
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect();
            let [n, dim] = dims[..] else {
                return Err(bad("not a 2-d array"));
            };
            let data: Vec<f32> = bytes[10 + len..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (n, dim, data)
        }
        Some("safetensors") => {
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|_| bad("not a safetensors file"))?;
            let view = st
                .tensor("features")
                .map_err(|_| bad("no `features` tensor"))?;
            let [n, dim] = view.shape()[..] else {
                return Err(bad("`features` is not 2-d"));
            };
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (n, dim, data)
        }
        _ => return Err(bad("expected a .npy or .safetensors file")),
    };
    if data.len() != n * dim {
        return Err(bad("the data is shorter than its shape"));
    }
    let csv_path = path.with_extension("csv");
    let text = std::fs::read_to_string(&csv_path).map_err(|e| Error::io(&csv_path, e))?;
    let rows: Vec<Row> = text
        .lines()
        .skip(1)
        .map(|line| {
            let fields = csv_fields(line);
            Row {
                split: fields.get(1).cloned().unwrap_or_default(),
                name: fields.get(2).cloned().unwrap_or_default(),
                label: fields.get(3).and_then(|l| l.parse().ok()),
            }
        })
        .collect();
    if rows.len() != n {
        return Err(Error::Data {
            path: csv_path,
            msg: format!(
                "{} rows for {n} features; write both again with `selfsup embed`",
                rows.len()
            ),
        });
    }
    Ok((Features { data, n, dim }, rows))
}

fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// Rows centred on their mean and scaled to unit length: cosine similarity is then a dot product,
/// and the direction every feature shares (ReLU features are all positive) no longer makes every
/// pair look alike.
pub fn centred_unit_rows(features: &Features) -> Vec<f32> {
    let (n, d) = (features.n, features.dim);
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for (m, v) in mean.iter_mut().zip(features.row(i)) {
            *m += *v as f64 / n as f64;
        }
    }
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        let row: Vec<f64> = features
            .row(i)
            .iter()
            .zip(&mean)
            .map(|(v, m)| *v as f64 - m)
            .collect();
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        out.extend(row.iter().map(|v| (v / norm) as f32));
    }
    out
}

/// Each row's `k` most similar other rows (cosine of centred features), most similar first.
pub fn nearest(features: &Features, k: usize) -> Vec<Vec<(usize, f32)>> {
    let (n, d) = (features.n, features.dim);
    let unit = centred_unit_rows(features);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let q = &unit[i * d..(i + 1) * d];
            let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
            for j in (0..n).filter(|&j| j != i) {
                let r = &unit[j * d..(j + 1) * d];
                let s: f32 = q.iter().zip(r).map(|(a, b)| a * b).sum();
                if best.len() < k || s > best[best.len() - 1].1 {
                    let at = best.partition_point(|&(_, b)| b >= s);
                    best.insert(at, (j, s));
                    best.truncate(k);
                }
            }
            best
        })
        .collect()
}

/// Groups of rows joined by a neighbour link of cosine ≥ `threshold` (transitively), largest
/// first; rows in no such pair are left out.
pub fn duplicate_groups(neighbours: &[Vec<(usize, f32)>], threshold: f32) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..neighbours.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, list) in neighbours.iter().enumerate() {
        for &(j, s) in list {
            if s >= threshold {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..neighbours.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    groups.sort_by_key(|g| (std::cmp::Reverse(g.len()), g[0]));
    groups
}

/// `count` query rows spread evenly over `n`.
pub fn spread_queries(n: usize, count: usize) -> Vec<usize> {
    crate::data::stream::spread(n, count.min(n))
}

/// Side of a contact-sheet tile.
pub const TILE: u32 = 96;

/// One cell of a contact sheet: the image (already `TILE × TILE`) and a caption.
pub struct Tile {
    pub image: image::RgbImage,
    pub caption: String,
}

/// Draws one row per query (the query, then its neighbours, each captioned) and writes the PNG
/// atomically to `path`.
pub fn write_contact_sheet(rows: &[Vec<Tile>], path: &Path) -> Result<()> {
    use image::{Rgb, RgbImage};
    const GAP: u32 = 8;
    const CAPTION: u32 = 14;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let width = GAP + columns * (TILE + GAP) + GAP;
    let height = GAP + rows.len() as u32 * (TILE + CAPTION + GAP);
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let y0 = GAP + r as u32 * (TILE + CAPTION + GAP);
        for (c, tile) in row.iter().enumerate() {
            // A wider gap after the query column.
            let x0 = GAP + c as u32 * (TILE + GAP) + if c > 0 { GAP } else { 0 };
            crate::diagnose::font::draw_text(
                &mut sheet,
                x0 as i64,
                y0 as i64,
                &tile.caption,
                Rgb([0, 0, 0]),
            );
            image::imageops::overlay(&mut sheet, &tile.image, x0 as i64, (y0 + CAPTION) as i64);
        }
    }
    crate::diagnose::plot::write_png(&sheet, path)
}

/// An image scaled and centre-cropped to a `TILE × TILE` thumbnail.
pub fn tile_of(image: &image::DynamicImage) -> image::RgbImage {
    image
        .resize_to_fill(TILE, TILE, image::imageops::FilterType::Triangle)
        .to_rgb8()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_and_groups_follow_centred_cosine() {
        // Four points: 0 and 1 nearly the same direction after centring, 2 and 3 elsewhere.
        let data = vec![
            1.0, 0.0, 0.0, //
            1.0, 0.05, 0.0, //
            0.0, 1.0, 0.0, //
            0.0, 0.0, 1.0,
        ];
        let features = Features { data, n: 4, dim: 3 };
        let nn = nearest(&features, 2);
        assert_eq!(nn[0][0].0, 1);
        assert_eq!(nn[1][0].0, 0);
        assert!(nn[0][0].1 > 0.99 && nn[0][1].1 < 0.5, "{nn:?}");
        assert_eq!(duplicate_groups(&nn, 0.95), vec![vec![0, 1]]);
        assert!(duplicate_groups(&nn, 0.9999).is_empty());
        assert_eq!(
            csv_fields("1,test,\"a,b\"\"c\",3,x"),
            ["1", "test", "a,b\"c", "3", "x"]
        );
    }
}
