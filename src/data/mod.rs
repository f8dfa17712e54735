//! Datasets: IDX (MNIST / Fashion-MNIST), CIFAR binary batches, image folders; the batch loader.

pub mod cifar;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod loader;

use std::path::{Path, PathBuf};

pub use dataset::{ImageSet, Splits};

use crate::error::{Error, Result};

/// The small real Fashion-MNIST subset that ships with the repository.
pub fn bundled_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist"))
}

/// Where Debian's `dataset-fashion-mnist` package puts the full dataset.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Loads train and (when the source has one) test splits from `path`, or the bundled subset.
///
/// `path` may be an IDX folder (`train-*` / `t10k-*` files), a CIFAR-10/100 binary folder, an
/// image folder split into `train/` and `test/` (or `val/`), or a single image folder.
pub fn load(path: Option<&Path>, image_size: Option<usize>) -> Result<Splits> {
    let splits = load_native(path, image_size)?;
    // Folders are resized while decoding; IDX and CIFAR arrive at their native size.
    Ok(match image_size {
        Some(side) => Splits {
            train: splits.train.resized(side),
            test: splits.test.map(|t| t.resized(side)),
            ..splits
        },
        None => splits,
    })
}

fn load_native(path: Option<&Path>, image_size: Option<usize>) -> Result<Splits> {
    let dir = path.map(Path::to_path_buf).unwrap_or_else(bundled_path);
    if !dir.exists() {
        return Err(Error::data(
            &dir,
            "data path does not exist; give a folder of IDX files, CIFAR binary batches or images",
        ));
    }
    if !dir.is_dir() {
        return Err(Error::data(
            &dir,
            "data path is a file; pass the folder that contains it",
        ));
    }
    if idx::has_split(&dir, "train") || idx::has_split(&dir, "t10k") {
        let train = idx::read_split(&dir, "train")?;
        let test = idx::has_split(&dir, "t10k")
            .then(|| idx::read_split(&dir, "t10k"))
            .transpose()?;
        return Ok(Splits {
            description: format!("IDX {}", dir.display()),
            train,
            test,
        });
    }
    if let Some(variant) = cifar::detect(&dir) {
        let (train, test) = cifar::read(&dir, variant)?;
        return Ok(Splits {
            description: format!("{variant:?} {}", dir.display()),
            train,
            test,
        });
    }
    if let Some((train_dir, test_dir)) = folder::split_dirs(&dir) {
        let train = folder::read(&train_dir, image_size)?;
        let size = image_size.or(Some(train.height).filter(|&h| h == train.width));
        let test = folder::read(&test_dir, size)?;
        return Ok(Splits {
            description: format!("image folder {}", dir.display()),
            train,
            test: Some(test),
        });
    }
    Ok(Splits {
        description: format!("image folder {}", dir.display()),
        train: folder::read(&dir, image_size)?,
        test: None,
    })
}
