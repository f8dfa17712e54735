//! A streamed dataset: an [`Index`] of encoded images decoded when a batch needs them, so memory
//! is bounded by the batches in flight (one when the trainer makes them between steps), not by the
//! dataset.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::decode::{self, Decoded};
use super::index::Index;
use super::loader::mix_seed;
use super::{Corrupt, ImageSet, OnCorrupt};
use crate::augment::ops::crop_resize;
use crate::error::{Error, Result};

/// Decoded eval sets larger than this are refused (set `eval.max_train` / `eval.max_test`).
const EVAL_BUDGET_BYTES: usize = 2 << 30;

#[derive(Debug)]
pub struct Stream {
    pub index: Index,
    /// Channels every image is converted to: 3 when any sampled image has colour.
    pub channels: usize,
    /// The side training views and evaluation crops are made at.
    pub side: usize,
    pub on_corrupt: OnCorrupt,
    /// Shards only: how many images the per-epoch shuffle buffer holds.
    pub shuffle_buffer: usize,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Image `i` decoded at its own resolution; the error names the file and the reason.
    pub fn decode(&self, i: usize) -> std::result::Result<Decoded, Corrupt> {
        let corrupt = |reason: String| Corrupt {
            name: self.index.name(i),
            reason,
        };
        let bytes = self.index.read(i).map_err(|e| corrupt(e.to_string()))?;
        decode::decode(&bytes, self.channels).map_err(corrupt)
    }

    /// The order of `epoch`: a full shuffle for files; for shards, the shards in a per-epoch
    /// order, each read front to back through a shuffle buffer (WebDataset's streaming shuffle).
    pub fn order(&self, seed: u64, epoch: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, epoch as u64]));
        let mut order: Vec<usize> = (0..self.len()).collect();
        if self.index.shard_ranges.is_empty() {
            order.shuffle(&mut rng);
            return order;
        }
        let mut shards = self.index.shard_ranges.clone();
        shards.shuffle(&mut rng);
        let mut buffer: Vec<usize> = Vec::with_capacity(self.shuffle_buffer.max(1));
        order.clear();
        for i in shards.into_iter().flatten() {
            if buffer.len() < self.shuffle_buffer.max(1) {
                buffer.push(i);
                continue;
            }
            let j = rng.random_range(0..buffer.len());
            order.push(std::mem::replace(&mut buffer[j], i));
        }
        buffer.shuffle(&mut rng);
        order.extend(buffer);
        order
    }

    /// Image `i` with the standard evaluation transform: the shorter side resized to
    /// `side · 8/7` (256 for 224), then the central `side × side` crop; u8 CHW.
    pub fn eval_image(&self, i: usize, side: usize) -> std::result::Result<Vec<u8>, Corrupt> {
        Ok(centre_crop(&self.decode(i)?, side))
    }

    /// The images at `ids` through the evaluation transform, in memory, with their labels;
    /// unreadable ones are left out (or the error, with `on_corrupt = fail`).
    pub fn materialize(&self, ids: &[usize], side: usize) -> Result<ImageSet> {
        self.materialize_with(ids, side, self.on_corrupt)
    }

    fn materialize_with(
        &self,
        ids: &[usize],
        side: usize,
        on_corrupt: OnCorrupt,
    ) -> Result<ImageSet> {
        let bytes = ids.len() * self.channels * side * side;
        if bytes > EVAL_BUDGET_BYTES {
            return Err(Error::Recipe(format!(
                "evaluating {} images at {side}×{side} would hold {} MB in memory; set eval.max_train and eval.max_test (e.g. 10000 and 5000)",
                ids.len(),
                bytes >> 20
            )));
        }
        let decoded: Vec<_> = ids.par_iter().map(|&i| self.eval_image(i, side)).collect();
        let mut pixels = Vec::with_capacity(bytes);
        let mut labels = Vec::new();
        for (k, result) in decoded.into_iter().enumerate() {
            match result {
                Ok(image) => {
                    pixels.extend(image);
                    if let Some(l) = &self.index.labels {
                        labels.push(l[ids[k]]);
                    }
                }
                Err(corrupt) if on_corrupt == OnCorrupt::Skip => drop(corrupt),
                Err(corrupt) => return Err(corrupt.into_error()),
            }
        }
        Ok(ImageSet {
            pixels,
            channels: self.channels,
            height: side,
            width: side,
            labels: self.index.labels.is_some().then_some(labels),
            classes: self.index.classes.clone(),
        })
    }

    /// Per-channel mean and std estimated from up to `samples` images spread over the set
    /// (evaluation crops at the stream's side), so training starts without a pass over the data.
    /// Unreadable samples are left out here; training meets them under `data.on_corrupt`.
    pub fn channel_stats(&self, samples: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let ids = spread(self.len(), samples);
        let set = self.materialize_with(&ids, self.side.min(64), OnCorrupt::Skip)?;
        if set.is_empty() {
            return Err(Error::data(
                self.index.name(0),
                format!(
                    "none of the {} sampled images could be decoded; is this an image dataset?",
                    samples.min(self.len())
                ),
            ));
        }
        Ok(set.channel_stats())
    }

    /// The stream cut to `ids` (labels follow).
    pub fn select(&self, ids: &[usize]) -> Stream {
        Stream {
            index: self.index.select(ids),
            ..*self
        }
    }
}

/// `n` indices spread evenly over `0..len` (all of them when `n ≥ len`): a subset that covers
/// every class of a folder sorted by class.
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|k| k * len / n).collect()
}

/// The evaluation transform on decoded pixels (see [`Stream::eval_image`]).
pub fn centre_crop(image: &Decoded, side: usize) -> Vec<u8> {
    let short = image.height.min(image.width);
    // The crop covers 7/8 of the shorter side: resize-to-side·8/7 then crop-side, in one resample.
    let crop = ((short as f64 * 7.0 / 8.0).round() as usize).clamp(1, short);
    let window = (
        (image.height - crop) / 2,
        (image.width - crop) / 2,
        crop,
        crop,
    );
    let out = crop_resize(&image.planes(), window, side, side);
    out.data
        .iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::index::Location;

    fn shard_stream(shards: usize, per: usize, buffer: usize) -> Stream {
        let locations = (0..shards * per)
            .map(|i| Location::Member {
                shard: (i / per) as u32,
                offset: 0,
                len: 0,
                key: i.to_string(),
            })
            .collect();
        Stream {
            index: Index {
                locations,
                shards: (0..shards).map(|s| format!("{s}.tar").into()).collect(),
                shard_ranges: (0..shards).map(|s| s * per..(s + 1) * per).collect(),
                ..Index::default()
            },
            channels: 3,
            side: 8,
            on_corrupt: OnCorrupt::Skip,
            shuffle_buffer: buffer,
        }
    }

    #[test]
    fn shard_order_is_a_seeded_buffered_shuffle() {
        let stream = shard_stream(5, 100, 20);
        let order = stream.order(3, 0);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..500).collect::<Vec<_>>(), "each image once");
        assert_eq!(order, stream.order(3, 0));
        assert_ne!(order, stream.order(3, 1));
        // A buffer of 20 moves an image at most ~20 places back from its shard's stream position,
        // so the first 20 images come from the first shard read.
        let first_shard = order[0] / 100;
        assert!(order[..20].iter().all(|&i| i / 100 == first_shard));
        // Shards come in a different order in another epoch (5! orders; these seeds differ).
        let firsts: std::collections::HashSet<usize> =
            (0..6).map(|e| stream.order(3, e)[0] / 100).collect();
        assert!(firsts.len() > 1);
    }

    #[test]
    fn centre_crop_takes_the_middle_seven_eighths() {
        // 16 × 32 ramp along x: the crop is the central 14 × 14, so its mean column is 15.5.
        let width = 32;
        let pixels: Vec<u8> = (0..16 * width).map(|i| (i % width) as u8 * 8).collect();
        let image = Decoded {
            channels: 1,
            height: 16,
            width,
            pixels,
        };
        let out = centre_crop(&image, 14);
        assert_eq!(out.len(), 14 * 14);
        assert_eq!(out[0], 9 * 8, "left column of the crop is source column 9");
        assert_eq!(out[13], 22 * 8);
        assert_eq!(spread(10, 3), vec![0, 3, 6]);
        assert_eq!(spread(2, 5), vec![0, 1]);
    }
}
