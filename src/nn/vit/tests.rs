use super::*;

fn tiny(image_size: usize) -> VitConfig {
    VitConfig {
        image_size,
        patch_size: 4,
        in_channels: 1,
        embed_dim: 16,
        depth: 2,
        heads: 2,
        mlp_ratio: 2.0,
        layer_scale: 0.1,
        drop_path: 0.1,
        pos_embed: PosEmbedKind::SinCos,
        registers: 2,
        pool: Pool::Cls,
        freeze_patch_embed: true,
    }
}

#[test]
fn parameter_names_follow_timm() {
    let vit = tiny(8).init(&Device::flex());
    let names: Vec<String> = crate::host::named_values(&vit)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for expected in [
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "cls_token",
        "reg_token",
        "pos_embed",
        "blocks.0.norm1.weight",
        "blocks.0.norm1.bias",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight",
        "blocks.0.ls1.gamma",
        "blocks.0.norm2.weight",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.bias",
        "blocks.1.ls2.gamma",
        "norm.weight",
        "norm.bias",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    // qkv is one fused [d, 3d] projection.
    assert_eq!(vit.blocks[0].attn.qkv.weight.val().dims(), [16, 48]);
    assert_eq!(vit.pos_embed.val().dims(), [1, 1 + 4, 16]);
}

#[test]
fn output_is_cls_or_mean_patch_token() {
    let device = Device::flex();
    let images = Tensor::<4>::random([3, 1, 8, 8], Distribution::Default, &device);
    let vit = tiny(8).init(&device);
    let tokens = vit.forward_tokens(images.clone());
    assert_eq!(tokens.dims(), [3, 1 + 2 + 4, 16]);
    let cls = crate::host::to_f32(vit.forward(images.clone()));
    let first = crate::host::to_f32(tokens.clone().slice([0..3, 0..1]).reshape([3, 16]));
    assert_eq!(cls, first);
    let mut cfg = tiny(8);
    cfg.pool = Pool::MeanPatch;
    device.seed(1);
    let vit = cfg.init(&device);
    let tokens = vit.forward_tokens(images.clone());
    let mean = crate::host::to_f32(tokens.slice([0..3, 3..7]).mean_dim(1).reshape([3, 16]));
    let got = crate::host::to_f32(vit.forward(images));
    for (a, b) in got.iter().zip(&mean) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn cls_pooling_runs_the_last_block_on_cls_alone_with_the_same_gradients() {
    // `forward` skips the other rows' projection and MLP in the last block; its CLS and every
    // parameter's gradient must be those of pooling the whole token sequence. No stochastic
    // depth: its draws would differ between the two passes.
    use crate::testing::{assert_same_gradients, close};
    use burn::optim::GradientsParams;
    let config = VitConfig {
        drop_path: 0.0,
        pos_embed: PosEmbedKind::Learned,
        freeze_patch_embed: false,
        ..tiny(12)
    };
    let device = Device::flex().autodiff();
    let vit = config.init(&device);
    let images = Tensor::<4>::random([3, 1, 12, 12], Distribution::Default, &device);
    let fast = vit.forward(images.clone());
    let whole = vit.pool(vit.forward_tokens(images));
    close(
        &crate::host::to_f32(fast.clone()),
        &crate::host::to_f32(whole.clone()),
        "CLS",
    );
    let weights = Tensor::<2>::random([3, 16], Distribution::Default, &device);
    let grads = |cls: Tensor<2>| {
        GradientsParams::from_grads((cls * weights.clone()).sum().backward(), &vit)
    };
    assert_same_gradients(&vit, &grads(fast), &grads(whole));
    // The plan counts that: the last block's projection and MLP on one row of 1 + 2 + 9.
    let pooled: u64 = vit.pooled_costs(12).iter().map(|s| s.cost.macs).sum();
    let all: u64 = vit.costs(12, |all| all).iter().map(|s| s.cost.macs).sum();
    let (d, hidden) = (16u64, 32u64);
    assert_eq!(all - pooled, 11 * (d * d + 2 * d * hidden));
}

#[test]
fn bilinear_resample_halves_a_grid_by_averaging_2x2_blocks() {
    // 4×4 → 2×2 with aligned centres: output (0, 0) sits at input (0.5, 0.5), the mean of the
    // top-left 2×2 block; every row of the matrix sums to 1.
    let m = crate::host::to_f32(bilinear_resample(4, 2, &Device::flex()));
    let row0 = &m[0..16];
    for (k, &w) in row0.iter().enumerate() {
        let want = if [0, 1, 4, 5].contains(&k) { 0.25 } else { 0.0 };
        assert!((w - want).abs() < 1e-6, "{row0:?}");
    }
    for row in m.chunks_exact(16) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    // The same side is the identity.
    let same = crate::host::to_f32(bilinear_resample(3, 3, &Device::flex()));
    for i in 0..9 {
        for j in 0..9 {
            assert_eq!(same[i * 9 + j], (i == j) as u8 as f32);
        }
    }
}

#[test]
fn smaller_images_run_on_resampled_positions_and_cls_attention_sums_to_one() {
    let device = Device::flex();
    let vit = tiny(8).init(&device);
    let small = Tensor::<4>::random([2, 1, 4, 4], Distribution::Default, &device);
    assert_eq!(vit.forward_tokens(small).dims(), [2, 1 + 2 + 1, 16]);
    // CLS also attends to itself and the registers, so its patch weights sum below 1.
    let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
    let attn = crate::host::to_f32(vit.cls_attention(images));
    assert_eq!(attn.len(), 2 * 2 * 4);
    for head in attn.chunks_exact(4) {
        let total: f32 = head.iter().sum();
        assert!(total > 0.0 && total < 1.0, "{head:?}");
    }
}

#[test]
fn sincos_embedding_matches_mae_formula() {
    // dim 8 → 2 frequencies (1, 1/100). Patch (row 1, col 2) of a 3×3 grid is token 1 + 5:
    // [sin 2, sin 0.02, cos 2, cos 0.02, sin 1, sin 0.01, cos 1, cos 0.01].
    let pe = crate::host::to_f32(sincos_2d(8, 3, &Device::flex()));
    assert!(pe[..8].iter().all(|&v| v == 0.0), "CLS row is zero");
    let row = &pe[6 * 8..7 * 8];
    let want = [
        2f64.sin(),
        0.02f64.sin(),
        2f64.cos(),
        0.02f64.cos(),
        1f64.sin(),
        0.01f64.sin(),
        1f64.cos(),
        0.01f64.cos(),
    ];
    for (g, w) in row.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{row:?}");
    }
}

#[test]
fn frozen_patch_projection_and_sincos_get_no_gradient() {
    let device = Device::flex().autodiff();
    let vit = tiny(8).init(&device);
    let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
    let grads = vit.forward(images).sum().backward();
    assert!(vit.patch_embed.proj.weight.val().grad(&grads).is_none());
    assert!(vit.pos_embed.val().grad(&grads).is_none());
    assert!(vit.cls_token.val().grad(&grads).is_some());
    assert!(vit.blocks[1].attn.qkv.weight.val().grad(&grads).is_some());
}

#[test]
fn zero_initialised_linear_biases_are_trained() {
    let device = Device::flex().autodiff();
    let vit = tiny(8).init(&device);
    let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
    let grads = vit.forward(images).sum().backward();
    let block = &vit.blocks[1];
    for (name, bias) in [
        ("qkv", &block.attn.qkv.bias),
        ("proj", &block.attn.proj.bias),
        ("fc1", &block.mlp.fc1.bias),
        ("fc2", &block.mlp.fc2.bias),
    ] {
        let bias = bias.as_ref().unwrap().val();
        assert!(
            crate::host::to_f32(bias.clone()).iter().all(|&v| v == 0.0),
            "{name}"
        );
        assert!(bias.grad(&grads).is_some(), "{name}.bias gets no gradient");
    }
}

#[test]
fn drop_path_is_identity_in_eval_mode() {
    let device = Device::flex().autodiff();
    let mut cfg = tiny(8);
    cfg.drop_path = 0.5;
    let vit = cfg.init(&device).valid();
    let images = Tensor::<4>::random([4, 1, 8, 8], Distribution::Default, &device.clone().inner());
    let a = crate::host::to_f32(vit.forward(images.clone()));
    let b = crate::host::to_f32(vit.forward(images));
    assert_eq!(a, b);
}

#[test]
fn validation_names_the_field() {
    let mut cfg = tiny(30);
    assert!(cfg.validate().unwrap_err().contains("model.patch_size"));
    cfg.image_size = 32;
    cfg.heads = 3;
    assert!(cfg.validate().unwrap_err().contains("model.heads"));
}

#[test]
fn embedding_only_the_kept_patches_equals_embedding_all_then_selecting() {
    // Three channels (the pixel order inside a patch matters), learned positions and a trained
    // projection so that every parameter gets a gradient to compare.
    let config = VitConfig {
        in_channels: 3,
        pos_embed: PosEmbedKind::Learned,
        freeze_patch_embed: false,
        ..tiny(12)
    };
    let device = Device::flex().autodiff();
    let vit = config.init(&device);
    let images = Tensor::<4>::random([2, 3, 12, 12], Distribution::Default, &device);
    let keep: [&[usize]; 2] = [&[8, 0, 5], &[2, 7, 3]];
    let weights = Tensor::<3>::random([2, 3, 16], Distribution::Default, &device);
    let run = |visible: Tensor<3>| {
        let grads = (visible.clone() * weights.clone()).sum().backward();
        let grad = |t: Tensor<3>| crate::host::to_f32(t.grad(&grads).unwrap());
        (
            crate::host::to_f32(visible),
            crate::host::to_f32(vit.patch_embed.proj.weight.val().grad(&grads).unwrap()),
            crate::host::to_f32(
                vit.patch_embed
                    .proj
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .unwrap(),
            ),
            grad(vit.pos_embed.val()),
        )
    };
    let fast = run(vit.embed_patches_at(images.clone(), &keep));
    let full = vit.add_patch_positions(vit.patch_embeddings(images));
    let reference = run(select_rows(full, &keep));
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    };
    close(&fast.0, &reference.0, "tokens");
    close(&fast.1, &reference.1, "projection weight gradient");
    close(&fast.2, &reference.2, "projection bias gradient");
    close(&fast.3, &reference.3, "position gradient");
    // Positions of patches no sample kept, and CLS's, get nothing.
    let d = 16;
    for token in [0, 1 + 1, 1 + 4, 1 + 6] {
        assert!(
            fast.3[token * d..][..d].iter().all(|&g| g == 0.0),
            "token {token}"
        );
    }
}
