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

use super::{ConstantLr, OptimizerConfig, OptimizerKind};
use crate::error::{Error, Result, write_atomic};
use crate::kernels::adamw_step;
use crate::kernels::update::Adamw;

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
    constant_lr: &'a ConstantLr,
    base_lr: f64,
}

impl ModuleMapper for StepMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let lr = if self.constant_lr.contains(id) {
            self.base_lr
        } else {
            self.lr
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

    /// The weight decay of the coming steps.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
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
        let dims = g.dims();
        let n = g.shape().num_elements();
        let zeros = || Tensor::zeros([n], &g.device());
        let m = self.velocity.remove(&id).unwrap_or_else(zeros);
        let v = self.second.remove(&id).unwrap_or_else(zeros);
        let step = Adamw {
            lr,
            betas: self.config.betas,
            eps: self.config.eps,
            decay: if D == 1 { 0.0 } else { lr * self.weight_decay },
            step: (self.steps + 1) as i32,
        };
        let (w, m, v) = adamw_step(w.reshape([n]), g.reshape([n]), m, v, step);
        self.velocity.insert(id, m);
        self.second.insert(id, v);
        w.reshape(dims)
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

    /// One step over every parameter that has a gradient. The parameters in `constant_lr` use
    /// the un-decayed base learning rate (SimSiam's predictor).
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        base_lr: f64,
        module: M,
        grads: GradientsParams,
        constant_lr: &ConstantLr,
    ) -> M {
        let mut mapper = StepMapper {
            optim: self,
            grads,
            lr,
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

    /// Loads the buffers saved for `module`'s parameters; a file whose buffers do not fit them
    /// (another run's, or damaged) is an error, not a crash at the next step.
    pub fn load_for<M: Module>(&mut self, path: &Path, module: &M, device: &Device) -> Result<()> {
        self.load(path, device)?;
        let sizes = param_sizes(module);
        let bad = |msg: String| Error::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        for (id, buffer) in self.velocity.iter().chain(&self.second) {
            match sizes.get(id) {
                Some(&n) if n == buffer.dims()[0] => {}
                Some(&n) => {
                    return Err(bad(format!(
                        "a buffer of {} values for a parameter of {n}",
                        buffer.dims()[0]
                    )));
                }
                None => return Err(bad(format!("a buffer for unknown parameter {id}"))),
            }
        }
        Ok(())
    }

    fn load(&mut self, path: &Path, device: &Device) -> Result<()> {
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
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!("{name} is {:?}, not F32", view.dtype()),
                });
            }
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

/// The number of values of each parameter of `module`.
fn param_sizes<M: Module>(module: &M) -> HashMap<ParamId, usize> {
    struct Sizes(HashMap<ParamId, usize>);
    impl burn::module::ModuleVisitor for Sizes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id, param.shape().num_elements());
        }
    }
    let mut sizes = Sizes(HashMap::new());
    module.visit(&mut sizes);
    sizes.0
}

#[cfg(test)]
mod tests;
