//! Seeded shuffling, batching and augmentation in parallel: one batch on demand ([`Loader::batch`],
//! what the trainer uses between steps) or an epoch prefetched on a thread ([`Loader::epoch`]).
//!
//! Every random choice is derived from (seed, epoch, batch, sample), never from thread timing, so a
//! run resumed at batch k of epoch e sees exactly the data an uninterrupted run would.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::dataset::Images;
use super::{Corrupt, OnCorrupt};
use crate::augment::{AugmentConfig, Image, Planes};

/// Mixes several integers into one well-spread RNG seed (splitmix64 steps).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// One batch: each view as a flat `batch × channels × side × side` buffer, normalised (global
/// crops first, then multi-crop's smaller local crops).
pub struct Batch {
    pub index: usize,
    pub size: usize,
    pub channels: usize,
    /// The side of each view.
    pub sides: Vec<usize>,
    pub views: Vec<Vec<f32>>,
    /// Streamed images that could not be decoded; the next readable image took each one's place.
    pub corrupt: Vec<Corrupt>,
}

/// Per-channel normalisation (x − mean) / std.
#[derive(Clone, Debug)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    pub fn apply(&self, img: &mut Image) {
        let plane = img.plane();
        for (c, channel) in img.data.chunks_exact_mut(plane).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            channel.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }
}

pub struct Loader {
    images: Images,
    augment: AugmentConfig,
    normalize: Normalize,
    batch_size: usize,
    seed: u64,
    prefetch: usize,
}

impl Loader {
    pub fn new(
        images: Images,
        augment: AugmentConfig,
        normalize: Normalize,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        Loader {
            images,
            augment,
            normalize,
            batch_size,
            seed,
            prefetch: 3,
        }
    }

    /// Full batches per epoch (the last partial batch is dropped: BatchNorm dislikes tiny batches).
    pub fn batches_per_epoch(&self) -> usize {
        self.images.len() / self.batch_size
    }

    pub fn side(&self) -> usize {
        self.augment.out_size(self.images.side())
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        match &self.images {
            Images::Stream(stream) => stream.order(self.seed, epoch),
            Images::Memory(set) => {
                let mut order: Vec<usize> = (0..set.len()).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[
                    self.seed,
                    epoch as u64,
                ])));
                order
            }
        }
    }

    /// Runs `f` on image `id`'s pixels. A streamed image that cannot be decoded is replaced by
    /// the next readable one (`data.on_corrupt = "skip"`, reported back) or is the error.
    fn with_image<T>(
        &self,
        id: usize,
        corrupt: &mut Vec<Corrupt>,
        f: impl FnOnce(&Planes<u8>) -> T,
    ) -> Result<T, Corrupt> {
        let stream = match &self.images {
            Images::Memory(set) => {
                return Ok(f(&Planes {
                    channels: set.channels,
                    height: set.height,
                    width: set.width,
                    data: set.image(id),
                }));
            }
            Images::Stream(stream) => stream,
        };
        for k in 0..stream.len() {
            match stream.decode((id + k) % stream.len()) {
                Ok(decoded) => return Ok(f(&decoded.planes())),
                Err(bad) if stream.on_corrupt == OnCorrupt::Skip => corrupt.push(bad),
                Err(bad) => return Err(bad),
            }
        }
        Err(corrupt.pop().expect("a stream has images"))
    }

    /// Builds batch `index` of `epoch` (deterministic; augments samples in parallel).
    pub fn batch(&self, order: &[usize], epoch: usize, index: usize) -> Result<Batch, Corrupt> {
        let views = self.augment.num_views();
        let native = self.images.side();
        let sides: Vec<usize> = (0..views)
            .map(|v| self.augment.view_side(v, native))
            .collect();
        let ids = &order[index * self.batch_size..(index + 1) * self.batch_size];
        let samples: Vec<(Vec<Image>, Vec<Corrupt>)> = ids
            .par_iter()
            .enumerate()
            .map(|(k, &id)| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
                    self.seed,
                    epoch as u64,
                    index as u64,
                    k as u64,
                ]));
                let mut corrupt = Vec::new();
                let views = self.with_image(id, &mut corrupt, |img| {
                    (0..views)
                        .map(|v| {
                            let mut out = self.augment.apply(&mut rng, img, v);
                            let side = sides[v];
                            if out.height != side || out.width != side {
                                out = crate::augment::ops::crop_resize(
                                    &out.planes(),
                                    (0, 0, out.height, out.width),
                                    side,
                                    side,
                                );
                            }
                            self.normalize.apply(&mut out);
                            out
                        })
                        .collect()
                })?;
                Ok((views, corrupt))
            })
            .collect::<Result<_, Corrupt>>()?;
        let corrupt = samples
            .iter()
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        let views = (0..views)
            .map(|v| {
                // Sized up front: growing a batch-sized buffer by doubling maps fresh pages each time.
                let mut view =
                    Vec::with_capacity(samples.iter().map(|(s, _)| s[v].data.len()).sum());
                for (s, _) in &samples {
                    view.extend_from_slice(&s[v].data);
                }
                view
            })
            .collect();
        Ok(Batch {
            index,
            size: ids.len(),
            channels: self.images.channels(),
            sides,
            views,
            corrupt,
        })
    }

    /// Streams the batches of `epoch` from `start` on, prepared on a worker thread ahead of use;
    /// an image that cannot be read (with `data.on_corrupt = "fail"`) ends the stream.
    pub fn epoch(self: &Arc<Self>, epoch: usize, start: usize) -> Receiver<Result<Batch, Corrupt>> {
        let (tx, rx) = sync_channel(self.prefetch);
        let loader = Arc::clone(self);
        std::thread::spawn(move || {
            let order = loader.order(epoch);
            for index in start..loader.batches_per_epoch() {
                let batch = loader.batch(&order, epoch, index);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageSet;

    fn loader(seed: u64) -> Arc<Loader> {
        let n = 40;
        let set = ImageSet {
            pixels: (0..n * 64).map(|i| (i * 37 % 251) as u8).collect(),
            channels: 1,
            height: 8,
            width: 8,
            labels: None,
            classes: vec![],
        };
        let normalize = Normalize {
            mean: vec![0.5],
            std: vec![0.25],
        };
        Arc::new(Loader::new(
            set.into(),
            AugmentConfig::default(),
            normalize,
            8,
            seed,
        ))
    }

    #[test]
    fn batches_depend_only_on_seed_epoch_and_index() {
        let l = loader(5);
        assert_eq!(l.batches_per_epoch(), 5);
        let all: Vec<Batch> = l.epoch(1, 0).iter().map(Result::unwrap).collect();
        let resumed: Vec<Batch> = l.epoch(1, 3).iter().map(Result::unwrap).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(resumed.len(), 2);
        assert_eq!(resumed[0].index, 3);
        assert_eq!(resumed[0].views, all[3].views);
        assert_eq!(all[0].views.len(), 2);
        assert_eq!(all[0].views[0].len(), 8 * 64);
        // Two views of the same batch differ; another epoch or seed gives other data.
        assert_ne!(all[0].views[0], all[0].views[1]);
        assert_ne!(l.order(0), l.order(1));
        let other = loader(6);
        assert_ne!(
            other.epoch(1, 0).iter().next().unwrap().unwrap().views,
            all[0].views
        );
        assert_eq!(all[0].sides, vec![8, 8]);
        // Every sample appears once per epoch.
        let mut order = l.order(2);
        order.sort_unstable();
        assert_eq!(order, (0..40).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod multi_crop_tests {
    use super::*;
    use crate::data::ImageSet;

    #[test]
    fn local_crops_follow_the_global_ones_at_their_own_size() {
        let set = ImageSet {
            pixels: (0..16 * 28 * 28).map(|i| (i * 31 % 253) as u8).collect(),
            channels: 1,
            height: 28,
            width: 28,
            labels: None,
            classes: vec![],
        };
        let augment = AugmentConfig {
            local_crops: 4,
            local_size: 12,
            ..AugmentConfig::default()
        };
        let normalize = Normalize {
            mean: vec![0.5],
            std: vec![0.25],
        };
        let loader = Loader::new(set.into(), augment.clone(), normalize.clone(), 8, 3);
        let batch = loader.batch(&loader.order(0), 0, 0).unwrap();
        assert_eq!(batch.sides, vec![28, 28, 12, 12, 12, 12]);
        for (view, side) in batch.views.iter().zip(&batch.sides) {
            assert_eq!(view.len(), 8 * side * side);
        }
        assert_ne!(
            batch.views[2], batch.views[3],
            "each local crop is its own draw"
        );
        // The global crops are exactly what they were without local crops.
        let plain = AugmentConfig {
            local_crops: 0,
            ..augment
        };
        let without = Loader::new(loader.images.clone(), plain, normalize, 8, 3);
        let globals = without.batch(&without.order(0), 0, 0).unwrap();
        assert_eq!(globals.views[..], batch.views[..2]);
    }
}
