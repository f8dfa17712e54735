//! The GPU path (burn's Vulkan backend, the `gpu` feature) against flex on the CPU, runnable
//! without a GPU through Mesa's software Vulkan (lavapipe): one training step of every method
//! on ResNet and ViT, every custom kernel's reference body, and `train` / `eval` / `diagnose`
//! end to end with `--device gpu`.
//!
//! scripts/gpu_cargo.sh test --release --test gpu -- --nocapture   (README, "GPU")
//!
//! One process for all of it: compiling shaders dominates the time, and the compiled kernels are
//! shared by every test in the process.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Gradients;
use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfsup::host::{named_values, to_f32};
use selfsup::method::vq_tokenizer::VqTokenizer;
use selfsup::method::{Method, MethodName, NoRuns, Progress, RunSource};
use selfsup::nn::backbone::ImageShape;
use selfsup::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use selfsup::recipe::{Overrides, Recipe};

use std::path::{Path, PathBuf};

use common::{json, path, run, scratch};

/// Largest difference allowed between the GPU and flex, relative to the largest magnitude of the
/// compared tensor. Both compute in f32 with different summation orders (GEMM tiling, tree vs
/// running sums), each op's relative error is ~1e-6; a step composes dozens of ops, and batch
/// norm over 8 samples, l2 normalisation and softmax at temperature 0.1 (contrastive, DINO's
/// 0.04) amplify it tens of times. A real fault — a wrong index, a wrong shared-memory pointer,
/// a dropped term — shows up as an O(1) difference.
const TOLERANCE: f32 = 2e-3;

/// One operation: f32 rounding in a different order, ~1e-7 relative (measured up to 5e-7).
/// burn's own GELU backward on the GPU, the tanh approximation's derivative, was 7.6e-4 off.
const KERNEL_TOLERANCE: f32 = 1e-5;

const BATCH: usize = 8;

fn gpu_device() -> Device {
    Device::vulkan(DeviceKind::DefaultDevice)
}

fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// `|a − b|∞ / max(|b|∞, 1e-6)`.
fn rel_diff(gpu: &[f32], cpu: &[f32]) -> f32 {
    rel_diff_floor(gpu, cpu, 1e-6)
}

/// `|a − b|∞ / max(|b|∞, floor)`.
fn rel_diff_floor(gpu: &[f32], cpu: &[f32], floor: f32) -> f32 {
    assert_eq!(gpu.len(), cpu.len());
    let scale = max_abs(cpu).max(floor);
    let diff = gpu
        .iter()
        .zip(cpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    if gpu.iter().any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    diff / scale
}

/// The largest relative difference over paired named tensors, and where it is. Each tensor is
/// measured against its own largest magnitude, but never less than 1e-3 of the largest over all
/// of them: some are zero up to rounding by construction (the gradient of a bias that feeds a
/// BatchNorm, which subtracts it again), and their rounding noise has no scale of its own.
fn worst(gpu: &[(String, Vec<f32>)], cpu: &[(String, Vec<f32>)]) -> (f32, String) {
    assert_eq!(
        gpu.len(),
        cpu.len(),
        "the two modules have different tensors"
    );
    let floor = 1e-3 * cpu.iter().fold(0f32, |m, (_, c)| m.max(max_abs(c)));
    let mut out = (0f32, String::new());
    for ((name, g), (name_c, c)) in gpu.iter().zip(cpu) {
        assert_eq!(name, name_c);
        let d = rel_diff_floor(g, c, floor.max(1e-6));
        if d >= out.0 {
            out = (d, name.clone());
        }
    }
    out
}

/// Every float parameter's gradient by its path (parameters without one are skipped: frozen
/// teachers, the BEiT tokenizer).
fn named_grads<M: Module>(module: &M, grads: &Gradients) -> Vec<(String, Vec<f32>)> {
    struct Visit<'a> {
        grads: &'a Gradients,
        path: Vec<String>,
        out: Vec<(String, Vec<f32>)>,
    }
    impl ModuleVisitor for Visit<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = param.val().grad(self.grads) {
                self.out.push((self.path.join("."), to_f32(grad)));
            }
        }
    }
    let mut visit = Visit {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut visit);
    visit.out
}

/// What one training step gives on one device.
struct Stepped {
    loss: Vec<f32>,
    embeddings: Vec<f32>,
    grads: Vec<(String, Vec<f32>)>,
    /// Every float tensor after the optimizer update and the method's after-step work (EMA
    /// teacher, queue, running statistics).
    after: Vec<(String, Vec<f32>)>,
}

/// One step as the trainer takes it: loss, gradients, AdamW/SGD update, after-step.
fn step<M: Method>(
    method: M,
    views: &[(Vec<f32>, usize)],
    recipe: &Recipe,
    device: &Device,
) -> Stepped {
    let tensors: Vec<Tensor<4>> = views
        .iter()
        .map(|(v, side)| {
            Tensor::from_data(TensorData::new(v.clone(), [BATCH, 1, *side, *side]), device)
        })
        .collect();
    let progress = Progress::at(3, 10);
    let out = method.step(&tensors, progress);
    let loss = to_f32(out.loss.clone());
    let embeddings = to_f32(out.embeddings.clone());
    let backward = out.loss.backward();
    let grads = named_grads(&method, &backward);
    let params = GradientsParams::from_grads(backward, &method);
    let constant_lr = method.constant_lr();
    // SGD with momentum and weight decay rather than the recipe's AdamW / LARS: their first
    // step is ±lr by the gradient's sign, so a gradient that is zero up to rounding (see
    // `worst`) would move by ±lr on each device at random.
    let sgd = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 1e-4,
        ..recipe.optim.clone()
    };
    let lr = 0.05;
    let method = Optimizer::new(sgd).step(lr, lr, method, params, &constant_lr);
    let method = method.after_step(out.carry, progress);
    Stepped {
        loss,
        embeddings,
        grads,
        after: named_values(&method),
    }
}

/// Random views of the recipe's shapes (global crops, then local crops), the same on both devices.
fn views(recipe: &Recipe, side: usize, seed: u64) -> Vec<(Vec<f32>, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..recipe.augment.num_views())
        .map(|view| {
            let s = recipe.augment.view_side(view, side);
            let pixels = (0..BATCH * s * s)
                .map(|_| rng.random::<f32>() * 2.0 - 1.0)
                .collect();
            (pixels, s)
        })
        .collect()
}

const RESNET: &[&str] = &["model.width=4"];
const VIT: &[&str] = &["model.depth=2", "model.embed_dim=32", "model.heads=2"];
/// A joint-embedding recipe's ResNet swapped for a small ViT on its 28-px images.
const TO_VIT: &[&str] = &[
    "model.arch=\"vit\"",
    "model.patch_size=7",
    "model.depth=2",
    "model.embed_dim=32",
    "model.heads=2",
];

fn recipe(method: MethodName, sets: &[&str]) -> Recipe {
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    if method == MethodName::Dinov2 {
        // Stochastic depth draws on the device: different draws on the two devices.
        sets.push("model.drop_path=0.0".into());
    }
    if method == MethodName::Beit {
        sets.push("method.tokenizer=\"in-memory\"".into());
    }
    Recipe::resolve(&Overrides {
        method: Some(method),
        sets,
        ..Overrides::default()
    })
    .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// BEiT's tokenizer, freshly initialised (its codes are as good a target as any for parity).
struct FreshTokenizer;

impl RunSource for FreshTokenizer {
    fn tokenizer(
        &self,
        _path: &std::path::Path,
        shape: ImageShape,
        device: &Device,
    ) -> selfsup::Result<VqTokenizer> {
        recipe(MethodName::VqTokenizer, VIT).init_method::<VqTokenizer>(shape, device, &NoRuns)
    }
}

struct Parity {
    case: String,
    /// How far the CPU's own gradients move (by `worst`, the largest of three nudges) when the
    /// input moves by 1e-5 relative; and by `l2_diff`, gradients and updated tensors.
    sensitivity: f32,
    spread_l2: f32,
    spread_after_l2: f32,
    /// `‖gpu − cpu‖₂ / ‖cpu‖₂` over all gradients, and over all tensors after the update.
    grads_l2: f32,
    after_l2: f32,
    loss: f32,
    embeddings: f32,
    grads: (f32, String),
    after: (f32, String),
    tensors: usize,
}

/// `views` with every pixel multiplied by 1 + `eps` or 1 − `eps` at random (`seed`).
fn nudge(views: &[(Vec<f32>, usize)], eps: f32, seed: u64) -> Vec<(Vec<f32>, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    views
        .iter()
        .map(|(v, side)| {
            let v = v
                .iter()
                .map(|x| {
                    x * if rng.random::<bool>() {
                        1.0 + eps
                    } else {
                        1.0 - eps
                    }
                })
                .collect();
            (v, *side)
        })
        .collect()
}

/// `‖gpu − cpu‖₂ / ‖cpu‖₂` over all the named tensors together.
fn l2_diff(gpu: &[(String, Vec<f32>)], cpu: &[(String, Vec<f32>)]) -> f32 {
    let (mut diff, mut norm) = (0f64, 0f64);
    for ((_, g), (_, c)) in gpu.iter().zip(cpu) {
        for (a, b) in g.iter().zip(c) {
            diff += ((a - b) as f64).powi(2);
            norm += (*b as f64).powi(2);
        }
    }
    (diff.sqrt() / norm.sqrt().max(1e-30)) as f32
}

/// A step's gradient is smooth in its input for GELU networks, but only piecewise smooth for
/// ReLU ones: an activation within ~1e-5 of a ReLU's kink takes either branch depending on
/// rounding. The two devices' forward passes differ by ~1e-6–1e-5 (flex's Winograd and blocked
/// GEMMs against the GPU's direct kernels), so at such a point they take different branches and
/// single tensors of a small ResNet's gradient differ by several percent — as much as the CPU
/// moves on its own when the input is nudged by 1e-5 (measured 0.3–11% for SimCLR and BYOL at
/// seeds 5–8, where each device reproduces itself within 2e-5 with the batch reversed). Each
/// case therefore reports that sensitivity: where it is below the tolerance the step is smooth
/// and every tensor must agree; where it is not, the gradient as a whole (`l2_diff`) must agree
/// within the tolerance or within twice the CPU's own spread, whichever is larger. A fault in an
/// operation is still caught there by the smooth cases that use it and by the kernel checks.
fn parity<M: Method>(method: MethodName, arch: &str, sets: &[&str]) -> Parity {
    let recipe = recipe(method, sets);
    let side = recipe.image_size().unwrap_or(28);
    let shape = ImageShape { channels: 1, side };
    let cpu = Device::flex().autodiff();
    let init = || {
        recipe
            .init_method::<M>(shape, &cpu, &FreshTokenizer)
            .unwrap()
    };
    cpu.seed(5);
    let start = init();
    // Copies loaded from the start's values, not clones: a clone shares BatchNorm's running
    // statistics (one `Arc`), which moving it to the GPU would move for both.
    let copy = || init().load_record(start.clone().into_record());
    let views = views(&recipe, side, 11);
    let c = step(copy(), &views, &recipe, &cpu);
    let g = step(
        copy().fork(&gpu_device().autodiff()),
        &views,
        &recipe,
        &gpu_device().autodiff(),
    );
    // The CPU's own spread: three nudges of the input by 1e-5.
    let nudged: Vec<Stepped> = (0..3)
        .map(|k| step(copy(), &nudge(&views, 1e-5, k), &recipe, &cpu))
        .collect();
    let spread = |f: &dyn Fn(&Stepped) -> f32| nudged.iter().map(f).fold(0f32, f32::max);
    let names = |s: &Stepped| s.grads.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&g),
        names(&c),
        "{method}: gradients of different parameters"
    );
    assert!(!c.grads.is_empty(), "{method}: no gradients");
    Parity {
        case: format!("{method} / {arch}"),
        sensitivity: spread(&|n| worst(&n.grads, &c.grads).0),
        spread_l2: spread(&|n| l2_diff(&n.grads, &c.grads)),
        spread_after_l2: spread(&|n| l2_diff(&n.after, &c.after)),
        grads_l2: l2_diff(&g.grads, &c.grads),
        after_l2: l2_diff(&g.after, &c.after),
        loss: rel_diff(&g.loss, &c.loss),
        embeddings: rel_diff(&g.embeddings, &c.embeddings),
        grads: worst(&g.grads, &c.grads),
        after: worst(&g.after, &c.after),
        tensors: c.grads.len(),
    }
}

/// One step of every method (and of DINO on ResNet, SimCLR on ViT) on both devices.
fn methods_match_flex(failures: &mut Vec<String>) {
    use MethodName as N;
    let mut rows = vec![
        parity::<selfsup::method::SimClr>(N::Simclr, "ResNet", RESNET),
        parity::<selfsup::method::SimClr>(N::Simclr, "ViT", TO_VIT),
        parity::<selfsup::method::Moco>(N::MocoV1, "ResNet", RESNET),
        parity::<selfsup::method::Moco>(N::MocoV2, "ResNet", RESNET),
        parity::<selfsup::method::MocoV3>(N::MocoV3, "ViT", TO_VIT),
        parity::<selfsup::method::Byol>(N::Byol, "ResNet", RESNET),
        parity::<selfsup::method::SimSiam>(N::Simsiam, "ResNet", RESNET),
        parity::<selfsup::method::BarlowTwins>(N::BarlowTwins, "ResNet", RESNET),
        parity::<selfsup::method::VicReg>(N::Vicreg, "ViT", TO_VIT),
        parity::<selfsup::method::Mae>(N::Mae, "ViT", VIT),
        parity::<selfsup::method::SimMim>(N::Simmim, "ViT", VIT),
        parity::<selfsup::method::Beit>(N::Beit, "ViT", VIT),
        parity::<VqTokenizer>(N::VqTokenizer, "ViT", VIT),
        parity::<selfsup::method::Dino>(N::Dino, "ViT", VIT),
        parity::<selfsup::method::Dino>(
            N::Dino,
            "ResNet",
            &["model.arch=\"resnet18\"", "model.width=4"],
        ),
        parity::<selfsup::method::Dino>(N::Ibot, "ViT", VIT),
        parity::<selfsup::method::Dino>(N::Dinov2, "ViT", VIT),
    ];
    rows.sort_by(|a, b| a.case.cmp(&b.case));
    eprintln!(
        "\n| step | CPU's own spread: worst tensor, all | loss | embeddings | gradients: all (worst tensor of N) | after update: all (worst tensor) |"
    );
    eprintln!("|---|---:|---:|---:|---|---|");
    for r in &rows {
        eprintln!(
            "| {} | {:.1e}, {:.1e} | {:.1e} | {:.1e} | {:.1e} ({:.1e} `{}` of {}) | {:.1e} ({:.1e} `{}`) |",
            r.case,
            r.sensitivity,
            r.spread_l2,
            r.loss,
            r.embeddings,
            r.grads_l2,
            r.grads.0,
            r.grads.1,
            r.tensors,
            r.after_l2,
            r.after.0,
            r.after.1
        );
    }
    for r in &rows {
        let smooth = r.sensitivity <= TOLERANCE;
        let mut checks = vec![
            ("loss", r.loss, TOLERANCE),
            ("embeddings", r.embeddings, TOLERANCE),
            (
                "gradients (all)",
                r.grads_l2,
                TOLERANCE.max(2.0 * r.spread_l2),
            ),
            (
                "updated tensors (all)",
                r.after_l2,
                TOLERANCE.max(2.0 * r.spread_after_l2),
            ),
        ];
        if smooth {
            checks.push(("gradients (worst tensor)", r.grads.0, TOLERANCE));
            checks.push(("updated tensors (worst tensor)", r.after.0, TOLERANCE));
        }
        for (what, d, limit) in checks {
            if d.is_nan() || d > limit {
                failures.push(format!(
                    "{}: {what} differ by {d:.2e} relative (limit {limit:.1e}; the CPU's own spread {:.1e})",
                    r.case, r.spread_l2
                ));
            }
        }
    }
}

/// A host tensor of `shape` with values in [-1, 1).
fn host<const D: usize>(rng: &mut ChaCha8Rng, shape: [usize; D]) -> TensorData {
    let n = shape.iter().product();
    TensorData::new(
        (0..n)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect::<Vec<_>>(),
        shape,
    )
}

/// Output and input gradients of a custom kernel on one device: the inputs are tracked, the
/// loss is `Σ out · probe` for a fixed random `probe`, so every output element's gradient path
/// is exercised with a different weight.
struct KernelRun {
    out: Vec<f32>,
    grads: Vec<(String, Vec<f32>)>,
}

fn kernel_run<const D: usize, const O: usize>(
    device: &Device,
    inputs: &[(&str, TensorData)],
    probe: &TensorData,
    f: impl Fn(&[Tensor<D>]) -> Tensor<O>,
) -> KernelRun {
    let tracked: Vec<Tensor<D>> = inputs
        .iter()
        .map(|(_, data)| Tensor::<D>::from_data(data.clone(), device).require_grad())
        .collect();
    let out = f(&tracked);
    let loss = (out.clone() * Tensor::<O>::from_data(probe.clone(), device)).sum();
    let grads = loss.backward();
    KernelRun {
        out: to_f32(out),
        grads: inputs
            .iter()
            .zip(&tracked)
            .filter_map(|((name, _), t)| t.grad(&grads).map(|g| (name.to_string(), to_f32(g))))
            .collect(),
    }
}

fn compare_kernel<const D: usize, const O: usize>(
    name: &str,
    inputs: &[(&str, TensorData)],
    probe_shape: [usize; O],
    f: impl Fn(&[Tensor<D>]) -> Tensor<O>,
) -> (String, f32, f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let probe = host(&mut rng, probe_shape);
    let c = kernel_run(&Device::flex().autodiff(), inputs, &probe, &f);
    let g = kernel_run(&gpu_device().autodiff(), inputs, &probe, &f);
    assert_eq!(
        c.grads.len(),
        inputs.len(),
        "{name}: an input got no gradient"
    );
    let out = rel_diff(&g.out, &c.out);
    let (grad, _) = worst(&g.grads, &c.grads);
    (name.to_string(), out, grad)
}

/// `kernels::conv2d` of random `x` and `weight` with a square stride and padding.
fn conv(
    name: &str,
    rng: &mut ChaCha8Rng,
    x: [usize; 4],
    weight: [usize; 4],
    stride: usize,
    pad: usize,
) -> (String, f32, f32) {
    let side = (x[2] + 2 * pad - weight[2]) / stride + 1;
    let options = burn::tensor::ops::ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
    compare_kernel::<4, 4>(
        name,
        &[("x", host(rng, x)), ("weight", host(rng, weight))],
        [x[0], weight[0], side, side],
        |t| selfsup::kernels::conv2d(t[0].clone(), t[1].clone(), None, options.clone()),
    )
}

/// Every custom kernel: flex's fast version against the trait's reference body on the GPU.
fn kernels_match_flex(failures: &mut Vec<String>) {
    use selfsup::kernels;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rows = vec![
        conv(
            "conv2d 3×3 stride 2 pad 1",
            &mut rng,
            [4, 6, 9, 9],
            [5, 6, 3, 3],
            2,
            1,
        ),
        conv("conv2d 1×1", &mut rng, [4, 8, 6, 6], [3, 8, 1, 1], 1, 0),
        conv(
            "conv2d 3×3 stride 1 (Winograd on flex)",
            &mut rng,
            [2, 4, 12, 12],
            [8, 4, 3, 3],
            1,
            1,
        ),
        compare_kernel::<4, 4>(
            "batch norm + ReLU (training)",
            &[("x", host(&mut rng, [6, 5, 4, 4]))],
            [6, 5, 4, 4],
            |t| {
                let layer = burn::nn::BatchNormConfig::new(5).init(&t[0].device());
                kernels::batch_norm_layer(&layer, t[0].clone(), true)
            },
        ),
        compare_kernel::<3, 3>(
            "GELU (erf)",
            &[("x", host(&mut rng, [3, 7, 16]).convert::<f32>())],
            [3, 7, 16],
            |t| kernels::gelu(t[0].clone().mul_scalar(3.0)),
        ),
        compare_kernel::<3, 3>(
            "LayerNorm",
            &[("x", host(&mut rng, [3, 7, 16]))],
            [3, 7, 16],
            |t| {
                let d = t[0].device();
                let gamma =
                    Tensor::<1>::from_data(host(&mut ChaCha8Rng::seed_from_u64(8), [16]), &d);
                let beta =
                    Tensor::<1>::from_data(host(&mut ChaCha8Rng::seed_from_u64(9), [16]), &d);
                kernels::layer_norm(t[0].clone(), gamma, beta, 1e-6)
            },
        ),
        compare_kernel::<3, 3>(
            "multi-head attention",
            &[("qkv", host(&mut rng, [2, 9, 3 * 16]))],
            [2, 9, 16],
            |t| kernels::multi_head_attention(t[0].clone().mul_scalar(2.0), 4),
        ),
    ];
    // Linear with bias: its weight and bias are parameters, not inputs of one rank.
    let linear = {
        let layer_cpu = burn::nn::LinearConfig::new(16, 12).init(&Device::flex().autodiff());
        let x = host(&mut rng, [5, 3, 16]);
        let probe = host(&mut rng, [5, 3, 12]);
        let run = |layer: burn::nn::Linear, device: &Device| {
            let x = Tensor::<3>::from_data(x.clone(), device).require_grad();
            let out = kernels::linear_layer(&layer, x.clone());
            let grads = (out.clone() * Tensor::<3>::from_data(probe.clone(), device))
                .sum()
                .backward();
            let mut all = named_grads(&layer, &grads);
            all.push(("x".into(), to_f32(x.grad(&grads).unwrap())));
            (to_f32(out), all)
        };
        let (out_g, grads_g) = run(
            layer_cpu.clone().fork(&gpu_device().autodiff()),
            &gpu_device().autodiff(),
        );
        let (out_c, grads_c) = run(layer_cpu, &Device::flex().autodiff());
        assert_eq!(grads_c.len(), 3);
        (
            "linear + bias".to_string(),
            rel_diff(&out_g, &out_c),
            worst(&grads_g, &grads_c).0,
        )
    };
    eprintln!("\n| kernel | output | gradients |\n|---|---:|---:|");
    for (name, out, grad) in rows.iter().chain(std::iter::once(&linear)) {
        eprintln!("| {name} | {out:.1e} | {grad:.1e} |");
        if !(*out <= KERNEL_TOLERANCE && *grad <= KERNEL_TOLERANCE) {
            failures.push(format!(
                "{name}: output {out:.2e}, gradients {grad:.2e} relative (tolerance {KERNEL_TOLERANCE:.0e})"
            ));
        }
    }
}

/// `selfsup train`, `eval` and `diagnose` with `--device gpu` on the bundled subset, and the same
/// evaluation of the same encoder on the CPU; each GPU command logs its kernels to `logs`.
fn cli_end_to_end(dir: &Path, logs: &mut Vec<PathBuf>) {
    let out = dir.join("run");
    let mut gpu_run = |args: &[&str]| {
        let log = dir.join(format!("kernels-{}.log", logs.len()));
        let output = common::bin()
            .args(args)
            .env("CUBECL_DEBUG_LOG", &log)
            .output()
            .expect("selfsup runs");
        logs.push(log);
        json(&output)
    };
    let trained = gpu_run(&[
        "train",
        "--method",
        "simclr",
        "--device",
        "gpu",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        path(&out),
        "--json",
        "--no-eval",
        "--set",
        "model.width=4",
        "--set",
        "data.max_images=256",
        "--set",
        "eval.max_train=500",
        "--set",
        "eval.max_test=200",
        "--set",
        "eval.linear_epochs=3",
    ]);
    assert_eq!(trained["train"]["steps"].as_u64(), Some(8), "{trained}");
    let loss = trained["train"]["final_loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{trained}");

    let eval = ["eval", "--run", path(&out), "--json", "--device"];
    let on_gpu = gpu_run(&[&eval[..], &["gpu"]].concat());
    let on_cpu = json(&run(&[&eval[..], &["cpu"]].concat()));
    for key in ["knn_top1", "linear_top1"] {
        let (g, c) = (on_gpu[key].as_f64().unwrap(), on_cpu[key].as_f64().unwrap());
        eprintln!("eval {key}: gpu {g:.4}, cpu {c:.4}");
        // Features agree to ~1e-5; a vote or a probe's argmax may still flip on a near tie.
        assert!(
            (g - c).abs() <= 0.02,
            "{key}: gpu {g} vs cpu {c}\n{on_gpu}\n{on_cpu}"
        );
    }

    let diagnose = [
        "diagnose",
        "--run",
        path(&out),
        "--samples",
        "500",
        "--json",
        "--device",
    ];
    let d_gpu = gpu_run(&[&diagnose[..], &["gpu"]].concat());
    let d_cpu = json(&run(&[&diagnose[..], &["cpu"]].concat()));
    eprintln!("diagnose: gpu {d_gpu}\ncpu {d_cpu}");
    assert_eq!(d_gpu["verdict"], d_cpu["verdict"]);
    for key in ["embedding_std", "effective_rank"] {
        let (g, c) = (d_gpu[key].as_f64().unwrap(), d_cpu[key].as_f64().unwrap());
        assert!(
            (g - c).abs() <= 1e-3 * c.abs().max(1.0),
            "{key}: gpu {g} vs cpu {c}"
        );
    }
}

/// The SPIR-V modules CubeCL compiled, from its compilation log (`CUBECL_DEBUG_LOG`): each
/// kernel's name and disassembly (the only form in which burn lets the SPIR-V out).
fn logged_modules(log: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e} (CUBECL_DEBUG_LOG wrote nothing)", log.display()));
    text.split("[START_KERNEL_COMPILATION]")
        .filter_map(|entry| {
            let name = entry.lines().find_map(|l| l.strip_prefix("name: "))?;
            let (_, rest) = entry.split_once("```spirv\n")?;
            let (asm, _) = rest.split_once("```")?;
            Some((name.to_string(), asm.to_string()))
        })
        .collect()
}

/// `spirv-as` then `spirv-val` (Debian's spirv-tools) for Vulkan 1.3, lavapipe's version.
fn spirv_val(asm: &str, dir: &Path) -> Result<(), String> {
    let (src, bin) = (dir.join("module.spvasm"), dir.join("module.spv"));
    std::fs::write(&src, asm).unwrap();
    let tool = |name: &str, args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}; install spirv-tools (README, GPU)"));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let env = std::ffi::OsStr::new("--target-env");
    let vulkan = std::ffi::OsStr::new("vulkan1.3");
    tool(
        "spirv-as",
        &[env, vulkan, src.as_os_str(), "-o".as_ref(), bin.as_os_str()],
    )?;
    tool("spirv-val", &[env, vulkan, bin.as_os_str()])
}

/// Validates every logged module; returns how many there were.
fn validate_modules(logs: &[PathBuf], dir: &Path, failures: &mut Vec<String>) -> usize {
    let mut seen = std::collections::HashSet::new();
    for log in logs {
        for (name, asm) in logged_modules(log) {
            if seen.insert(asm.clone()) {
                if let Err(e) = spirv_val(&asm, dir) {
                    failures.push(format!("SPIR-V of {name} is invalid: {e}"));
                }
            }
        }
    }
    seen.len()
}

/// The validation would catch the bug the patch fixes: a module whose workgroup variable is
/// declared with the pointee type instead of the pointer type is rejected.
fn validator_rejects_swapped_shared_memory_types(logs: &[PathBuf], dir: &Path) {
    let modules: Vec<(String, String)> = logs.iter().flat_map(|l| logged_modules(l)).collect();
    let (name, asm) = modules
        .iter()
        .find(|(_, asm)| asm.contains(" Workgroup\n") && asm.contains("OpTypePointer Workgroup"))
        .expect("some kernel uses shared memory");
    spirv_val(asm, dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    // `%v = OpVariable %ptr Workgroup` with `%ptr = OpTypePointer Workgroup %t`: declare it `%t`.
    let pointers: std::collections::HashMap<&str, &str> = asm
        .lines()
        .filter_map(|l| {
            let (id, def) = l.split_once(" = OpTypePointer Workgroup ")?;
            Some((id.trim(), def.trim()))
        })
        .collect();
    let broken: String = asm
        .lines()
        .map(|l| match l.split_once(" = OpVariable ") {
            Some((id, rest)) if rest.trim_end().ends_with("Workgroup") => {
                let ptr = rest.split_whitespace().next().unwrap();
                format!("{id} = OpVariable {} Workgroup\n", pointers[ptr])
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert_ne!(&broken, asm);
    assert!(
        spirv_val(&broken, dir).is_err(),
        "{name}: the broken module passed spirv-val"
    );
}

/// Everything in one test, in order: the process's compiled kernels are reused by each part,
/// and `CUBECL_DEBUG_LOG` is set before any thread of the process reads the environment.
#[test]
fn the_gpu_path_matches_the_cpu() {
    let dir = scratch("gpu");
    let in_process_log = dir.join("kernels-in-process.log");
    // SAFETY: set before the first GPU use (CubeCL reads it once) while this test is the only
    // one in the binary, so no other thread reads the environment concurrently.
    unsafe { std::env::set_var("CUBECL_DEBUG_LOG", &in_process_log) };
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    kernels_match_flex(&mut failures);
    eprintln!("kernels: {:.0} s", started.elapsed().as_secs_f64());
    methods_match_flex(&mut failures);
    eprintln!("methods: {:.0} s", started.elapsed().as_secs_f64());
    let mut logs = vec![in_process_log];
    cli_end_to_end(&dir, &mut logs);
    eprintln!(
        "train / eval / diagnose: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let modules = validate_modules(&logs, &dir, &mut failures);
    eprintln!(
        "spirv-val: {modules} distinct modules, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    validator_rejects_swapped_shared_memory_types(&logs, &dir);
    assert!(modules > 50, "only {modules} SPIR-V modules logged");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
