//! Datasets: IDX (MNIST / Fashion-MNIST), CIFAR binary batches, image folders and WebDataset
//! shards (held in memory when small and of one square size, streamed otherwise); the loader.

pub mod cifar;
pub mod dataset;
pub mod decode;
pub mod folder;
pub mod idx;
pub mod index;
pub mod loader;
pub mod stream;
pub mod webdataset;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use dataset::{ImageSet, Images, Splits};
pub use stream::Stream;

use crate::error::{Error, Result};

/// The small real Fashion-MNIST subset that ships with the repository.
pub fn bundled_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist"))
}

/// Where Debian's `dataset-fashion-mnist` package puts the full dataset.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Folders with more images than this are streamed without reading every header first.
const HEADER_SCAN_LIMIT: usize = 50_000;
/// Folders whose decoded pixels would take more than this are streamed.
const MEMORY_BUDGET_BYTES: usize = 1 << 30;
/// Images sampled to estimate a streamed set's normalisation.
pub const SAMPLED_IMAGES: usize = 256;

/// What to do with an image that cannot be read or decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCorrupt {
    /// Leave it out (a neighbour takes its place in the batch), count it and name it.
    #[default]
    Skip,
    /// Stop with an error naming the file.
    Fail,
}

/// An image that could not be read: where it is and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Corrupt {
    pub name: String,
    pub reason: String,
}

impl Corrupt {
    pub fn into_error(self) -> Error {
        self.into_error_then("")
    }

    /// The error, with `then` (what happened to the run) appended to its message.
    pub fn into_error_then(self, then: &str) -> Error {
        Error::Data {
            path: self.name.into(),
            msg: format!(
                "cannot decode image ({}); remove or replace the file, or set data.on_corrupt = \"skip\"{then}",
                self.reason
            ),
        }
    }
}

/// How a dataset is read: sizes from the recipe, and the corrupt-file policy.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `data.image_size`: resize in-memory images to this side; streamed images are cropped to
    /// it when `view_side` is not set.
    pub image_size: Option<usize>,
    /// `augment.size`: the side of training views.
    pub view_side: Option<usize>,
    pub on_corrupt: OnCorrupt,
    pub shuffle_buffer: usize,
}

impl LoadOptions {
    /// The side streamed images are cropped to, or an error saying how to choose one.
    fn stream_side(&self, dir: &Path) -> Result<usize> {
        self.view_side.or(self.image_size).ok_or_else(|| {
            Error::data(
                dir,
                "these images differ in size (or are not square), so they are streamed and cropped at their own resolution; set augment.size (the side of the training crops, e.g. 224 for photos, 64 for a quick run)",
            )
        })
    }
}

/// Loads train and (when the source has one) test splits from `path`, or the bundled subset.
///
/// `path` may be an IDX folder (`train-*` / `t10k-*` files), a CIFAR-10/100 binary folder, an
/// image folder split into `train/` and `test/` (or `val/`), a single image folder, a folder of
/// WebDataset `.tar` shards (or `train/` and `val/` folders of them), or one `.tar` shard.
pub fn load(path: Option<&Path>, options: &LoadOptions) -> Result<Splits> {
    let dir = path.map(Path::to_path_buf).unwrap_or_else(bundled_path);
    if !dir.exists() {
        return Err(Error::data(
            &dir,
            "data path does not exist; give a folder of IDX files, CIFAR binary batches, images or .tar shards",
        ));
    }
    if dir.is_file() {
        if dir.extension().is_some_and(|e| e == "tar") {
            let train = shards(std::slice::from_ref(&dir), options)?;
            return Ok(Splits::new(
                format!("WebDataset shard {}", dir.display()),
                train,
                None,
            ));
        }
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
        return Ok(resized(
            Splits::new(
                format!("IDX {}", dir.display()),
                train.into(),
                test.map(Into::into),
            ),
            options,
        ));
    }
    if let Some(variant) = cifar::detect(&dir) {
        let (train, test) = cifar::read(&dir, variant)?;
        return Ok(resized(
            Splits::new(
                format!("{variant:?} {}", dir.display()),
                train.into(),
                test.map(Into::into),
            ),
            options,
        ));
    }
    let (train_dir, test_dir) = folder::split_dirs(&dir).unwrap_or((dir.clone(), None));
    let train_shards = webdataset::shards_in(&train_dir);
    if !train_shards.is_empty() {
        let train = shards(&train_shards, options)?;
        let test_shards = test_dir
            .as_deref()
            .map(webdataset::shards_in)
            .unwrap_or_default();
        let test = (!test_shards.is_empty())
            .then(|| shards(&test_shards, options))
            .transpose()?;
        let description = format!(
            "WebDataset {} ({} shards, streamed)",
            dir.display(),
            train_shards.len()
        );
        return Ok(Splits::new(description, train, test));
    }
    let (train, mut corrupt, how) = image_folder(&train_dir, options, None)?;
    let test = match test_dir {
        None => None,
        Some(test_dir) => {
            let (test, more, _) = image_folder(&test_dir, options, Some(&train))?;
            corrupt.extend(more);
            Some(test)
        }
    };
    let mut splits = Splits::new(
        format!("image folder {} ({how})", dir.display()),
        train,
        test,
    );
    splits.corrupt = corrupt;
    Ok(splits)
}

/// IDX and CIFAR arrive at their native size; `data.image_size` resizes them.
fn resized(splits: Splits, options: &LoadOptions) -> Splits {
    let Some(side) = options.image_size else {
        return splits;
    };
    let resize = |images: Images| match images {
        Images::Memory(set) => Images::Memory(Arc::new(Arc::unwrap_or_clone(set).resized(side))),
        other => other,
    };
    Splits {
        train: resize(splits.train),
        test: splits.test.map(resize),
        ..splits
    }
}

fn shards(paths: &[PathBuf], options: &LoadOptions) -> Result<Images> {
    let index = webdataset::index(paths)?;
    let dir = paths[0].parent().unwrap_or(Path::new("."));
    let side = options.stream_side(dir)?;
    let sampled = stream::spread(index.len(), 64);
    let headers: Vec<_> = sampled
        .iter()
        .filter_map(|&i| index.header(i).ok())
        .collect();
    let channels = channels_of(headers.iter().map(|h| h.color));
    Ok(Images::Stream(Arc::new(Stream {
        index,
        channels,
        side,
        on_corrupt: options.on_corrupt,
        shuffle_buffer: options.shuffle_buffer,
    })))
}

fn channels_of(mut color: impl Iterator<Item = bool>) -> usize {
    if color.any(|c| c) { 3 } else { 1 }
}

/// A folder of images: in memory when all share one square size and fit the budget, streamed
/// otherwise. A test folder (`like` = the train split) follows the train split's choice and
/// channels. Files whose header cannot be read are corrupt (left out with skip).
fn image_folder(
    dir: &Path,
    options: &LoadOptions,
    like: Option<&Images>,
) -> Result<(Images, Vec<Corrupt>, String)> {
    use rayon::prelude::*;
    let index = folder::list(dir)?;
    let scan = index.len() <= HEADER_SCAN_LIMIT;
    let ids = if scan {
        (0..index.len()).collect()
    } else {
        stream::spread(index.len(), 64)
    };
    let headers: Vec<std::result::Result<decode::Header, String>> =
        ids.par_iter().map(|&i| index.header(i)).collect();
    let mut corrupt = Vec::new();
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for (&i, header) in ids.iter().zip(headers) {
        match header {
            Ok(h) => good.push(h),
            Err(reason) => {
                let found = Corrupt {
                    name: index.name(i),
                    reason,
                };
                if options.on_corrupt == OnCorrupt::Fail {
                    return Err(found.into_error());
                }
                corrupt.push(found);
                bad.push(i);
            }
        }
    }
    if good.is_empty() {
        return Err(Error::data(
            dir,
            format!("none of the {} images could be read", ids.len()),
        ));
    }
    let index = index.without(&bad);
    let channels = match like {
        Some(train) => train.channels(),
        None => channels_of(good.iter().map(|h| h.color)),
    };
    let first = good[0];
    let one_square_size = scan
        && first.width == first.height
        && good
            .iter()
            .all(|h| (h.width, h.height) == (first.width, first.height));
    let side = options.image_size.unwrap_or(first.width);
    let bytes = index.len() * channels * side * side;
    let in_memory = match like {
        Some(train) => matches!(train, Images::Memory(_)),
        None => one_square_size && bytes <= MEMORY_BUDGET_BYTES,
    };
    if in_memory && one_square_size {
        let size = like.map(Images::side).or(options.image_size);
        let (set, more) = folder::read_index(&index, size, options.on_corrupt)?;
        corrupt.extend(more);
        let how = format!(
            "{} images in memory, {} MB",
            set.len(),
            set.pixels.len() >> 20
        );
        return Ok((Images::Memory(Arc::new(set)), corrupt, how));
    }
    let why = if !scan {
        format!("over {HEADER_SCAN_LIMIT} files")
    } else if !one_square_size {
        "mixed sizes".to_string()
    } else {
        format!("{} MB decoded", bytes >> 20)
    };
    let side = match like {
        Some(train) => train.side(),
        None => options.stream_side(dir)?,
    };
    let how = format!(
        "{} images, {why}: streamed, cropped to {side} px",
        index.len()
    );
    let stream = Stream {
        index,
        channels,
        side,
        on_corrupt: options.on_corrupt,
        shuffle_buffer: options.shuffle_buffer,
    };
    Ok((Images::Stream(Arc::new(stream)), corrupt, how))
}
