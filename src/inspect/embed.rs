//! Frozen features of every image of a dataset, written to a file in batches: `.npy` (float32,
//! `[images, dim]`) or `.safetensors` (one `features` tensor), with a CSV beside it naming each
//! row's image and label.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::check_eval_data;
use crate::data::loader::Normalize;
use crate::data::{Corrupt, ImageSet, Images, OnCorrupt, Splits};
use crate::device::{DeviceChoice, device};
use crate::error::{Error, Result, write_atomic};
use crate::eval::features::{batch_for, image_batch};
use crate::nn::Backbone;
use crate::run::Run;
use burn::tensor::Device;

/// Which split to embed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
    /// The train split, then the test split.
    All,
}

#[derive(Clone, Debug, Serialize)]
pub struct EmbedReport {
    pub features: PathBuf,
    /// `index,split,name,label,class` per row, in the features' order.
    pub index: PathBuf,
    pub images: usize,
    pub dim: usize,
    /// Unreadable images left out (`data.on_corrupt = "skip"`), found while loading or reading.
    pub skipped: Vec<Corrupt>,
    pub seconds: f64,
}

/// The CSV beside a features file: `feats.npy` → `feats.csv`.
pub fn index_path(features: &Path) -> PathBuf {
    features.with_extension("csv")
}

/// Embeds `split` of `splits` with the run's encoder into `out` (`.npy` or `.safetensors`);
/// `progress(done, total)` after each batch.
pub fn embed_run(
    run: &Run,
    splits: &Splits,
    split: Split,
    out: &Path,
    choice: DeviceChoice,
    progress: impl FnMut(usize, usize),
) -> Result<EmbedReport> {
    check_eval_data(run, splits)?;
    let device = device(choice)?;
    let encoder = run.encoder(&device)?;
    let normalize = run.info.normalize();
    let input = EncoderInput {
        encoder: &encoder,
        normalize: &normalize,
        side: run.info.image_side,
        device: &device,
    };
    embed(&input, splits, split, out, progress)
}

/// An encoder and how its images are prepared.
pub struct EncoderInput<'a> {
    pub encoder: &'a Backbone,
    pub normalize: &'a Normalize,
    /// The side streamed images are cropped to.
    pub side: usize,
    pub device: &'a Device,
}

/// Embeds `split` of `splits` with `input.encoder` into `out` (`.npy` or `.safetensors`).
pub fn embed(
    input: &EncoderInput,
    splits: &Splits,
    split: Split,
    out: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<EmbedReport> {
    let format = match out.extension().and_then(|e| e.to_str()) {
        Some("npy") => Format::Npy,
        Some("safetensors") => Format::Safetensors,
        _ => {
            return Err(Error::Usage(format!(
                "--out {}: name the features file .npy or .safetensors",
                out.display()
            )));
        }
    };
    let parts: Vec<(&str, &Images)> = match (split, &splits.test) {
        (Split::Train, _) | (Split::All, None) => vec![("train", &splits.train)],
        (Split::Test, Some(test)) => vec![("test", test)],
        (Split::All, Some(test)) => vec![("train", &splits.train), ("test", test)],
        (Split::Test, None) => {
            return Err(Error::Usage(format!(
                "--split test: {} has no test split (val/ or test/ folder, t10k files); use --split train",
                splits.description
            )));
        }
    };
    let start = std::time::Instant::now();
    let EncoderInput {
        encoder,
        normalize,
        side,
        device,
    } = *input;
    let dim = encoder.out_dim();
    let total: usize = parts.iter().map(|(_, images)| images.len()).sum();
    let mut writer = FeatureWriter::create(out, format, dim)?;
    let mut rows = String::from("index,split,name,label,class\n");
    let mut skipped = splits.corrupt.clone();
    let mut done = 0;
    for (name, images) in parts {
        for start in (0..images.len()).step_by(batch_for(side)) {
            let ids: Vec<usize> = (start..(start + batch_for(side)).min(images.len())).collect();
            let batch = read_batch(images, name, &ids, side)?;
            skipped.extend(batch.skipped);
            if !batch.set.is_empty() {
                let x = image_batch(&batch.set, 0..batch.set.len(), normalize, device);
                writer.append(&crate::host::to_f32(encoder.forward(x)))?;
            }
            for (row, (image, label)) in batch.names.iter().zip(&batch.labels).enumerate() {
                let (label, class) = match label {
                    Some(l) => (l.to_string(), csv_field(&batch.classes[*l as usize])),
                    None => (String::new(), String::new()),
                };
                let index = writer.rows - batch.names.len() + row;
                rows.push_str(&format!(
                    "{index},{name},{},{label},{class}\n",
                    csv_field(image)
                ));
            }
            done += ids.len();
            progress(done, total);
        }
    }
    let images = writer.rows;
    writer.finish()?;
    let index = index_path(out);
    write_atomic(&index, rows.as_bytes())?;
    Ok(EmbedReport {
        features: out.to_path_buf(),
        index,
        images,
        dim,
        skipped,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A CSV field, quoted when it holds a comma, quote or newline.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

struct Batch {
    set: ImageSet,
    names: Vec<String>,
    labels: Vec<Option<u32>>,
    classes: Vec<String>,
    skipped: Vec<Corrupt>,
}

/// Images `ids` through the evaluation transform (streams) or as stored (in memory), with a
/// name for each: the file (or shard member), or `split/position` for IDX / CIFAR images.
fn read_batch(images: &Images, split: &str, ids: &[usize], side: usize) -> Result<Batch> {
    match images {
        Images::Memory(set) => {
            let range = ids[0]..ids[ids.len() - 1] + 1;
            Ok(Batch {
                set: ImageSet {
                    pixels: set.pixels[range.start * set.image_len()..range.end * set.image_len()]
                        .to_vec(),
                    labels: None,
                    classes: Vec::new(),
                    ..**set
                },
                names: ids.iter().map(|i| format!("{split}/{i}")).collect(),
                labels: ids
                    .iter()
                    .map(|&i| set.labels.as_ref().map(|l| l[i]))
                    .collect(),
                classes: set.classes.clone(),
                skipped: Vec::new(),
            })
        }
        Images::Stream(stream) => {
            let decoded: Vec<_> = ids
                .par_iter()
                .map(|&i| stream.eval_image(i, side))
                .collect();
            let mut batch = Batch {
                set: ImageSet {
                    pixels: Vec::new(),
                    channels: stream.channels,
                    height: side,
                    width: side,
                    labels: None,
                    classes: Vec::new(),
                },
                names: Vec::new(),
                labels: Vec::new(),
                classes: stream.index.classes.clone(),
                skipped: Vec::new(),
            };
            for (&i, image) in ids.iter().zip(decoded) {
                match image {
                    Ok(pixels) => {
                        batch.set.pixels.extend(pixels);
                        batch.names.push(stream.index.name(i));
                        batch
                            .labels
                            .push(stream.index.labels.as_ref().map(|l| l[i]));
                    }
                    Err(corrupt) if stream.on_corrupt == OnCorrupt::Skip => {
                        batch.skipped.push(corrupt)
                    }
                    Err(corrupt) => return Err(corrupt.into_error()),
                }
            }
            Ok(batch)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Npy,
    Safetensors,
}

/// `.npy` rows go straight to a temporary file whose header is rewritten with the final count;
/// safetensors needs the whole tensor, so its rows stay in memory. Either is renamed into place
/// only when complete.
struct FeatureWriter {
    format: Format,
    out: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    kept: Vec<f32>,
    dim: usize,
    rows: usize,
}

/// Room for any `[rows, dim]` header; npy pads headers with spaces to a multiple of 64 bytes.
const NPY_HEADER: usize = 128;

fn npy_header(rows: usize, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    let len = NPY_HEADER - 10;
    header.extend((len as u16).to_le_bytes());
    header.extend(dict.bytes());
    header.resize(NPY_HEADER - 1, b' ');
    header.push(b'\n');
    header
}

impl FeatureWriter {
    fn create(out: &Path, format: Format, dim: usize) -> Result<Self> {
        let tmp = out.with_extension("partial");
        let file = match format {
            Format::Npy => {
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?,
                );
                f.write_all(&npy_header(0, dim))
                    .map_err(|e| Error::io(&tmp, e))?;
                Some(f)
            }
            Format::Safetensors => None,
        };
        Ok(FeatureWriter {
            format,
            out: out.to_path_buf(),
            tmp,
            file,
            kept: Vec::new(),
            dim,
            rows: 0,
        })
    }

    fn append(&mut self, rows: &[f32]) -> Result<()> {
        self.rows += rows.len() / self.dim;
        match &mut self.file {
            Some(f) => {
                let bytes: Vec<u8> = rows.iter().flat_map(|x| x.to_le_bytes()).collect();
                f.write_all(&bytes).map_err(|e| Error::io(&self.tmp, e))
            }
            None => {
                self.kept.extend_from_slice(rows);
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self.format {
            Format::Npy => {
                let mut f = self
                    .file
                    .expect("npy writes to a file")
                    .into_inner()
                    .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
                f.seek(SeekFrom::Start(0))
                    .and_then(|_| f.write_all(&npy_header(self.rows, self.dim)))
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::io(&self.tmp, e))?;
                std::fs::rename(&self.tmp, &self.out).map_err(|e| Error::io(&self.out, e))
            }
            Format::Safetensors => {
                let bytes: Vec<u8> = self.kept.iter().flat_map(|x| x.to_le_bytes()).collect();
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![self.rows, self.dim],
                    &bytes,
                )
                .expect("rows × dim floats");
                let file = safetensors::serialize([("features", view)], None).map_err(|e| {
                    Error::Checkpoint {
                        path: self.out.clone(),
                        msg: e.to_string(),
                    }
                })?;
                write_atomic(&self.out, &file)
            }
        }
    }
}
