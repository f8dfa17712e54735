//! SGD with momentum (PyTorch semantics: no dampening), LARS and AdamW, over a whole module.
//!
//! LARS follows SimCLR/BYOL: 1-D parameters (biases, BatchNorm) get neither weight decay nor the
//! trust ratio; every other tensor's update is scaled by η·‖w‖ / ‖g + λw‖. AdamW (PyTorch
//! semantics, bias-corrected, decoupled decay) exempts 1-D parameters from decay too, as MoCo v3,
//! MAE and DINO do for biases and norms.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, write_atomic};

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
        if !(self.trust_coefficient > 0.0) {
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
        if !(self.eps > 0.0) {
            return Err(format!("optim.eps = {} must be > 0", self.eps));
        }
        if !(self.warmup_epochs >= 0.0) {
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

/// The optimizer with its per-parameter buffers (keyed by parameter id, which module records
/// preserve, so a resumed run finds its buffers).
pub struct Optimizer {
    config: OptimizerConfig,
    /// SGD / LARS velocity, or AdamW's first moment.
    velocity: HashMap<ParamId, Tensor<1>>,
    /// AdamW's second moment.
    second: HashMap<ParamId, Tensor<1>>,
    /// Completed steps (AdamW's bias correction).
    steps: u64,
    /// The weight decay of the current step (see [`Optimizer::set_weight_decay`]).
    weight_decay: f64,
}

struct StepMapper<'a> {
    optim: &'a mut Optimizer,
    grads: GradientsParams,
    lr: f64,
    path: Vec<String>,
    constant_lr: &'a [&'a str],
    base_lr: f64,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let lr = match self.path.first() {
            Some(top) if self.constant_lr.contains(&top.as_str()) => self.base_lr,
            _ => self.lr,
        };
        let require_grad = tensor.is_require_grad();
        let updated = self.optim.update(id, tensor.inner(), grad, lr);
        let mut updated = Tensor::from_inner(updated);
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            weight_decay: config.weight_decay,
            config,
            velocity: HashMap::new(),
            second: HashMap::new(),
            steps: 0,
        }
    }

    /// The weight decay for the coming steps (the train loop follows `final_weight_decay`).
    pub fn set_weight_decay(&mut self, weight_decay: f64) {
        self.weight_decay = weight_decay;
    }

    /// The gradient scaled so its norm is at most `optim.clip_grad` (DINO's clip_gradients).
    fn clip<const D: usize>(&self, g: Tensor<D>) -> Tensor<D> {
        let clip = self.config.clip_grad;
        if clip <= 0.0 {
            return g;
        }
        let norm = g.clone().square().sum().sqrt();
        let coef = norm
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(clip)
            .clamp_max(1.0);
        g * coef.unsqueeze()
    }

    fn adamw<const D: usize>(
        &mut self,
        id: ParamId,
        w: Tensor<D>,
        g: Tensor<D>,
        lr: f64,
    ) -> Tensor<D> {
        let c = &self.config;
        let [b1, b2] = c.betas;
        let t = (self.steps + 1) as i32;
        let dims = g.dims();
        let n = g.shape().num_elements();
        let g = g.reshape([n]);
        let m = match self.velocity.remove(&id) {
            Some(m) => m.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1),
            None => g.clone().mul_scalar(1.0 - b1),
        };
        let v = match self.second.remove(&id) {
            Some(v) => v.mul_scalar(b2) + g.square().mul_scalar(1.0 - b2),
            None => g.square().mul_scalar(1.0 - b2),
        };
        self.velocity.insert(id, m.clone());
        self.second.insert(id, v.clone());
        let m_hat = m.div_scalar(1.0 - b1.powi(t));
        let v_hat = v.div_scalar(1.0 - b2.powi(t));
        let update = m_hat / v_hat.sqrt().add_scalar(c.eps);
        let decay = if D == 1 { 0.0 } else { lr * self.weight_decay };
        w.mul_scalar(1.0 - decay) - update.reshape(dims).mul_scalar(lr)
    }

    fn update<const D: usize>(
        &mut self,
        id: ParamId,
        w: Tensor<D>,
        g: Tensor<D>,
        lr: f64,
    ) -> Tensor<D> {
        let mut g = self.clip(g);
        if self.config.kind == OptimizerKind::Adamw {
            return self.adamw(id, w, g, lr);
        }
        let c = &self.config;
        let excluded = c.kind == OptimizerKind::Lars && D == 1;
        if self.weight_decay > 0.0 && !excluded {
            g = g + w.clone().mul_scalar(self.weight_decay);
        }
        if c.kind == OptimizerKind::Lars && !excluded {
            let w_norm = w.clone().square().sum().sqrt();
            let g_norm = g.clone().square().sum().sqrt();
            let valid = w_norm
                .clone()
                .greater_elem(0.0)
                .bool_and(g_norm.clone().greater_elem(0.0));
            let ratio = (w_norm * c.trust_coefficient) / g_norm.clamp_min(1e-12);
            let trust = Tensor::<1>::ones([1], &ratio.device()).mask_where(valid, ratio);
            g = g * trust.unsqueeze();
        }
        let dims = g.dims();
        let n = g.shape().num_elements();
        let flat = g.reshape([n]);
        let v = match self.velocity.remove(&id) {
            Some(v) if c.momentum > 0.0 => v.mul_scalar(c.momentum) + flat,
            _ => flat,
        };
        self.velocity.insert(id, v.clone());
        w - v.reshape(dims).mul_scalar(lr)
    }

    /// One step over every parameter that has a gradient. Top-level sub-modules named in
    /// `constant_lr` use the un-decayed base learning rate (SimSiam's predictor).
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        base_lr: f64,
        module: M,
        grads: GradientsParams,
        constant_lr: &[&str],
    ) -> M {
        let mut mapper = StepMapper {
            optim: self,
            grads,
            lr,
            path: Vec::new(),
            constant_lr,
            base_lr,
        };
        let module = module.map(&mut mapper);
        self.steps += 1;
        module
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut data: Vec<(String, Vec<f32>)> = self
            .velocity
            .iter()
            .map(|(id, v)| (id.val().to_string(), v))
            .chain(
                self.second
                    .iter()
                    .map(|(id, v)| (format!("v2.{}", id.val()), v)),
            )
            .map(|(key, v)| (key, crate::host::to_f32(v.clone())))
            .collect();
        data.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes: Vec<(String, Vec<u8>, usize)> = data
            .into_iter()
            .map(|(k, v)| {
                let n = v.len();
                (k, v.iter().flat_map(|x| x.to_le_bytes()).collect(), n)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(k, b, n)| {
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*n], b)
                        .expect("buffer matches its shape"),
                )
            })
            .collect();
        let metadata =
            std::collections::HashMap::from([("steps".to_string(), self.steps.to_string())]);
        let serialized =
            safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        write_atomic(path, &serialized)
    }

    pub fn load(&mut self, path: &Path, device: &Device) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        self.velocity.clear();
        self.second.clear();
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        self.steps = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("steps"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        for (name, view) in file.tensors() {
            let (map, key) = match name.strip_prefix("v2.") {
                Some(rest) => (&mut self.second, rest.to_string()),
                None => (&mut self.velocity, name.clone()),
            };
            let id: u64 = key.parse().map_err(|_| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("unexpected entry {name}"),
            })?;
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let n = values.len();
            let device = device.clone().inner();
            map.insert(
                ParamId::from(id),
                Tensor::from_data(TensorData::new(values, [n]), &device),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
            ..layer
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
        let l = opt.step(1.0, 1.0, l, g, &[]);
        let (w, b) = values(&l);
        // ‖w‖ = 5, ‖g‖ = 1 → trust 0.005; the bias gets the plain gradient.
        assert!(
            (w[0] - (3.0 - 0.003)).abs() < 1e-6 && (w[1] - (4.0 - 0.004)).abs() < 1e-6,
            "{w:?}"
        );
        assert!((b[0] - 0.5).abs() < 1e-6, "{b:?}");
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
        l = opt.step(0.1, 0.1, l.clone(), grads(&l, [1.0, 1.0], 0.0), &[]);
        let (w1, _) = values(&l);
        assert!((w1[0] - (3.0 - 0.13)).abs() < 1e-6, "{w1:?}");
        // Step 2: v = 0.9·v + g'' with g'' = 1 + 0.1·w1.
        l = opt.step(0.1, 0.1, l.clone(), grads(&l, [1.0, 1.0], 0.0), &[]);
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
                &[],
            );
            let t = t as i32 + 1;
            m = 0.9 * m + 0.1 * gw;
            v = 0.999 * v + 0.001 * gw * gw;
            let step = (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + eps);
            w = w * (1.0 - lr * 0.5) - lr * step;
            mb = 0.9 * mb + 0.1 * gb;
            vb = 0.999 * vb + 0.001 * gb * gb;
            let step =
                (mb / (1.0 - 0.9f64.powi(t))) / ((vb / (1.0 - 0.999f64.powi(t))).sqrt() + eps);
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
        let l = opt.step(1.0, 1.0, l.clone(), grads(&l, [3.0, 4.0], 0.5), &[]);
        let (w, b) = values(&l);
        assert!(
            (w[0] - 2.4).abs() < 1e-5 && (w[1] - 3.2).abs() < 1e-5,
            "{w:?}"
        );
        assert!((b[0] - 0.5).abs() < 1e-6, "{b:?}");
        // SGD decay λ·w enters the gradient: with λ = 0.5 and a zero gradient, w ← w − lr·0.5·w
        // (the clip applies to the raw gradient, before decay).
        opt.set_weight_decay(0.5);
        let l = opt.step(0.1, 0.1, l.clone(), grads(&l, [0.0, 0.0], 0.0), &[]);
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
            let l = opt.step(0.1, 0.1, l.clone(), grads(&l, [1.0, 2.0], 3.0), &[]);
            let dir =
                std::env::temp_dir().join(format!("selfsup-opt-{}-{kind:?}", std::process::id()));
            let path = dir.join("opt.safetensors");
            opt.save(&path).unwrap();
            let mut loaded = Optimizer::new(config);
            loaded.load(&path, &device).unwrap();
            assert_eq!(loaded.steps, 1);
            let a = opt.step(0.1, 0.1, l.clone(), grads(&l, [1.0, 1.0], 1.0), &[]);
            let b = loaded.step(0.1, 0.1, l.clone(), grads(&l, [1.0, 1.0], 1.0), &[]);
            assert_eq!(values(&a), values(&b));
            std::fs::remove_dir_all(dir).ok();
        }
    }
}
