//! IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::ImageSet;
use crate::error::{Error, Result};

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Reads a whole file, transparently un-gzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::data(
                    path,
                    format!("gzip stream is corrupt or truncated ({e}); re-download the file"),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn parse_idx(path: &Path, bytes: &[u8], expected_dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::data(path, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "IDX element type 0x{:02x} is not unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let dims = bytes[3] as usize;
    if dims != expected_dims {
        return Err(Error::data(
            path,
            format!("expected a {expected_dims}-D IDX file, found {dims}-D"),
        ));
    }
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(Error::data(path, "IDX header is truncated"));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let body = &bytes[header..];
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .unwrap_or(usize::MAX);
    if body.len() != expected {
        return Err(Error::data(
            path,
            format!(
                "IDX file is truncated or padded: header promises {expected} bytes of data {:?}, found {}",
                shape,
                body.len()
            ),
        ));
    }
    Ok((shape, body.to_vec()))
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether `dir` holds an IDX split with this prefix (`train` or `t10k`).
pub fn has_split(dir: &Path, prefix: &str) -> bool {
    find(dir, &format!("{prefix}-images-idx3-ubyte")).is_some()
}

/// Reads `<prefix>-images-idx3-ubyte[.gz]` and, when present, the matching labels.
pub fn read_split(dir: &Path, prefix: &str) -> Result<ImageSet> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte")).ok_or_else(|| {
        Error::data(
            dir,
            format!("no {prefix}-images-idx3-ubyte[.gz] in this folder"),
        )
    })?;
    let (shape, pixels) = parse_idx(&images_path, &read_maybe_gz(&images_path)?, 3)?;
    let (n, height, width) = (shape[0], shape[1], shape[2]);
    if n == 0 || height == 0 || width == 0 {
        return Err(Error::data(
            &images_path,
            format!("IDX file holds no pixels ({n} images of {height}×{width})"),
        ));
    }
    let labels = match find(dir, &format!("{prefix}-labels-idx1-ubyte")) {
        Some(path) => {
            let (lshape, labels) = parse_idx(&path, &read_maybe_gz(&path)?, 1)?;
            if lshape[0] != n {
                return Err(Error::data(
                    &path,
                    format!(
                        "{} labels for {n} images in {}",
                        lshape[0],
                        images_path.display()
                    ),
                ));
            }
            Some(labels.into_iter().map(u32::from).collect::<Vec<_>>())
        }
        None => None,
    };
    let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
    let classes = match &labels {
        Some(_) if fashion => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        // Digits, or as many classes as the labels use.
        Some(labels) => {
            let count = labels.iter().max().map_or(0, |&m| m as usize + 1).max(10);
            (0..count).map(|d| d.to_string()).collect()
        }
        None => Vec::new(),
    };
    if let Some((at, label)) = labels
        .iter()
        .flatten()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes.len())
    {
        return Err(Error::data(
            dir,
            format!(
                "label {label} of image {at} is not one of Fashion-MNIST's 10 classes (0–9); the labels file is damaged or from another dataset"
            ),
        ));
    }
    Ok(ImageSet {
        pixels,
        channels: 1,
        height,
        width,
        labels,
        classes,
    })
}

/// Encodes images as an IDX3 file (used to cut the shipped subset and in tests).
pub fn encode_images(set: &ImageSet) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, 3];
    for d in [set.len(), set.height, set.width] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&set.pixels);
    out
}

/// Encodes labels as an IDX1 file.
pub fn encode_labels(labels: &[u32]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, 1];
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend(labels.iter().map(|&l| l as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        ImageSet {
            pixels: (0..2 * 3 * 4).map(|i| i as u8).collect(),
            channels: 1,
            height: 3,
            width: 4,
            labels: Some(vec![1, 7]),
            classes: vec![],
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn round_trip_and_truncation_errors() {
        let dir = std::env::temp_dir().join(format!("selfsup-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = tiny();
        write(&dir, "train-images-idx3-ubyte", &encode_images(&set));
        write(
            &dir,
            "train-labels-idx1-ubyte",
            &encode_labels(set.labels.as_ref().unwrap()),
        );
        let back = read_split(&dir, "train").unwrap();
        assert_eq!(back.pixels, set.pixels);
        assert_eq!(back.labels, set.labels);
        assert_eq!((back.height, back.width, back.len()), (3, 4, 2));

        let full = encode_images(&set);
        write(&dir, "train-images-idx3-ubyte", &full[..full.len() - 5]);
        let err = read_split(&dir, "train").unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("truncated"),
            "{err}"
        );

        write(&dir, "train-images-idx3-ubyte", b"hello world");
        let err = read_split(&dir, "train").unwrap_err().to_string();
        assert!(err.contains("not an IDX file"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
