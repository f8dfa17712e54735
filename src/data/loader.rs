//! Seeded shuffling, batching and augmentation on worker threads, prefetched ahead of the model.
//!
//! Every random choice is derived from (seed, epoch, batch, sample), never from thread timing, so a
//! run resumed at batch k of epoch e sees exactly the data an uninterrupted run would.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::dataset::ImageSet;
use crate::augment::{AugmentConfig, Image};

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
    set: Arc<ImageSet>,
    augment: AugmentConfig,
    normalize: Normalize,
    batch_size: usize,
    seed: u64,
    prefetch: usize,
}

impl Loader {
    pub fn new(
        set: Arc<ImageSet>,
        augment: AugmentConfig,
        normalize: Normalize,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        Loader {
            set,
            augment,
            normalize,
            batch_size,
            seed,
            prefetch: 3,
        }
    }

    /// Full batches per epoch (the last partial batch is dropped: BatchNorm dislikes tiny batches).
    pub fn batches_per_epoch(&self) -> usize {
        self.set.len() / self.batch_size
    }

    pub fn side(&self) -> usize {
        self.augment.out_size(self.set.height)
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.set.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[
            self.seed,
            epoch as u64,
        ])));
        order
    }

    /// Builds batch `index` of `epoch` (deterministic; augments samples in parallel).
    pub fn batch(&self, order: &[usize], epoch: usize, index: usize) -> Batch {
        let views = self.augment.num_views();
        let sides: Vec<usize> = (0..views)
            .map(|v| self.augment.view_side(v, self.set.height))
            .collect();
        let ids = &order[index * self.batch_size..(index + 1) * self.batch_size];
        let samples: Vec<Vec<Image>> = ids
            .par_iter()
            .enumerate()
            .map(|(k, &id)| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
                    self.seed,
                    epoch as u64,
                    index as u64,
                    k as u64,
                ]));
                let img = Image::from_u8(
                    self.set.image(id),
                    self.set.channels,
                    self.set.height,
                    self.set.width,
                );
                (0..views)
                    .map(|v| {
                        let mut out = self.augment.apply(&mut rng, &img, v);
                        let side = sides[v];
                        if out.height != side || out.width != side {
                            out = crate::augment::ops::crop_resize(
                                &out,
                                (0, 0, out.height, out.width),
                                side,
                                side,
                            );
                        }
                        self.normalize.apply(&mut out);
                        out
                    })
                    .collect()
            })
            .collect();
        let views = (0..views)
            .map(|v| {
                samples
                    .iter()
                    .flat_map(|s| s[v].data.iter().copied())
                    .collect()
            })
            .collect();
        Batch {
            index,
            size: ids.len(),
            channels: self.set.channels,
            sides,
            views,
        }
    }

    /// Streams the batches of `epoch` from `start` on, prepared on a worker thread ahead of use.
    pub fn epoch(self: &Arc<Self>, epoch: usize, start: usize) -> Receiver<Batch> {
        let (tx, rx) = sync_channel(self.prefetch);
        let loader = Arc::clone(self);
        std::thread::spawn(move || {
            let order = loader.order(epoch);
            for index in start..loader.batches_per_epoch() {
                if tx.send(loader.batch(&order, epoch, index)).is_err() {
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
            Arc::new(set),
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
        let all: Vec<Batch> = l.epoch(1, 0).iter().collect();
        let resumed: Vec<Batch> = l.epoch(1, 3).iter().collect();
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
        assert_ne!(other.epoch(1, 0).iter().next().unwrap().views, all[0].views);
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
        let loader = Loader::new(Arc::new(set), augment.clone(), normalize.clone(), 8, 3);
        let batch = loader.batch(&loader.order(0), 0, 0);
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
        let set = Arc::clone(&loader.set);
        let without = Loader::new(set, plain, normalize, 8, 3);
        let globals = without.batch(&without.order(0), 0, 0);
        assert_eq!(globals.views[..], batch.views[..2]);
    }
}
