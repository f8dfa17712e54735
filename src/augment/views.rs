//! View recipes: how one image becomes the augmented views a method trains on.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::image::{Image, Planes, Texel};
use super::ops;

/// Augmentation settings shared by the views of a method (SimCLR-style pipeline).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Output side in pixels; 0 keeps the input size.
    pub size: usize,
    /// Random-resized-crop area range, as fractions of the image.
    pub crop_scale: [f32; 2],
    /// Random-resized-crop aspect-ratio range.
    pub crop_ratio: [f32; 2],
    pub flip_p: f32,
    /// Probability of applying color jitter at all.
    pub jitter_p: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub grayscale_p: f32,
    /// Gaussian blur probability, one entry per view (BYOL's asymmetric 1.0 / 0.1).
    pub blur_p: Vec<f32>,
    pub blur_sigma: [f32; 2],
    /// Solarization probability, one entry per view.
    pub solarize_p: Vec<f32>,
    /// Multi-crop (DINO): small crops added after the views above (which are the global crops).
    pub local_crops: usize,
    /// Side of the local crops in pixels (96 for 224-px global crops in DINO).
    pub local_size: usize,
    /// Random-resized-crop area range of the local crops.
    pub local_crop_scale: [f32; 2],
    /// Gaussian blur probability of each local crop (no solarization on them).
    pub local_blur_p: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        // BYOL's colour jitter (0.4 / 0.4 / 0.2 / 0.1, p = 0.8); SimCLR's recipes set strength 1.
        AugmentConfig {
            size: 0,
            crop_scale: [0.08, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            grayscale_p: 0.2,
            blur_p: vec![0.5, 0.5],
            blur_sigma: [0.1, 2.0],
            solarize_p: vec![0.0, 0.0],
            local_crops: 0,
            local_size: 0,
            local_crop_scale: [0.05, 0.4],
            local_blur_p: 0.5,
        }
    }
}

impl AugmentConfig {
    /// Global crops (one per `blur_p` entry) plus local crops.
    pub fn num_views(&self) -> usize {
        self.global_views() + self.local_crops
    }

    pub fn global_views(&self) -> usize {
        self.blur_p.len().max(self.solarize_p.len())
    }

    /// Side of view `view` for inputs of `side` pixels.
    pub fn view_side(&self, view: usize, side: usize) -> usize {
        if view < self.global_views() {
            self.out_size(side)
        } else {
            self.local_size
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!(
                    "augment.{name} = {p} must be a probability in [0, 1]"
                ))
            }
        };
        for (name, p) in [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
        ] {
            prob(name, p)?;
        }
        for p in &self.blur_p {
            prob("blur_p", *p)?;
        }
        for p in &self.solarize_p {
            prob("solarize_p", *p)?;
        }
        prob("local_blur_p", self.local_blur_p)?;
        if self.local_crops > 0 {
            if self.local_size == 0 {
                return Err(format!(
                    "augment.local_crops = {} needs augment.local_size (the local crops' side, e.g. 12 for 28-px images)",
                    self.local_crops
                ));
            }
            let [lo, hi] = self.local_crop_scale;
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                return Err(format!(
                    "augment.local_crop_scale = [{lo}, {hi}] must satisfy 0 < min ≤ max ≤ 1"
                ));
            }
        }
        if self.blur_p.len() != self.solarize_p.len() || self.blur_p.is_empty() {
            return Err(format!(
                "augment.blur_p and augment.solarize_p need one entry per view and the same length (got {} and {})",
                self.blur_p.len(),
                self.solarize_p.len()
            ));
        }
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(format!(
                "augment.crop_scale = [{lo}, {hi}] must satisfy 0 < min ≤ max ≤ 1"
            ));
        }
        let [lo, hi] = self.crop_ratio;
        if !(lo > 0.0 && lo <= hi) {
            return Err(format!(
                "augment.crop_ratio = [{lo}, {hi}] must satisfy 0 < min ≤ max"
            ));
        }
        let [lo, hi] = self.blur_sigma;
        if !(lo > 0.0 && lo <= hi) {
            return Err(format!(
                "augment.blur_sigma = [{lo}, {hi}] must satisfy 0 < min ≤ max"
            ));
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("augment.{name} = {v} must be in [0, 1]"));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(format!("augment.hue = {} must be in [0, 0.5]", self.hue));
        }
        Ok(())
    }

    /// Output side for an input of `side` pixels.
    pub fn out_size(&self, side: usize) -> usize {
        if self.size == 0 { side } else { self.size }
    }

    /// Produces view `view` of `img`: a global crop for the first [`Self::global_views`] views,
    /// then the local crops.
    pub fn apply<R: Rng, T: Texel>(&self, rng: &mut R, img: &Planes<T>, view: usize) -> Image {
        if view < self.global_views() {
            let (out_h, out_w) = if self.size == 0 {
                (img.height, img.width)
            } else {
                (self.size, self.size)
            };
            let crop = (self.crop_scale, (out_h, out_w));
            self.pipeline(rng, img, crop, self.blur_p[view], self.solarize_p[view])
        } else {
            let crop = (self.local_crop_scale, (self.local_size, self.local_size));
            self.pipeline(rng, img, crop, self.local_blur_p, 0.0)
        }
    }

    /// Crop (area range, output size), flip, jitter, grayscale, blur and solarize.
    fn pipeline<R: Rng, T: Texel>(
        &self,
        rng: &mut R,
        img: &Planes<T>,
        ([scale_lo, scale_hi], (out_h, out_w)): ([f32; 2], (usize, usize)),
        blur_p: f32,
        solarize_p: f32,
    ) -> Image {
        let window = ops::resized_crop_window(
            rng,
            img.height,
            img.width,
            (scale_lo, scale_hi),
            (self.crop_ratio[0], self.crop_ratio[1]),
        );
        let mut out = ops::crop_resize(img, window, out_h, out_w);
        if rng.random::<f32>() < self.flip_p {
            ops::hflip(&mut out);
        }
        if rng.random::<f32>() < self.jitter_p {
            ops::color_jitter(
                rng,
                &mut out,
                self.brightness,
                self.contrast,
                self.saturation,
                self.hue,
            );
        }
        if rng.random::<f32>() < self.grayscale_p {
            ops::grayscale(&mut out);
        }
        if rng.random::<f32>() < blur_p {
            let sigma = rng.random_range(self.blur_sigma[0]..=self.blur_sigma[1]);
            ops::gaussian_blur(&mut out, blur_kernel_size(out_h.min(out_w)), sigma);
        }
        if rng.random::<f32>() < solarize_p {
            ops::solarize(&mut out, 0.5);
        }
        out
    }
}

/// SimCLR's blur kernel: about 10% of the image side, odd, at least 3.
pub fn blur_kernel_size(side: usize) -> usize {
    let k = (side as f32 * 0.1).round() as usize;
    (k | 1).max(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn views_are_seeded_and_shaped() {
        let img = Image {
            channels: 1,
            height: 28,
            width: 28,
            data: (0..784).map(|i| (i % 29) as f32 / 29.0).collect(),
        };
        let cfg = AugmentConfig {
            size: 32,
            ..Default::default()
        };
        let a = cfg.apply(&mut ChaCha8Rng::seed_from_u64(7), &img.planes(), 0);
        let b = cfg.apply(&mut ChaCha8Rng::seed_from_u64(7), &img.planes(), 0);
        let c = cfg.apply(&mut ChaCha8Rng::seed_from_u64(8), &img.planes(), 0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!((a.channels, a.height, a.width), (1, 32, 32));
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = AugmentConfig {
            crop_scale: [0.5, 0.2],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("augment.crop_scale"));
        let bad = AugmentConfig {
            blur_p: vec![1.5, 0.1],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("augment.blur_p"));
        assert_eq!(blur_kernel_size(28), 3);
        assert_eq!(blur_kernel_size(224), 23);
    }
}
