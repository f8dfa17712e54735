//! Self-distillation with no labels: DINO (Caron et al. 2021), iBOT (Zhou et al. 2021) and DINOv2
//! (Oquab et al. 2023). A student matches an EMA teacher's sharpened distribution over learned
//! prototypes across crops: the teacher sees the two global crops, the student every crop.
//! One type covers the three; the recipe switches on what each paper adds to DINO:
//! - iBOT: masked patch-token distillation (`method.patch_loss_weight`) through the shared head;
//! - DINOv2: an untied patch head, Sinkhorn-Knopp instead of the EMA centre, the KoLeo term.

mod config;
mod network;

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;

pub use config::{Centering, DinoConfig};
pub use network::Network;

use super::{
    About, Build, Distributions, LossTerm, Method, MethodName, Needs, Pass, Progress, Signal,
    StepCost, StepOutput, mim,
};
use crate::augment::mask::blockwise;
use crate::loss::{
    centered_teacher, dino_loss, ibot_patch_loss, koleo, masked_patch_rows, sinkhorn_knopp,
    update_center,
};
use crate::nn::{Backbone, ModelConfig};
use crate::teacher::{copy_into, cosine_momentum, ema_update};

/// DINOv2's Sinkhorn-Knopp iterations.
const SINKHORN_ITERATIONS: usize = 3;
/// DINOv2's KoLeo ε.
const KOLEO_EPS: f64 = 1e-8;

#[derive(Module, Debug)]
pub struct Dino {
    pub student: Network,
    /// EMA of the student; never receives gradients, and runs without stochastic depth.
    pub teacher: Network,
    /// EMA of the teacher's batch-mean [CLS] logits `[1, K]`, subtracted before sharpening.
    pub center: Param<Tensor<2>>,
    /// The same for the patch logits `[1, K_patch]` (iBOT).
    pub patch_center: Param<Tensor<2>>,
    student_temperature: f64,
    teacher_temperature: f64,
    warmup_teacher_temperature: f64,
    teacher_warmup_epochs: f64,
    /// DINOv2: Sinkhorn-Knopp targets instead of the EMA centre.
    sinkhorn: bool,
    /// The EMA centre follows the batch means (with `centering = "none"` it stays at zero).
    centred: bool,
    center_momentum: f64,
    freeze_last_layer_epochs: f64,
    patch_loss_weight: f64,
    mask_ratio_min: f64,
    mask_ratio_max: f64,
    mask_probability: f64,
    mask_min_block: usize,
    koleo_weight: f64,
    base_momentum: f64,
    epochs: usize,
    seed: u64,
}

/// The new centres, applied after the optimizer step.
pub struct Centres {
    center: Tensor<2>,
    patch_center: Option<Tensor<2>>,
}

impl Dino {
    fn epoch(&self, progress: Progress) -> f64 {
        progress.step as f64 * self.epochs as f64 / progress.total_steps.max(1) as f64
    }

    /// τ_t, raised linearly from the warmup value over the warmup epochs, then constant.
    pub fn teacher_temperature(&self, progress: Progress) -> f64 {
        let epoch = self.epoch(progress);
        if epoch >= self.teacher_warmup_epochs {
            return self.teacher_temperature;
        }
        let t = epoch / self.teacher_warmup_epochs;
        self.warmup_teacher_temperature
            + (self.teacher_temperature - self.warmup_teacher_temperature) * t
    }

    /// The teacher's targets from its logits (without centring the centre stays at zero, so this
    /// is sharpening alone).
    fn targets(&self, logits: Tensor<2>, center: Tensor<2>, temperature: f64) -> Tensor<2> {
        if self.sinkhorn {
            sinkhorn_knopp(logits, temperature, SINKHORN_ITERATIONS)
        } else {
            centered_teacher(logits, center, temperature)
        }
    }

    /// What the teacher's outputs say before any balancing: Sinkhorn-Knopp forces a balanced batch
    /// by construction, so monitoring looks at the plain sharpened softmax instead.
    fn monitored_targets(&self, logits: Tensor<2>, center: Tensor<2>, t: f64) -> Tensor<2> {
        if self.sinkhorn {
            softmax(logits.div_scalar(t), 1).detach()
        } else {
            self.targets(logits, center, t)
        }
    }

    /// iBOT's masks for `images` crops of a `grid × grid` patch grid: with probability
    /// `mask_probability` a block-wise mask with a ratio drawn in [min, max], else none.
    fn masks(&self, images: usize, grid: usize, step: usize) -> Vec<Vec<bool>> {
        let mut rng = mim::mask_rng(self.seed, step);
        (0..images)
            .map(|_| {
                if rng.random_bool(self.mask_probability) {
                    let ratio = rng.random_range(self.mask_ratio_min..=self.mask_ratio_max);
                    blockwise(&mut rng, grid, ratio, self.mask_min_block)
                } else {
                    vec![false; grid * grid]
                }
            })
            .collect()
    }

    /// iBOT's masked patch loss: per image the mean over its masked patches of the cross-entropy
    /// between teacher and student patch distributions, averaged over every global crop (unmasked
    /// ones count as 0, as in the paper's code). Returns it with the new patch centre, or `None`
    /// when no patch is masked.
    fn patch_loss(
        &self,
        teacher: Tensor<3>,
        student: Tensor<3>,
        masks: &[Vec<bool>],
        temperature: f64,
        frozen: bool,
    ) -> Option<(Tensor<1>, Tensor<2>)> {
        let [n, p, d] = teacher.dims();
        let (rows, weights) = masked_patch_rows(masks, p);
        if rows.is_empty() {
            return None;
        }
        let device = teacher.device();
        let m = rows.len();
        let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [m]), &device);
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [m, 1]), &device);
        let pick = |tokens: Tensor<3>| tokens.reshape([n * p, d]).select(0, index.clone());
        let t_logits = self.teacher.patch_head().forward(pick(teacher)).detach();
        let center = self.patch_center.val().detach();
        let targets = self.targets(t_logits.clone(), center.clone(), temperature);
        let head = self.student.patch_head();
        let s_logits = head.logits(head.bottleneck(pick(student)), frozen);
        let loss = ibot_patch_loss(targets, s_logits, self.student_temperature, weights);
        Some((loss, update_center(center, t_logits, self.center_momentum)))
    }
}

impl Method for Dino {
    type Config = DinoConfig;
    type Carry = Centres;
    const NEEDS: Needs = Needs {
        vit: false,
        global_views: 2,
        local_crops: true,
    };
    /// The bottleneck of a ViT's [CLS] carries an offset every image shares at first.
    const CENTRED_DIAGNOSTICS: bool = true;

    fn about(name: MethodName) -> About {
        let (title, prevents_collapse) = match name {
            MethodName::Ibot => ("iBOT", "DINO + masked patch-token distillation"),
            MethodName::Dinov2 => ("DINOv2", "DINO + iBOT, Sinkhorn-Knopp centering, KoLeo"),
            _ => ("DINO", "EMA teacher + centering + sharpening"),
        };
        About {
            title,
            family: "self-distillation",
            prevents_collapse,
            negatives: false,
        }
    }

    fn collapse_hint(config: &DinoConfig) -> &'static str {
        if config.centering == Centering::None {
            "method.centering = \"none\" leaves only sharpening, which collapses onto one prototype: use \"ema\" (DINO, iBOT) or \"sinkhorn\" (DINOv2)."
        } else {
            "Check the teacher temperature (method.teacher_temperature, too high flattens the targets), method.base_momentum and the learning rate."
        }
    }

    fn init(m: &DinoConfig, build: &Build) -> crate::error::Result<Self> {
        let (shape, device) = (build.shape, build.device);
        let student = Network::new(m, build.model, shape, device);
        let without_drop_path = ModelConfig {
            drop_path: 0.0,
            ..build.model.clone()
        };
        let teacher = copy_into(Network::new(m, &without_drop_path, shape, device), &student);
        let zeros =
            |k: usize| Param::from_tensor(Tensor::zeros([1, k], device)).set_require_grad(false);
        Ok(Dino {
            student,
            teacher,
            center: zeros(m.prototypes),
            patch_center: zeros(m.patch_prototypes),
            student_temperature: m.temperature,
            teacher_temperature: m.teacher_temperature,
            warmup_teacher_temperature: m.warmup_teacher_temperature,
            teacher_warmup_epochs: m.teacher_temperature_warmup_epochs,
            sinkhorn: m.centering == Centering::Sinkhorn,
            centred: m.centering == Centering::Ema,
            center_momentum: m.center_momentum,
            freeze_last_layer_epochs: m.freeze_last_layer_epochs,
            patch_loss_weight: m.patch_loss_weight,
            mask_ratio_min: m.mask_ratio_min,
            mask_ratio_max: m.mask_ratio,
            mask_probability: m.mask_probability,
            mask_min_block: m.mask_min_block,
            koleo_weight: m.koleo_weight,
            base_momentum: m.base_momentum,
            epochs: build.epochs,
            seed: build.seed,
        })
    }

    fn step(&self, views: &[Tensor<4>], progress: Progress) -> StepOutput<Centres> {
        let b = views[0].dims()[0];
        let device = views[0].device();
        let globals = Tensor::cat(views[..2].to_vec(), 0);
        let with_patches = self.patch_loss_weight > 0.0;
        let temperature = self.teacher_temperature(progress);
        let frozen = self.epoch(progress) < self.freeze_last_layer_epochs;

        let teacher = self.teacher.features(globals.clone(), None, with_patches);
        let t_logits = self.teacher.head.forward(teacher.cls).detach();
        let center = self.center.val().detach();
        let targets = self.targets(t_logits.clone(), center.clone(), temperature);

        let masks = self
            .student
            .encoder
            .vit()
            .filter(|_| with_patches)
            .map(|vit| self.masks(2 * b, vit.grid(), progress.step));
        let mask = masks.as_ref().map(|m| mim::mask_tensor(m, &device));
        let student = self.student.features(globals, mask, with_patches);
        // Every crop's class token through the head at once: one product per layer.
        let mut cls = student.cls.clone();
        if views.len() > 2 {
            let locals = Tensor::cat(views[2..].to_vec(), 0);
            cls = Tensor::cat(vec![cls, self.student.encoder.forward(locals)], 0);
        }
        let z = self.student.head.bottleneck(cls);
        let embeddings = z.clone().slice(0..b).detach();
        let student_logits = self.student.head.logits(z, frozen);
        let distributions = Distributions {
            teacher: self.monitored_targets(
                t_logits.clone().slice(0..b),
                center.clone(),
                temperature,
            ),
            student: softmax(
                student_logits
                    .clone()
                    .slice(b..2 * b)
                    .detach()
                    .div_scalar(self.student_temperature),
                1,
            ),
        };
        let cls_loss = dino_loss(targets, student_logits, b, self.student_temperature);
        let mut loss = cls_loss.clone();
        let mut terms = Vec::new();
        let mut patch_center = None;
        if let (Some(masks), Some(t), Some(s)) = (&masks, teacher.patches, student.patches) {
            terms.push(LossTerm {
                name: "cls",
                value: cls_loss.detach(),
            });
            if let Some((patch, new_center)) = self.patch_loss(t, s, masks, temperature, frozen) {
                loss = loss + patch.clone().mul_scalar(self.patch_loss_weight);
                terms.push(LossTerm {
                    name: "patch",
                    value: patch.detach(),
                });
                patch_center = Some(new_center);
            }
        }
        if self.koleo_weight > 0.0 {
            let spread = student
                .cls
                .chunk(2, 0)
                .into_iter()
                .map(|crop| koleo(crop, KOLEO_EPS))
                .reduce(|a, b| a + b)
                .expect("two global crops");
            loss = loss + spread.clone().mul_scalar(self.koleo_weight);
            terms.push(LossTerm {
                name: "koleo",
                value: spread.detach(),
            });
        }
        StepOutput {
            loss,
            embeddings,
            terms,
            carry: Centres {
                center: update_center(center, t_logits, self.center_momentum),
                patch_center,
            },
            signals: vec![Signal::Distributions(distributions)],
        }
    }

    fn after_step(mut self, centres: Centres, progress: Progress) -> Self {
        if self.centred {
            self.center = self.center.map(|_| centres.center);
        }
        if let Some(patch_center) = centres.patch_center.filter(|_| self.centred) {
            self.patch_center = self.patch_center.map(|_| patch_center);
        }
        let momentum = self.momentum(progress).unwrap_or(1.0);
        self.teacher = ema_update(self.teacher, &self.student, momentum);
        self
    }

    fn momentum(&self, progress: Progress) -> Option<f64> {
        Some(cosine_momentum(
            self.base_momentum,
            progress.step,
            progress.total_steps,
        ))
    }

    fn step_cost(&self, sides: &[usize], batch: usize) -> StepCost {
        let global = sides[0];
        let with_patches = self.patch_loss_weight > 0.0;
        // iBOT / DINOv2: the expected share of a global crop's patches that is masked.
        let masked = match self.student.encoder.vit() {
            Some(vit) if self.patch_loss_weight > 0.0 => {
                let ratio = (self.mask_ratio_min + self.mask_ratio_max) / 2.0;
                let patches = (global / vit.patch_size()).pow(2);
                (patches as f64 * ratio * self.mask_probability).round() as usize
            }
            _ => 0,
        };
        let mut passes = vec![
            Pass::trained(
                "student: global crops",
                2,
                self.student.stages(global, with_patches, masked),
            ),
            Pass::frozen(
                "teacher: global crops",
                2,
                self.teacher.stages(global, with_patches, masked),
            ),
        ];
        if let Some(&local) = sides.get(2) {
            let stages = self.student.stages(local, false, 0);
            passes.insert(
                1,
                Pass::trained("student: local crops", sides.len() - 2, stages),
            );
        }
        let [_, prototypes] = self.student.head.last_layer.dims();
        StepCost {
            passes,
            // Each crop's log-softmax against the teacher's two targets.
            loss: 2 * (sides.len() * batch * prototypes) as u64,
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.student.encoder
    }

    fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.student
            .head
            .bottleneck(self.student.encoder.forward(images))
    }

    fn signals(&self, images: Tensor<4>) -> Vec<Signal> {
        let t_logits = self
            .teacher
            .head
            .forward(self.teacher.encoder.forward(images.clone()));
        let s_logits = self
            .student
            .head
            .forward(self.student.encoder.forward(images));
        vec![Signal::Distributions(Distributions {
            teacher: self.monitored_targets(t_logits, self.center.val(), self.teacher_temperature),
            student: softmax(s_logits.div_scalar(self.student_temperature), 1),
        })]
    }
}

#[cfg(test)]
mod tests;
