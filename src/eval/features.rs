//! Frozen-feature extraction: images in order, no augmentation, networks in eval mode.

use burn::tensor::{Device, Tensor, TensorData};

use crate::augment::Image;
use crate::data::ImageSet;
use crate::data::loader::Normalize;

/// `n × dim` row-major features.
#[derive(Clone, Debug)]
pub struct Features {
    pub data: Vec<f32>,
    pub n: usize,
    pub dim: usize,
}

impl Features {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Images `start..end` of `set` as a normalised `[b, c, h, w]` tensor.
pub fn image_batch(
    set: &ImageSet,
    range: std::ops::Range<usize>,
    normalize: &Normalize,
    device: &Device,
) -> Tensor<4> {
    images(set, range, normalize, device, |_| {})
}

/// Images `ids` of `set`, each passed through `transform` before normalisation, as a
/// `[b, c, h, w]` tensor.
pub fn images(
    set: &ImageSet,
    ids: impl ExactSizeIterator<Item = usize>,
    normalize: &Normalize,
    device: &Device,
    mut transform: impl FnMut(&mut Image),
) -> Tensor<4> {
    let b = ids.len();
    let mut data = Vec::with_capacity(b * set.image_len());
    for i in ids {
        let mut img = Image::from_u8(set.image(i), set.channels, set.height, set.width);
        transform(&mut img);
        normalize.apply(&mut img);
        data.extend_from_slice(&img.data);
    }
    Tensor::from_data(
        TensorData::new(data, [b, set.channels, set.height, set.width]),
        device,
    )
}

/// Runs `forward` over `set` in batches and gathers the outputs.
pub fn extract(
    set: &ImageSet,
    normalize: &Normalize,
    device: &Device,
    batch: usize,
    mut forward: impl FnMut(Tensor<4>) -> Tensor<2>,
) -> Features {
    let mut data = Vec::new();
    let mut dim = 0;
    for start in (0..set.len()).step_by(batch) {
        let end = (start + batch).min(set.len());
        let out = forward(image_batch(set, start..end, normalize, device));
        dim = out.dims()[1];
        data.extend(crate::host::to_f32(out));
    }
    Features {
        n: set.len(),
        dim,
        data,
    }
}

/// Raw pixels (normalised) as features: the baseline any encoder should beat.
pub fn pixels(set: &ImageSet, normalize: &Normalize) -> Features {
    let mut data = Vec::with_capacity(set.len() * set.image_len());
    for i in 0..set.len() {
        let mut img = Image::from_u8(set.image(i), set.channels, set.height, set.width);
        normalize.apply(&mut img);
        data.extend_from_slice(&img.data);
    }
    Features {
        n: set.len(),
        dim: set.image_len(),
        data,
    }
}
