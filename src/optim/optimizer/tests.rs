use super::*;
use burn::nn::{Linear, LinearConfig};

fn layer(device: &Device) -> Linear {
    let layer = LinearConfig::new(2, 1).init(device);
    let weight = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [2, 1]), device);
    let bias = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), device);
    Linear {
        weight: Param::initialized(layer.weight.id, weight.require_grad()),
        bias: Some(Param::initialized(
            layer.bias.unwrap().id,
            bias.require_grad(),
        )),
    }
}

fn grads(layer: &Linear, w: [f32; 2], b: f32) -> GradientsParams {
    let device = Device::flex();
    let mut g = GradientsParams::new();
    g.register(
        layer.weight.id,
        Tensor::<2>::from_data(TensorData::new(w.to_vec(), [2, 1]), &device),
    );
    g.register(
        layer.bias.as_ref().unwrap().id,
        Tensor::<1>::from_data(TensorData::new(vec![b], [1]), &device),
    );
    g
}

fn values(layer: &Linear) -> (Vec<f32>, Vec<f32>) {
    (
        crate::host::to_f32(layer.weight.val()),
        crate::host::to_f32(layer.bias.as_ref().unwrap().val()),
    )
}

#[test]
fn lars_scales_matrices_by_trust_ratio_and_skips_biases() {
    let device = Device::flex().autodiff();
    let mut opt = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Lars,
        momentum: 0.0,
        weight_decay: 0.0,
        trust_coefficient: 0.001,
        ..Default::default()
    });
    let l = layer(&device);
    let g = grads(&l, [0.6, 0.8], 0.5);
    let l = opt.step(1.0, 1.0, l, g, &ConstantLr::default());
    let (w, b) = values(&l);
    // ‖w‖ = 5, ‖g‖ = 1 → trust 0.005; the bias gets the plain gradient.
    assert!(
        (w[0] - (3.0 - 0.003)).abs() < 1e-6 && (w[1] - (4.0 - 0.004)).abs() < 1e-6,
        "{w:?}"
    );
    assert!((b[0] - 0.5).abs() < 1e-6, "{b:?}");
}

#[test]
fn a_constant_lr_group_steps_at_the_base_rate() {
    // Plain SGD: w ← w − lr·g; the layer in the group takes lr = 1, not the scheduled 0.1.
    let device = Device::flex().autodiff();
    let config = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.0,
        weight_decay: 0.0,
        ..Default::default()
    };
    let l = layer(&device);
    let fixed = ConstantLr::of(&l);
    let stepped = Optimizer::new(config.clone()).step(
        0.1,
        1.0,
        l.clone(),
        grads(&l, [1.0, 2.0], 0.5),
        &fixed,
    );
    let (w, b) = values(&stepped);
    assert!(
        (w[0] - 2.0).abs() < 1e-6 && (w[1] - 2.0).abs() < 1e-6,
        "{w:?}"
    );
    assert!((b[0] - 0.5).abs() < 1e-6, "{b:?}");
    let scheduled = Optimizer::new(config).step(
        0.1,
        1.0,
        l.clone(),
        grads(&l, [1.0, 2.0], 0.5),
        &ConstantLr::default(),
    );
    let (w, _) = values(&scheduled);
    assert!(
        (w[0] - 2.9).abs() < 1e-6 && (w[1] - 3.8).abs() < 1e-6,
        "{w:?}"
    );
}

#[test]
fn sgd_momentum_has_no_dampening_and_decays_weights() {
    let device = Device::flex().autodiff();
    let mut opt = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 0.1,
        ..Default::default()
    });
    let mut l = layer(&device);
    // Step 1: g' = g + 0.1·w = (1.3, 1.4); v = g'; w ← w − 0.1·v.
    l = opt.step(
        0.1,
        0.1,
        l.clone(),
        grads(&l, [1.0, 1.0], 0.0),
        &ConstantLr::default(),
    );
    let (w1, _) = values(&l);
    assert!((w1[0] - (3.0 - 0.13)).abs() < 1e-6, "{w1:?}");
    // Step 2: v = 0.9·v + g'' with g'' = 1 + 0.1·w1.
    l = opt.step(
        0.1,
        0.1,
        l.clone(),
        grads(&l, [1.0, 1.0], 0.0),
        &ConstantLr::default(),
    );
    let (w2, _) = values(&l);
    let v = 0.9 * 1.3 + (1.0 + 0.1 * w1[0]);
    assert!((w2[0] - (w1[0] - 0.1 * v)).abs() < 1e-5, "{w2:?}");
}

#[test]
fn adamw_matches_pytorch_formula_and_spares_biases_from_decay() {
    let device = Device::flex().autodiff();
    let config = OptimizerConfig {
        kind: OptimizerKind::Adamw,
        weight_decay: 0.5,
        ..Default::default()
    };
    let mut opt = Optimizer::new(config);
    let mut l = layer(&device);
    let (lr, eps) = (0.1f64, 1e-8f64);
    let (mut w, mut b) = (3.0f64, 1.0f64);
    let (mut m, mut v, mut mb, mut vb) = (0.0, 0.0, 0.0, 0.0);
    for (t, (gw, gb)) in [(0.6, 0.5), (-0.2, 0.3), (1.5, -1.0)]
        .into_iter()
        .enumerate()
    {
        l = opt.step(
            lr,
            lr,
            l.clone(),
            grads(&l, [gw as f32, 0.0], gb as f32),
            &ConstantLr::default(),
        );
        let t = t as i32 + 1;
        m = 0.9 * m + 0.1 * gw;
        v = 0.999 * v + 0.001 * gw * gw;
        let step = (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + eps);
        w = w * (1.0 - lr * 0.5) - lr * step;
        mb = 0.9 * mb + 0.1 * gb;
        vb = 0.999 * vb + 0.001 * gb * gb;
        let step = (mb / (1.0 - 0.9f64.powi(t))) / ((vb / (1.0 - 0.999f64.powi(t))).sqrt() + eps);
        b -= lr * step;
        let (gotw, gotb) = values(&l);
        assert!(
            (gotw[0] as f64 - w).abs() < 1e-5,
            "step {t}: {gotw:?} vs {w}"
        );
        assert!(
            (gotb[0] as f64 - b).abs() < 1e-5,
            "step {t}: {gotb:?} vs {b}"
        );
    }
}

#[test]
fn clipping_caps_each_tensor_norm_and_weight_decay_follows_the_setter() {
    let device = Device::flex().autodiff();
    let mut opt = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.0,
        weight_decay: 0.0,
        clip_grad: 1.0,
        ..Default::default()
    });
    let l = layer(&device);
    // ‖(3, 4)‖ = 5 → scaled to (0.6, 0.8); the bias gradient 0.5 is under the cap, untouched.
    let l = opt.step(
        1.0,
        1.0,
        l.clone(),
        grads(&l, [3.0, 4.0], 0.5),
        &ConstantLr::default(),
    );
    let (w, b) = values(&l);
    assert!(
        (w[0] - 2.4).abs() < 1e-5 && (w[1] - 3.2).abs() < 1e-5,
        "{w:?}"
    );
    assert!((b[0] - 0.5).abs() < 1e-6, "{b:?}");
    // SGD decay λ·w enters the gradient: with λ = 0.5 and a zero gradient, w ← w − lr·0.5·w
    // (the clip applies to the raw gradient, before decay).
    opt.set_weight_decay(0.5);
    let l = opt.step(
        0.1,
        0.1,
        l.clone(),
        grads(&l, [0.0, 0.0], 0.0),
        &ConstantLr::default(),
    );
    let (w2, _) = values(&l);
    assert!((w2[0] - 2.4 * 0.95).abs() < 1e-5, "{w2:?}");
}

#[test]
fn state_round_trips_through_a_file() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adamw] {
        let device = Device::flex().autodiff();
        let config = OptimizerConfig {
            kind,
            ..Default::default()
        };
        let mut opt = Optimizer::new(config.clone());
        let l = layer(&device);
        let l = opt.step(
            0.1,
            0.1,
            l.clone(),
            grads(&l, [1.0, 2.0], 3.0),
            &ConstantLr::default(),
        );
        let dir = std::env::temp_dir().join(format!("selfsup-opt-{}-{kind:?}", std::process::id()));
        let path = dir.join("opt.safetensors");
        opt.save(&path).unwrap();
        let mut loaded = Optimizer::new(config);
        loaded.load(&path, &device).unwrap();
        assert_eq!(loaded.steps, 1);
        let a = opt.step(
            0.1,
            0.1,
            l.clone(),
            grads(&l, [1.0, 1.0], 1.0),
            &ConstantLr::default(),
        );
        let b = loaded.step(
            0.1,
            0.1,
            l.clone(),
            grads(&l, [1.0, 1.0], 1.0),
            &ConstantLr::default(),
        );
        assert_eq!(values(&a), values(&b));
        std::fs::remove_dir_all(dir).ok();
    }
}
