//! DINO, iBOT and DINOv2 steps on tiny networks.

use super::*;
use crate::method::NoRuns;
use crate::nn::backbone::ImageShape;
use crate::recipe::Overrides;
use crate::recipe::Recipe;
use burn::tensor::Device;

fn recipe(method: MethodName, sets: &[&str]) -> Recipe {
    Recipe::resolve(&Overrides {
        method: Some(method),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .unwrap()
}

const TINY: [&str; 7] = [
    "model.embed_dim=16",
    "model.depth=1",
    "model.heads=2",
    "method.projector=[16, 8]",
    "method.prototypes=12",
    "method.patch_prototypes=12",
    "train.epochs=4",
];

#[test]
fn teacher_temperature_warms_up_linearly_then_holds() {
    let mut sets = TINY.to_vec();
    sets.extend([
        "method.warmup_teacher_temperature=0.04",
        "method.teacher_temperature=0.08",
        "method.teacher_temperature_warmup_epochs=2",
    ]);
    let r = recipe(MethodName::Dino, &sets);
    let dino = r
        .init_method::<Dino>(
            ImageShape {
                channels: 1,
                side: 32,
            },
            &Device::flex(),
            &NoRuns,
        )
        .unwrap();
    let at = |step| dino.teacher_temperature(Progress::at(step, 40));
    // 4 epochs over 40 steps: epoch 1 (step 10) is half way through the warmup.
    assert!((at(0) - 0.04).abs() < 1e-12);
    assert!((at(10) - 0.06).abs() < 1e-12);
    assert!((at(20) - 0.08).abs() < 1e-12 && (at(39) - 0.08).abs() < 1e-12);
}

#[test]
fn a_step_moves_the_centre_towards_the_batch_mean_and_freezes_prototypes_at_first() {
    let device = Device::flex().autodiff();
    let r = recipe(MethodName::Dino, &TINY);
    let shape = ImageShape {
        channels: 1,
        side: 32,
    };
    let dino = r.init_method::<Dino>(shape, &device, &NoRuns).unwrap();
    let views: Vec<Tensor<4>> = [32, 32, 16, 16]
        .iter()
        .map(|&s| Tensor::random([4, 1, s, s], burn::tensor::Distribution::Default, &device))
        .collect();
    let progress = Progress::at(0, 40);
    let out = dino.step(&views, progress);
    let grads = out.loss.backward();
    // Epoch 0 < freeze_last_layer_epochs = 1: no gradient to the prototypes, but to the MLP.
    assert!(dino.student.head.last_layer.val().grad(&grads).is_none());
    assert!(dino.teacher.head.last_layer.val().grad(&grads).is_none());
    // The teacher's logits on the global crops, averaged, enter the centre with weight 0.1.
    let globals = Tensor::cat(views[..2].to_vec(), 0);
    let logits = dino
        .teacher
        .head
        .forward(dino.teacher.encoder.forward(globals));
    let want = crate::host::to_f32(logits.mean_dim(0).mul_scalar(0.1));
    let dino = dino.after_step(out.carry, progress);
    let got = crate::host::to_f32(dino.center.val());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn dinov2_logs_its_three_terms_and_trains_a_resnet_too() {
    let device = Device::flex().autodiff();
    let shape = ImageShape {
        channels: 1,
        side: 16,
    };
    let views: Vec<Tensor<4>> = [16, 16, 8]
        .iter()
        .map(|&s| Tensor::random([4, 1, s, s], burn::tensor::Distribution::Default, &device))
        .collect();
    let mut sets = TINY.to_vec();
    sets.extend(["model.patch_size=4", "method.mask_min_block=1"]);
    let v2 = recipe(MethodName::Dinov2, &sets)
        .init_method::<Dino>(shape, &device, &NoRuns)
        .unwrap();
    let out = v2.step(&views, Progress::at(0, 10));
    let names: Vec<&str> = out.terms.iter().map(|t| t.name).collect();
    assert_eq!(names, ["cls", "patch", "koleo"]);
    assert!(out.loss.into_scalar::<f32>().is_finite());
    let resnet = recipe(
        MethodName::Dino,
        &[
            "model.arch=resnet18",
            "model.width=4",
            "method.projector=[16, 8]",
        ],
    );
    let dino = resnet.init_method::<Dino>(shape, &device, &NoRuns).unwrap();
    let out = dino.step(&views, Progress::at(0, 10));
    assert!(out.terms.is_empty());
    assert!(out.loss.into_scalar::<f32>().is_finite());
}
