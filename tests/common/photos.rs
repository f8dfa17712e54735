//! Photo-like image folders and WebDataset shards built from real images: Fashion-MNIST upscaled
//! to mixed sizes and aspect ratios, or crops of the sample photographs in `data/photos/`, written
//! as JPEG (most), PNG and WebP. Shared by the tests and `examples/photo_folder.rs`.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, imageops::FilterType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where the images come from.
pub enum Source {
    /// Fashion-MNIST (class = garment) from an IDX folder.
    Fashion(PathBuf),
    /// Crops of the photographs in a folder (class = photograph).
    Photos(PathBuf),
}

/// How the written images are sized.
#[derive(Clone, Copy)]
pub enum Size {
    /// Every image exactly `width × height`.
    Fixed(u32, u32),
    /// Shorter side drawn from `min..=max`, aspect ratio from 3:4 to 16:9 either way.
    Mixed { min: u32, max: u32 },
}

pub struct Spec {
    pub source: Source,
    pub train: usize,
    pub val: usize,
    pub size: Size,
    /// Truncated JPEGs planted in the middle of the train split.
    pub corrupt: usize,
    /// Every image a JPEG (else every tenth PNG and every tenth WebP).
    pub jpeg_only: bool,
    pub seed: u64,
}

/// One written image: its path relative to the folder, label and encoded bytes.
pub struct Written {
    pub split: &'static str,
    pub relative: String,
    pub label: u32,
    pub bytes: Vec<u8>,
}

fn sources(source: &Source) -> (Vec<(DynamicImage, u32)>, Vec<String>) {
    match source {
        Source::Fashion(dir) => {
            let set = selfsup::data::idx::read_split(dir, "train").expect("an IDX folder");
            let labels = set.labels.clone().expect("labelled");
            let images = (0..set.len())
                .map(|i| {
                    let gray = image::GrayImage::from_raw(28, 28, set.image(i).to_vec()).unwrap();
                    (DynamicImage::ImageLuma8(gray), labels[i])
                })
                .collect();
            let classes = (0..10).map(|c| format!("class{c}")).collect();
            (images, classes)
        }
        Source::Photos(dir) => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .expect("the photos folder")
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
                .collect();
            paths.sort();
            let classes = paths
                .iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            let images = paths
                .iter()
                .enumerate()
                .map(|(c, p)| (image::open(p).unwrap(), c as u32))
                .collect();
            (images, classes)
        }
    }
}

fn draw_size(rng: &mut ChaCha8Rng, size: Size) -> (u32, u32) {
    match size {
        Size::Fixed(w, h) => (w, h),
        Size::Mixed { min, max } => {
            let short = rng.random_range(min..=max) as f32;
            let aspect = rng
                .random_range((0.75f32).ln()..=(16.0f32 / 9.0).ln())
                .exp();
            let long = (short * aspect).round() as u32;
            if rng.random::<bool>() {
                (long, short as u32)
            } else {
                (short as u32, long)
            }
        }
    }
}

/// A random crop (10–50% of the area) of a photograph, or a whole Fashion-MNIST image.
fn content(rng: &mut ChaCha8Rng, image: &DynamicImage, photos: bool) -> DynamicImage {
    if !photos {
        return image.clone();
    }
    let (w, h) = (image.width() as f32, image.height() as f32);
    let area = w * h * rng.random_range(0.1f32..0.5);
    let aspect = rng.random_range(0.75f32..1.333);
    let cw = ((area * aspect).sqrt() as u32).clamp(16, image.width());
    let ch = ((area / aspect).sqrt() as u32).clamp(16, image.height());
    let x = rng.random_range(0..=image.width() - cw);
    let y = rng.random_range(0..=image.height() - ch);
    image.crop_imm(x, y, cw, ch)
}

fn encode(
    rng: &mut ChaCha8Rng,
    image: &DynamicImage,
    k: usize,
    jpeg_only: bool,
) -> (Vec<u8>, &'static str) {
    let mut bytes = Vec::new();
    // Mostly JPEG, as photo folders are; every tenth PNG and every tenth WebP (lossless).
    let (format, ext) = match k % 10 {
        _ if jpeg_only => (ImageFormat::Jpeg, "jpg"),
        3 => (ImageFormat::Png, "png"),
        7 => (ImageFormat::WebP, "webp"),
        _ => (ImageFormat::Jpeg, "jpg"),
    };
    if format == ImageFormat::Jpeg {
        let quality = rng.random_range(75..=95);
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
        image.write_with_encoder(encoder).unwrap();
    } else {
        image
            .write_to(&mut Cursor::new(&mut bytes), format)
            .unwrap();
    }
    (bytes, ext)
}

/// The images of `spec`, encoded (nothing written yet).
pub fn generate(spec: &Spec) -> (Vec<Written>, Vec<String>) {
    let photos = matches!(spec.source, Source::Photos(_));
    let (images, classes) = sources(&spec.source);
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let mut per_class = vec![0usize; classes.len()];
    for (split, count) in [("train", spec.train), ("val", spec.val)] {
        for k in 0..count {
            // Round robin; Fashion-MNIST's val images come from the end, apart from train's.
            let (image, label) = if photos || split == "train" {
                &images[k % images.len()]
            } else {
                &images[images.len() - 1 - k % images.len()]
            };
            let (w, h) = draw_size(&mut rng, spec.size);
            let resized = content(&mut rng, image, photos).resize_exact(w, h, FilterType::Triangle);
            let (bytes, ext) = encode(&mut rng, &resized, k, spec.jpeg_only);
            let class = &classes[*label as usize];
            let n = per_class[*label as usize];
            per_class[*label as usize] += 1;
            out.push(Written {
                split,
                relative: format!("{split}/{class}/{split}-{n:06}.{ext}"),
                label: *label,
                bytes,
            });
        }
    }
    // JPEGs cut in half (the header intact, so only decoding finds them) in the middle of the
    // train split.
    let jpeg = out
        .iter()
        .find(|w| w.relative.ends_with(".jpg"))
        .map(|w| w.bytes.clone())
        .unwrap_or_default();
    for c in 0..spec.corrupt {
        let at = spec.train * (c + 1) / (spec.corrupt + 1);
        let label = out[at].label;
        out.insert(
            at,
            Written {
                split: "train",
                relative: format!("train/{}/corrupt-{c:03}.jpg", classes[label as usize]),
                label,
                bytes: jpeg[..jpeg.len() / 2].to_vec(),
            },
        );
    }
    (out, classes)
}

/// Writes the images as `root/{train,val}/<class>/…`.
pub fn write_folder(root: &Path, images: &[Written]) {
    for w in images {
        let path = root.join(&w.relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &w.bytes).unwrap();
    }
}

/// Writes the images as WebDataset shards `root/{train,val}/shard-NNNNN.tar` of `per_shard`
/// samples, each `key.<ext>` with a `key.cls` label.
pub fn write_shards(root: &Path, images: &[Written], per_shard: usize) {
    for split in ["train", "val"] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).unwrap();
        let members: Vec<&Written> = images.iter().filter(|w| w.split == split).collect();
        for (s, chunk) in members.chunks(per_shard.max(1)).enumerate() {
            let file = std::fs::File::create(dir.join(format!("shard-{s:05}.tar"))).unwrap();
            let mut tar = tar::Builder::new(file);
            for (k, w) in chunk.iter().enumerate() {
                let ext = w.relative.rsplit('.').next().unwrap();
                let key = format!("{s:05}{k:05}");
                for (name, bytes) in [
                    (format!("{key}.{ext}"), w.bytes.clone()),
                    (format!("{key}.cls"), w.label.to_string().into_bytes()),
                ] {
                    let mut header = tar::Header::new_gnu();
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    tar.append_data(&mut header, name, &bytes[..]).unwrap();
                }
            }
            tar.finish().unwrap();
        }
    }
}
