//! Folders of JPEG/PNG/WebP images: class sub-folders give labels, a flat folder is unlabeled.
//! Listed into an [`Index`]; small folders of one square size are decoded into memory.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dataset::ImageSet;
use super::decode;
use super::index::{Index, Location, is_image};
use super::{Corrupt, OnCorrupt};
use crate::error::{Error, Result};

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

/// Lists the images of a folder: one sub-folder per class gives labels, a flat folder none.
pub fn list(dir: &Path) -> Result<Index> {
    let entries = sorted_entries(dir)?;
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut index = Index::default();
    if class_dirs.is_empty() {
        index.locations = entries
            .iter()
            .filter(|p| is_image(p))
            .map(|p| Location::File(p.clone()))
            .collect();
    } else {
        let mut labels = Vec::new();
        for (label, class_dir) in class_dirs.iter().enumerate() {
            index.classes.push(
                class_dir
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            for path in sorted_entries(class_dir)? {
                if is_image(&path) {
                    index.locations.push(Location::File(path));
                    labels.push(label as u32);
                }
            }
        }
        index.labels = Some(labels);
    }
    if index.is_empty() {
        return Err(Error::data(
            dir,
            "no images found (expected .jpg/.png/.webp files, directly or in one sub-folder per class)",
        ));
    }
    Ok(index)
}

/// Decodes every image of `index` into memory, resized to `size × size` (or kept at the common
/// size when `None`). Unreadable files are left out and returned beside the set when
/// `on_corrupt` is skip; with fail the first one is the error.
pub fn read_index(
    index: &Index,
    size: Option<usize>,
    on_corrupt: OnCorrupt,
) -> Result<(ImageSet, Vec<Corrupt>)> {
    let decoded: Vec<std::result::Result<image::DynamicImage, String>> = (0..index.len())
        .into_par_iter()
        .map(|i| open_image(index, i))
        .collect();
    let mut corrupt = Vec::new();
    let mut kept = Vec::new();
    let mut kept_ids = Vec::new();
    let mut labels = Vec::new();
    for (i, result) in decoded.into_iter().enumerate() {
        match result {
            Ok(img) => {
                kept.push(img);
                kept_ids.push(i);
                if let Some(l) = &index.labels {
                    labels.push(l[i]);
                }
            }
            Err(reason) => {
                let found = Corrupt {
                    name: index.name(i),
                    reason,
                };
                if on_corrupt == OnCorrupt::Fail {
                    return Err(found.into_error());
                }
                corrupt.push(found);
            }
        }
    }
    if kept.is_empty() {
        return Err(Error::data(
            index.name(0),
            format!("none of the {} images could be decoded", index.len()),
        ));
    }
    let color = kept.iter().any(|img| img.color().has_color());
    let (height, width) = match size {
        Some(s) => (s, s),
        None => {
            let (w, h) = (kept[0].width() as usize, kept[0].height() as usize);
            if let Some((k, img)) = kept
                .iter()
                .enumerate()
                .find(|(_, img)| (img.width() as usize, img.height() as usize) != (w, h))
            {
                return Err(Error::Data {
                    path: index.name(kept_ids[k]).into(),
                    msg: format!(
                        "images differ in size ({}×{} vs {w}×{h}); set augment.size to stream them at their own resolution",
                        img.width(),
                        img.height()
                    ),
                });
            }
            (h, w)
        }
    };
    let channels = if color { 3 } else { 1 };
    let pixels: Vec<u8> = kept
        .into_par_iter()
        .flat_map_iter(|img| decode::planar(&resize(img, width, height), channels).pixels)
        .collect();
    let set = ImageSet {
        pixels,
        channels,
        height,
        width,
        labels: index.labels.is_some().then_some(labels),
        classes: index.classes.clone(),
    };
    Ok((set, corrupt))
}

/// Reads a folder of images into memory (see [`read_index`]); any unreadable file is an error.
pub fn read(dir: &Path, size: Option<usize>) -> Result<ImageSet> {
    Ok(read_index(&list(dir)?, size, OnCorrupt::Fail)?.0)
}

fn open_image(index: &Index, i: usize) -> std::result::Result<image::DynamicImage, String> {
    decode::decode_image(&index.read(i).map_err(|e| e.to_string())?)
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
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let img = decode::decode_image(&bytes).map_err(|reason| {
            Error::data(
                path,
                format!("cannot decode image ({reason}); remove or replace the file"),
            )
        })?;
        pixels.extend(decode::planar(&resize(img, side, side), channels).pixels);
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

/// The train and (when there is one) test/val sub-folders of `dir`, when it is split that way.
pub fn split_dirs(dir: &Path) -> Option<(PathBuf, Option<PathBuf>)> {
    let train = dir.join("train");
    let test = ["test", "val"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_dir());
    train.is_dir().then_some((train, test))
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
            err.contains("c.png") && err.contains("augment.size"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
