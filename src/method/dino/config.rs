//! `[method]` settings of `dino`, `ibot` and `dinov2`.

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::method::Settings;
use crate::method::branch::{check_momentum, check_projector, check_temperature, check_weight};
use crate::method::mim::{check_block, check_mask_ratio};
use crate::nn::ModelConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoConfig {
    /// The head's MLP widths after the backbone: hidden…, bottleneck.
    pub projector: Vec<usize>,
    /// Prototypes K of the [CLS] head (65536 in DINO).
    pub prototypes: usize,
    /// Prototypes of the patch head (8192 in iBOT; equal to `prototypes` when `shared_head`).
    pub patch_prototypes: usize,
    /// The student's temperature τ_s.
    pub temperature: f64,
    /// The teacher's temperature τ_t after warmup (0.04–0.07).
    pub teacher_temperature: f64,
    /// τ_t at the start, raised linearly to `teacher_temperature`.
    pub warmup_teacher_temperature: f64,
    /// Epochs of that linear warmup (30 in the paper).
    pub teacher_temperature_warmup_epochs: f64,
    /// How the teacher's outputs are kept from collapsing.
    pub centering: Centering,
    /// EMA momentum of the centre over batch means (0.9).
    pub center_momentum: f64,
    /// The teacher's base EMA momentum, raised to 1 with a cosine.
    pub base_momentum: f64,
    /// Epochs during which the prototypes get no gradient (1 in the paper).
    pub freeze_last_layer_epochs: f64,
    /// iBOT / DINOv2: weight of the masked patch-token loss (0 turns it off: plain DINO).
    pub patch_loss_weight: f64,
    /// iBOT / DINOv2: a masked image's ratio is drawn in [mask_ratio_min, mask_ratio].
    pub mask_ratio_min: f64,
    pub mask_ratio: f64,
    /// iBOT / DINOv2: the fraction of global crops that are masked at all (0.5).
    pub mask_probability: f64,
    /// iBOT / DINOv2: fewest patches in one masking rectangle.
    pub mask_min_block: usize,
    /// DINOv2: weight of the KoLeo regulariser on the student's [CLS] features (0.1).
    pub koleo_weight: f64,
    /// iBOT: the patch tokens share the [CLS] head; DINOv2 unties them (false).
    pub shared_head: bool,
}

/// How a self-distillation teacher's outputs are normalised before they become targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Centering {
    /// Subtract an EMA of the batch-mean logits (DINO, iBOT).
    Ema,
    /// Sinkhorn-Knopp normalisation, 3 iterations (DINOv2).
    Sinkhorn,
    /// Sharpening only: the run collapses onto one prototype.
    None,
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            projector: vec![512, 512, 512],
            prototypes: 1024,
            patch_prototypes: 1024,
            temperature: 0.5,
            teacher_temperature: 0.07,
            warmup_teacher_temperature: 0.04,
            teacher_temperature_warmup_epochs: 0.0,
            centering: Centering::Ema,
            center_momentum: 0.9,
            base_momentum: 0.99,
            freeze_last_layer_epochs: 1.0,
            patch_loss_weight: 0.0,
            mask_ratio_min: 0.1,
            mask_ratio: 0.75,
            mask_probability: 0.5,
            mask_min_block: 4,
            koleo_weight: 0.0,
            shared_head: true,
        }
    }
}

impl Settings for DinoConfig {
    fn validate(&self, model: &ModelConfig, _augment: &AugmentConfig) -> Result<(), String> {
        check_projector(&self.projector)?;
        check_temperature(self.temperature)?;
        check_momentum(self.base_momentum)?;
        check_mask_ratio(self.mask_ratio)?;
        check_block("mask_min_block", self.mask_min_block)?;
        if self.prototypes < 2 || self.patch_prototypes < 2 {
            return Err("method.prototypes and method.patch_prototypes must be at least 2".into());
        }
        if self.patch_loss_weight > 0.0
            && self.shared_head
            && self.patch_prototypes != self.prototypes
        {
            return Err(format!(
                "method.shared_head = true uses one head for [CLS] and patches: set method.patch_prototypes = {} (or shared_head = false)",
                self.prototypes
            ));
        }
        for (name, t) in [
            ("teacher_temperature", self.teacher_temperature),
            (
                "warmup_teacher_temperature",
                self.warmup_teacher_temperature,
            ),
        ] {
            if !(t.is_finite() && t > 0.0) {
                return Err(format!(
                    "method.{name} = {t} must be a positive number (DINO: 0.04 → 0.07)"
                ));
            }
        }
        for (name, v) in [
            (
                "teacher_temperature_warmup_epochs",
                self.teacher_temperature_warmup_epochs,
            ),
            ("freeze_last_layer_epochs", self.freeze_last_layer_epochs),
            ("patch_loss_weight", self.patch_loss_weight),
            ("koleo_weight", self.koleo_weight),
        ] {
            check_weight(name, v)?;
        }
        if !(0.0..1.0).contains(&self.center_momentum) {
            return Err(format!(
                "method.center_momentum = {} must be in [0, 1) (0.9 in the paper)",
                self.center_momentum
            ));
        }
        if !(0.0..=1.0).contains(&self.mask_probability) {
            return Err(format!(
                "method.mask_probability = {} must be in [0, 1]",
                self.mask_probability
            ));
        }
        if self.patch_loss_weight > 0.0
            && !(self.mask_ratio_min > 0.0 && self.mask_ratio_min <= self.mask_ratio)
        {
            return Err(format!(
                "method.mask_ratio_min = {} must be in (0, method.mask_ratio = {}] (iBOT: 0.1 to 0.5)",
                self.mask_ratio_min, self.mask_ratio
            ));
        }
        if (self.patch_loss_weight > 0.0 || self.koleo_weight > 0.0) && !model.is_vit() {
            return Err(
                "the patch loss and KoLeo need ViT tokens: set model.arch to a ViT, or method.patch_loss_weight = 0 and method.koleo_weight = 0".into(),
            );
        }
        Ok(())
    }
}
