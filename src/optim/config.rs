//! The `[optim]` section of a recipe: which optimizer, its learning rate and schedule, weight
//! decay and clipping.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Lars,
    /// Adam with decoupled weight decay: the ViT papers' optimizer.
    Adamw,
}

/// The `[optim]` section of a recipe.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Learning rate at batch size 256; the run uses `lr · batch / 256` (linear scaling rule).
    pub base_lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// LARS trust coefficient η.
    pub trust_coefficient: f64,
    /// AdamW β₁, β₂ (`momentum` is unused by AdamW).
    pub betas: [f64; 2],
    /// AdamW ε.
    pub eps: f64,
    pub warmup_epochs: f64,
    /// Cosine floor as a fraction of the peak learning rate.
    pub final_lr_fraction: f64,
    /// Weight decay at the end of training, reached from `weight_decay` along a cosine (DINO's
    /// 0.04 → 0.4); negative (the default, -1) keeps `weight_decay` constant.
    pub final_weight_decay: f64,
    /// Per-tensor gradient clipping: each parameter's gradient norm is capped at this value
    /// (DINO's 3.0); 0 turns it off.
    pub clip_grad: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            base_lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
            trust_coefficient: 0.001,
            betas: [0.9, 0.999],
            eps: 1e-8,
            warmup_epochs: 0.0,
            final_lr_fraction: 0.0,
            final_weight_decay: -1.0,
            clip_grad: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// The weight decay scheduled for the end of training, if it changes at all.
    pub fn weight_decay_end(&self) -> Option<f64> {
        (self.final_weight_decay >= 0.0).then_some(self.final_weight_decay)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return Err(format!(
                "optim.base_lr = {} must be a positive number",
                self.base_lr
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "optim.momentum = {} must be in [0, 1)",
                self.momentum
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!(
                "optim.weight_decay = {} must be ≥ 0",
                self.weight_decay
            ));
        }
        if !self.final_weight_decay.is_finite() {
            return Err(format!(
                "optim.final_weight_decay = {} must be a number (≥ 0, or -1 for a constant weight_decay)",
                self.final_weight_decay
            ));
        }
        if !(self.clip_grad >= 0.0 && self.clip_grad.is_finite()) {
            return Err(format!(
                "optim.clip_grad = {} must be ≥ 0 (0 = no clipping; DINO uses 3.0)",
                self.clip_grad
            ));
        }
        if self.trust_coefficient.is_nan() || self.trust_coefficient <= 0.0 {
            return Err(format!(
                "optim.trust_coefficient = {} must be > 0",
                self.trust_coefficient
            ));
        }
        if !self.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return Err(format!(
                "optim.betas = {:?} must both be in [0, 1) (AdamW uses [0.9, 0.999] or [0.9, 0.95])",
                self.betas
            ));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return Err(format!("optim.eps = {} must be > 0", self.eps));
        }
        if self.warmup_epochs.is_nan() || self.warmup_epochs < 0.0 {
            return Err(format!(
                "optim.warmup_epochs = {} must be ≥ 0",
                self.warmup_epochs
            ));
        }
        if !(0.0..=1.0).contains(&self.final_lr_fraction) {
            return Err(format!(
                "optim.final_lr_fraction = {} must be in [0, 1]",
                self.final_lr_fraction
            ));
        }
        Ok(())
    }
}
