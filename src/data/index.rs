//! Where each image of a dataset lives (a file, or a member of a WebDataset tar shard) and its
//! label: what a streamed dataset keeps in memory instead of the pixels.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where one image's encoded bytes are.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    File(PathBuf),
    /// `len` bytes at `offset` of shard `shard`, the member named `key`.
    Member {
        shard: u32,
        offset: u64,
        len: u64,
        key: String,
    },
}

/// The images of a dataset, in a fixed order, with labels when the source has them.
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub locations: Vec<Location>,
    /// One label per image (class sub-folders, `.cls` members), or none.
    pub labels: Option<Vec<u32>>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The tar shards `Location::Member`s point into, and each shard's range of images.
    pub shards: Vec<PathBuf>,
    pub shard_ranges: Vec<Range<usize>>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.locations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// A name for image `i` that a user can find: its path, or `shard.tar:key`.
    pub fn name(&self, i: usize) -> String {
        match &self.locations[i] {
            Location::File(path) => path.display().to_string(),
            Location::Member { shard, key, .. } => {
                format!("{}:{key}", self.shards[*shard as usize].display())
            }
        }
    }

    /// The encoded bytes of image `i`.
    pub fn read(&self, i: usize) -> std::io::Result<Vec<u8>> {
        match &self.locations[i] {
            Location::File(path) => std::fs::read(path),
            Location::Member {
                shard, offset, len, ..
            } => {
                use std::os::unix::fs::FileExt;
                let file = std::fs::File::open(&self.shards[*shard as usize])?;
                let mut bytes = vec![0u8; *len as usize];
                file.read_exact_at(&mut bytes, *offset)?;
                Ok(bytes)
            }
        }
    }

    /// Image `i`'s header (size, colour) without decoding its pixels.
    pub fn header(&self, i: usize) -> Result<super::decode::Header, String> {
        match &self.locations[i] {
            Location::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
                super::decode::header_from(std::io::BufReader::new(file))
            }
            Location::Member { .. } => {
                let bytes = self.read(i).map_err(|e| e.to_string())?;
                super::decode::header(&bytes)
            }
        }
    }

    /// The images at `ids`, in that order (labels and classes follow).
    pub fn select(&self, ids: &[usize]) -> Index {
        Index {
            locations: ids.iter().map(|&i| self.locations[i].clone()).collect(),
            labels: self
                .labels
                .as_ref()
                .map(|l| ids.iter().map(|&i| l[i]).collect()),
            classes: self.classes.clone(),
            shards: self.shards.clone(),
            shard_ranges: shard_ranges_of(&self.locations, ids),
        }
    }

    /// Drops the images at `bad` (sorted or not).
    pub fn without(&self, bad: &[usize]) -> Index {
        let bad: std::collections::HashSet<usize> = bad.iter().copied().collect();
        let keep: Vec<usize> = (0..self.len()).filter(|i| !bad.contains(i)).collect();
        self.select(&keep)
    }
}

/// Contiguous runs of the same shard among `ids` (empty when the images are plain files).
fn shard_ranges_of(locations: &[Location], ids: &[usize]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut current = None;
    for (k, &i) in ids.iter().enumerate() {
        let Location::Member { shard, .. } = locations[i] else {
            return Vec::new();
        };
        match ranges.last_mut() {
            Some(last) if current == Some(shard) => last.end = k + 1,
            _ => {
                ranges.push(k..k + 1);
                current = Some(shard);
            }
        }
    }
    ranges
}

/// Image file extensions a folder or shard is searched for.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

pub fn is_image_extension(ext: &str) -> bool {
    IMAGE_EXTENSIONS.contains(&ext.to_lowercase().as_str())
}

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(is_image_extension)
}
