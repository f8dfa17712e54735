//! `selfsup neighbors`: nearest neighbours, near-duplicate groups and a contact sheet from an
//! embedding file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use selfsup::data::{Images, LoadOptions, Splits};
use selfsup::error::{Error, Result, write_atomic};
use selfsup::inspect::embed::csv_field;
use selfsup::inspect::neighbors::{
    Row, Tile, duplicate_groups, nearest, read_embeddings, spread_queries, tile_of,
    write_contact_sheet,
};

use super::args::NeighborsArgs;
use super::print_json;

#[derive(Serialize)]
struct Neighbour {
    name: String,
    cosine: f32,
}

#[derive(Serialize)]
struct Query {
    name: String,
    label: Option<u32>,
    neighbours: Vec<Neighbour>,
    /// Of the neighbours, how many share the query's label (when the data has labels).
    same_label: Option<usize>,
}

#[derive(Serialize)]
struct NeighborsReport {
    images: usize,
    dim: usize,
    k: usize,
    threshold: f32,
    /// Near-duplicate groups (image names), largest first.
    duplicate_groups: Vec<Vec<String>>,
    /// Over all images with labels: the share of neighbours with the same label.
    neighbour_label_agreement: Option<f64>,
    queries: Vec<Query>,
    neighbors_csv: PathBuf,
    duplicates_csv: PathBuf,
    contact_sheet: PathBuf,
}

/// Finds images by name in the dataset they were embedded from.
struct Lookup {
    splits: Option<Splits>,
    streamed: HashMap<String, (usize, usize)>,
}

impl Lookup {
    fn new(data: Option<&Path>) -> Result<Self> {
        let splits = data
            .map(|path| {
                let options = LoadOptions {
                    view_side: Some(64),
                    shuffle_buffer: 1,
                    ..LoadOptions::default()
                };
                selfsup::data::load(Some(path), &options)
            })
            .transpose()?;
        let mut streamed = HashMap::new();
        if let Some(splits) = &splits {
            for (part, images) in parts(splits).into_iter().enumerate() {
                if let Images::Stream(stream) = images {
                    for i in 0..stream.len() {
                        streamed.insert(stream.index.name(i), (part, i));
                    }
                }
            }
        }
        Ok(Lookup { splits, streamed })
    }

    fn image(&self, row: &Row) -> Option<image::DynamicImage> {
        if let Some(splits) = &self.splits {
            if let Some(&(part, i)) = self.streamed.get(&row.name) {
                let Images::Stream(stream) = parts(splits)[part] else {
                    return None;
                };
                return image::load_from_memory(&stream.index.read(i).ok()?).ok();
            }
            let (split, i) = row.name.split_once('/')?;
            let images = match split {
                "train" => &splits.train,
                "test" => splits.test.as_ref()?,
                _ => return None,
            };
            if let Images::Memory(set) = images {
                let i: usize = i.parse().ok()?;
                let (w, h) = (set.width as u32, set.height as u32);
                let pixels = set.image(i);
                return if set.channels == 1 {
                    image::GrayImage::from_raw(w, h, pixels.to_vec()).map(Into::into)
                } else {
                    let plane = (w * h) as usize;
                    let rgb: Vec<u8> = (0..plane)
                        .flat_map(|p| (0..3).map(move |c| pixels[c * plane + p]))
                        .collect();
                    image::RgbImage::from_raw(w, h, rgb).map(Into::into)
                };
            }
        }
        image::open(&row.name).ok()
    }
}

fn parts(splits: &Splits) -> Vec<&Images> {
    let mut parts = vec![&splits.train];
    parts.extend(splits.test.as_ref());
    parts
}

pub fn neighbors_command(args: NeighborsArgs) -> Result<()> {
    if args.k == 0 {
        return Err(Error::Usage("--k 0: ask for at least one neighbour".into()));
    }
    let (features, rows) = read_embeddings(&args.embeddings)?;
    let k = args.k.min(features.n.saturating_sub(1));
    if k == 0 {
        return Err(Error::Usage(format!(
            "{}: one image has no neighbours; embed more images",
            args.embeddings.display()
        )));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .embeddings
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        args.embeddings.with_file_name(format!("{stem}-neighbors"))
    });
    let started = std::time::Instant::now();
    let nn = nearest(&features, k);
    let groups = duplicate_groups(&nn, args.threshold);

    let mut table = String::from("index,name,rank,neighbour_index,neighbour_name,cosine\n");
    for (i, list) in nn.iter().enumerate() {
        for (rank, &(j, s)) in list.iter().enumerate() {
            table.push_str(&format!(
                "{i},{},{},{j},{},{s:.5}\n",
                csv_field(&rows[i].name),
                rank + 1,
                csv_field(&rows[j].name)
            ));
        }
    }
    let neighbors_csv = out.join("neighbors.csv");
    write_atomic(&neighbors_csv, table.as_bytes())?;
    let mut dup = String::from("group,index,name\n");
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            dup.push_str(&format!("{g},{i},{}\n", csv_field(&rows[i].name)));
        }
    }
    let duplicates_csv = out.join("duplicates.csv");
    write_atomic(&duplicates_csv, dup.as_bytes())?;

    let labelled: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].label.is_some())
        .collect();
    let agreement = (!labelled.is_empty()).then(|| {
        let same: usize = labelled
            .iter()
            .map(|&i| {
                nn[i]
                    .iter()
                    .filter(|(j, _)| rows[*j].label == rows[i].label)
                    .count()
            })
            .sum();
        same as f64 / (labelled.len() * k) as f64
    });

    let lookup = Lookup::new(args.data.as_deref())?;
    let blank = || image::RgbImage::from_pixel(96, 96, image::Rgb([220, 220, 220]));
    let mut missing = 0;
    let mut sheet = Vec::new();
    let mut queries = Vec::new();
    for q in spread_queries(rows.len(), args.queries) {
        let mut line = Vec::new();
        for (idx, caption) in std::iter::once((q, "query".to_string()))
            .chain(nn[q].iter().map(|&(j, s)| (j, format!("{s:.3}"))))
        {
            let image = match lookup.image(&rows[idx]) {
                Some(img) => tile_of(&img),
                None => {
                    missing += 1;
                    blank()
                }
            };
            line.push(Tile { image, caption });
        }
        sheet.push(line);
        queries.push(Query {
            name: rows[q].name.clone(),
            label: rows[q].label,
            same_label: rows[q].label.map(|l| {
                nn[q]
                    .iter()
                    .filter(|(j, _)| rows[*j].label == Some(l))
                    .count()
            }),
            neighbours: nn[q]
                .iter()
                .map(|&(j, s)| Neighbour {
                    name: rows[j].name.clone(),
                    cosine: s,
                })
                .collect(),
        });
    }
    let contact_sheet = out.join("contact_sheet.png");
    write_contact_sheet(&sheet, &contact_sheet)?;

    let report = NeighborsReport {
        images: features.n,
        dim: features.dim,
        k,
        threshold: args.threshold,
        duplicate_groups: groups
            .iter()
            .map(|g| g.iter().map(|&i| rows[i].name.clone()).collect())
            .collect(),
        neighbour_label_agreement: agreement,
        queries,
        neighbors_csv,
        duplicates_csv,
        contact_sheet,
    };
    if args.json {
        print_json(&report);
        return Ok(());
    }
    println!(
        "{} images ({}-d): {} nearest neighbours each in {:.1} s",
        report.images,
        report.dim,
        k,
        started.elapsed().as_secs_f64()
    );
    if let Some(a) = agreement {
        println!("  neighbours with the query's label  {:.1}%", 100.0 * a);
    }
    println!(
        "  near-duplicate groups (cosine ≥ {})  {}",
        args.threshold,
        report.duplicate_groups.len()
    );
    for group in report.duplicate_groups.iter().take(5) {
        let shown: Vec<&str> = group.iter().take(6).map(String::as_str).collect();
        let more = if group.len() > 6 { " …" } else { "" };
        println!("    {} images: {}{more}", group.len(), shown.join("  "));
    }
    if report.duplicate_groups.len() > 5 {
        println!("    … ({} more groups)", report.duplicate_groups.len() - 5);
    }
    let grouped: usize = report.duplicate_groups.iter().map(Vec::len).sum();
    if grouped * 10 > report.images {
        println!(
            "  note: {:.0}% of the images fall in a group: at this threshold the encoder does not tell them apart; raise --threshold above {} or embed with a better-trained encoder",
            100.0 * grouped as f64 / report.images as f64,
            args.threshold
        );
    }
    println!("  duplicates       {}", report.duplicates_csv.display());
    println!("  neighbours       {}", report.neighbors_csv.display());
    println!("  contact sheet    {}", report.contact_sheet.display());
    if missing > 0 {
        println!(
            "  {missing} image(s) on the sheet could not be found (grey): pass --data with the dataset they were embedded from"
        );
    }
    Ok(())
}
