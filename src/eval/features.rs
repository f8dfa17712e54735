//! Frozen-feature extraction: images in order, no augmentation, networks in eval mode.

use burn::tensor::{Device, Tensor, TensorData};

use crate::augment::ops::crop_resize;
use crate::augment::{Image, Planes};
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

/// Images per forward pass when extracting features of `side`-pixel images: 256 up to 64 px,
/// then fewer so that a 224-px ResNet-50's activations stay around a gigabyte.
pub fn batch_for(side: usize) -> usize {
    (256 * 64 * 64 / (side * side).max(1)).clamp(16, 256)
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

/// The side raw-pixel features are taken at for `side`-pixel images: their own up to 64, else
/// 32 (the tiny-images baseline; 224² floats per image would not fit a large eval set).
pub fn pixel_side(side: usize) -> usize {
    if side > 64 { 32 } else { side }
}

/// Raw pixels (normalised) as features: the baseline any encoder should beat.
pub fn pixels(set: &ImageSet, normalize: &Normalize) -> Features {
    let longest = set.height.max(set.width);
    let side = pixel_side(longest);
    let (h, w) = if side == longest {
        (set.height, set.width)
    } else {
        (side, side)
    };
    let dim = set.channels * h * w;
    let mut data = Vec::with_capacity(set.len() * dim);
    for i in 0..set.len() {
        let planes = Planes {
            channels: set.channels,
            height: set.height,
            width: set.width,
            data: set.image(i),
        };
        let mut img = crop_resize(&planes, (0, 0, set.height, set.width), h, w);
        normalize.apply(&mut img);
        data.extend_from_slice(&img.data);
    }
    Features {
        n: set.len(),
        dim,
        data,
    }
}
