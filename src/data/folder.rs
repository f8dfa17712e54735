//! Folders of JPEG/PNG images: class sub-folders give labels, a flat folder is unlabeled.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dataset::ImageSet;
use crate::error::{Error, Result};

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    Ok(entries)
}

/// Reads a folder of images, resized to `size × size` (or kept at the common size when `None`).
pub fn read(dir: &Path, size: Option<usize>) -> Result<ImageSet> {
    let entries = sorted_entries(dir)?;
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut files: Vec<(PathBuf, Option<u32>)> = Vec::new();
    let mut classes = Vec::new();
    if class_dirs.is_empty() {
        files.extend(
            entries
                .iter()
                .filter(|p| is_image(p))
                .map(|p| (p.clone(), None)),
        );
    } else {
        for (label, class_dir) in class_dirs.iter().enumerate() {
            classes.push(
                class_dir
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            for path in sorted_entries(class_dir)? {
                if is_image(&path) {
                    files.push((path, Some(label as u32)));
                }
            }
        }
    }
    if files.is_empty() {
        return Err(Error::data(
            dir,
            "no images found (expected .png/.jpg files, directly or in one sub-folder per class)",
        ));
    }
    let decoded: Vec<image::DynamicImage> = files
        .par_iter()
        .map(|(path, _)| decode(path))
        .collect::<Result<_>>()?;
    let color = decoded.iter().any(|img| img.color().has_color());
    let (height, width) = match size {
        Some(s) => (s, s),
        None => {
            let (w, h) = (decoded[0].width() as usize, decoded[0].height() as usize);
            if let Some((i, _)) = decoded
                .iter()
                .enumerate()
                .find(|(_, img)| (img.width() as usize, img.height() as usize) != (w, h))
            {
                return Err(Error::data(
                    &files[i].0,
                    format!(
                        "images differ in size ({}×{} vs {w}×{h}); set data.image_size to resize them all",
                        decoded[i].width(),
                        decoded[i].height()
                    ),
                ));
            }
            (h, w)
        }
    };
    let channels = if color { 3 } else { 1 };
    let pixels: Vec<u8> = decoded
        .into_par_iter()
        .flat_map_iter(|img| to_chw(&resize(img, width, height), channels))
        .collect();
    let labels = (!classes.is_empty()).then(|| files.iter().map(|(_, l)| l.unwrap()).collect());
    Ok(ImageSet {
        pixels,
        channels,
        height,
        width,
        labels,
        classes,
    })
}

fn decode(path: &Path) -> Result<image::DynamicImage> {
    image::open(path).map_err(|e| {
        Error::data(
            path,
            format!("cannot decode image ({e}); remove or replace the file"),
        )
    })
}

fn resize(img: image::DynamicImage, width: usize, height: usize) -> image::DynamicImage {
    if (img.width() as usize, img.height() as usize) == (width, height) {
        return img;
    }
    img.resize_exact(
        width as u32,
        height as u32,
        image::imageops::FilterType::Triangle,
    )
}

/// Image files decoded, resized to `side × side` and converted to `channels` (1 or 3), unlabeled:
/// single images for a model trained on that shape.
pub fn read_files(paths: &[PathBuf], channels: usize, side: usize) -> Result<ImageSet> {
    let mut pixels = Vec::new();
    for path in paths {
        pixels.extend(to_chw(&resize(decode(path)?, side, side), channels));
    }
    Ok(ImageSet {
        pixels,
        channels,
        height: side,
        width: side,
        labels: None,
        classes: Vec::new(),
    })
}

fn to_chw(img: &image::DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        return img.to_luma8().into_raw();
    }
    let rgb = img.to_rgb8();
    let plane = (rgb.width() * rgb.height()) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px.0[c];
        }
    }
    out
}

/// The train/test sub-folders of `dir`, when it is split that way.
pub fn split_dirs(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let train = dir.join("train");
    ["test", "val"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_dir())
        .filter(|_| train.is_dir())
        .map(|test| (train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_folders_flat_folders_and_resizing() {
        let dir = std::env::temp_dir().join(format!("selfsup-folder-{}", std::process::id()));
        let labelled = dir.join("labelled");
        for (class, shade) in [("cats", 40u8), ("dogs", 200u8)] {
            std::fs::create_dir_all(labelled.join(class)).unwrap();
            for i in 0..2u8 {
                let img = image::RgbImage::from_pixel(20, 10, image::Rgb([shade, i, 0]));
                img.save(labelled.join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let set = read(&labelled, Some(8)).unwrap();
        assert_eq!(
            (set.len(), set.channels, set.height, set.width),
            (4, 3, 8, 8)
        );
        assert_eq!(set.labels, Some(vec![0, 0, 1, 1]));
        assert_eq!(set.classes, vec!["cats", "dogs"]);
        assert_eq!(set.image(2)[0], 200, "red plane of a dog image");

        let flat = dir.join("flat");
        std::fs::create_dir_all(&flat).unwrap();
        image::GrayImage::from_pixel(6, 6, image::Luma([9]))
            .save(flat.join("a.png"))
            .unwrap();
        image::GrayImage::from_pixel(6, 6, image::Luma([7]))
            .save(flat.join("b.jpg"))
            .unwrap();
        let set = read(&flat, None).unwrap();
        assert_eq!((set.len(), set.channels, set.height), (2, 1, 6));
        assert!(set.labels.is_none());

        image::GrayImage::from_pixel(5, 6, image::Luma([7]))
            .save(flat.join("c.png"))
            .unwrap();
        let err = read(&flat, None).unwrap_err().to_string();
        assert!(
            err.contains("c.png") && err.contains("data.image_size"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
