use super::*;
use crate::host::to_f32;
use crate::nn::backbone::{Arch, ImageShape};
use burn::tensor::Device;
use burn::tensor::Distribution;

fn tiny(device: &Device) -> VqTokenizer {
    let config = VqTokenizerConfig {
        codebook_size: 8,
        code_dim: 4,
        decoder_dim: 16,
        decoder_heads: 2,
        ..VqTokenizerConfig::default()
    };
    let model = ModelConfig {
        arch: Arch::Vit,
        embed_dim: 16,
        depth: 1,
        heads: 2,
        ..ModelConfig::default()
    };
    let shape = ImageShape {
        channels: 1,
        side: 8,
    };
    let build = Build::new(MethodName::VqTokenizer, &model, shape, device);
    VqTokenizer::init(&config, &build).unwrap()
}

#[test]
fn each_patch_takes_its_nearest_code_and_gradients_pass_straight_through() {
    let device = Device::flex().autodiff();
    let vq = tiny(&device);
    let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
    let q = vq.quantize(images.clone());
    let (z, ids) = (to_f32(q.z.clone()), crate::host::to_i64(q.ids.clone()));
    let book = to_f32(l2_normalize(vq.codebook.val()));
    for (row, &id) in z.chunks_exact(4).zip(&ids) {
        let dist = |k: usize| -> f32 { (0..4).map(|j| (row[j] - book[k * 4 + j]).powi(2)).sum() };
        let best = (0..8).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
        assert_eq!(id as usize, best);
    }
    assert_eq!(
        to_f32(q.codes),
        ids.iter()
            .flat_map(|&k| book[k as usize * 4..][..4].to_vec())
            .collect::<Vec<_>>()
    );

    let out = vq.step(&[images], Progress::at(0, 1));
    let grads = out.loss.backward();
    // The encoder learns through the quantizer (straight-through + commitment), the codebook
    // through the codebook term.
    assert!(vq.to_code.weight.val().grad(&grads).is_some());
    assert!(vq.codebook.val().grad(&grads).is_some());
    assert!(vq.usage.val().grad(&grads).is_none());
}
