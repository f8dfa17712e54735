//! An in-memory image set (u8 pixels in CHW order, all images the same size), a split's images
//! in memory or streamed, and the train/test splits.

use std::sync::Arc;

use super::{Corrupt, Stream};

/// Images stored contiguously as `n × channels × height × width` bytes.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// One label per image when the source has them (IDX label file, CIFAR, class folders).
    pub labels: Option<Vec<u32>>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[index * n..(index + 1) * n]
    }

    /// The first `n` images (and labels): a quick way to cut a run down.
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            pixels: self.pixels[..n * self.image_len()].to_vec(),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
            classes: self.classes.clone(),
            ..*self
        }
    }

    /// Every image bilinearly resized to `side × side` (itself when it already is).
    pub fn resized(self, side: usize) -> ImageSet {
        if self.height == side && self.width == side {
            return self;
        }
        use rayon::prelude::*;
        let pixels: Vec<u8> = self
            .pixels
            .par_chunks_exact(self.image_len())
            .flat_map_iter(|raw| {
                let img = crate::augment::Planes {
                    channels: self.channels,
                    height: self.height,
                    width: self.width,
                    data: raw,
                };
                let out = crate::augment::ops::crop_resize(
                    &img,
                    (0, 0, self.height, self.width),
                    side,
                    side,
                );
                out.data
                    .into_iter()
                    .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            })
            .collect();
        ImageSet {
            pixels,
            height: side,
            width: side,
            ..self
        }
    }

    pub fn num_classes(&self) -> usize {
        match &self.labels {
            Some(labels) => self
                .classes
                .len()
                .max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0)),
            None => 0,
        }
    }

    /// Per-channel mean and standard deviation of the pixels in [0, 1].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sum = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        for image in self.pixels.chunks_exact(self.image_len()) {
            for (c, channel) in image.chunks_exact(plane).enumerate() {
                for &p in channel {
                    let v = p as f64 / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let count = (self.len() * plane).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, &m)| ((s / count - (m as f64).powi(2)).max(1e-8).sqrt()) as f32)
            .collect();
        (mean, std)
    }
}

/// A split's images: decoded in memory, or streamed from disk.
#[derive(Clone, Debug)]
pub enum Images {
    Memory(Arc<ImageSet>),
    Stream(Arc<Stream>),
}

impl From<ImageSet> for Images {
    fn from(set: ImageSet) -> Self {
        Images::Memory(Arc::new(set))
    }
}

impl Images {
    pub fn len(&self) -> usize {
        match self {
            Images::Memory(set) => set.len(),
            Images::Stream(stream) => stream.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn channels(&self) -> usize {
        match self {
            Images::Memory(set) => set.channels,
            Images::Stream(stream) => stream.channels,
        }
    }

    /// The side a model sees these images at: the stored side, or a stream's crop side.
    pub fn side(&self) -> usize {
        match self {
            Images::Memory(set) => set.height,
            Images::Stream(stream) => stream.side,
        }
    }

    pub fn is_labelled(&self) -> bool {
        match self {
            Images::Memory(set) => set.labels.is_some(),
            Images::Stream(stream) => stream.index.labels.is_some(),
        }
    }

    /// Up to `max` images (0: all) in memory at `side` (streams: the evaluation transform,
    /// images spread over the set; in-memory sets: the first `max`, at their own size).
    pub fn in_memory(&self, max: usize, side: usize) -> crate::error::Result<ImageSet> {
        let max = if max == 0 { self.len() } else { max };
        match self {
            Images::Memory(set) if max >= set.len() => Ok(ImageSet::clone(set)),
            Images::Memory(set) => Ok(set.take(max)),
            Images::Stream(stream) => {
                stream.materialize(&super::stream::spread(stream.len(), max), side)
            }
        }
    }

    /// The first `n` images (streams: `n` spread over the set).
    pub fn take(&self, n: usize) -> Images {
        match self {
            Images::Memory(set) => Images::Memory(Arc::new(set.take(n))),
            Images::Stream(stream) => Images::Stream(Arc::new(
                stream.select(&super::stream::spread(stream.len(), n)),
            )),
        }
    }
}

/// A train part (for pretraining and for fitting kNN / the probe) and a held-out test part.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Images,
    pub test: Option<Images>,
    pub description: String,
    /// Images found unreadable while loading and left out (`data.on_corrupt = "skip"`).
    pub corrupt: Vec<Corrupt>,
}

impl Splits {
    pub fn new(description: String, train: Images, test: Option<Images>) -> Self {
        Splits {
            train,
            test,
            description,
            corrupt: Vec::new(),
        }
    }
}
