//! Encoder + projector: the online half of most joint-embedding methods, and what an EMA target
//! (BYOL, MoCo) mirrors. Also the checks every projector / predictor setting shares.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{Build, Pass, StepCost};
use crate::nn::cost::Stage;
use crate::nn::{Backbone, Mlp, MlpConfig};

#[derive(Module, Debug)]
pub struct Branch {
    pub encoder: Backbone,
    pub projector: Mlp,
}

impl Branch {
    /// The run's backbone and a projector of widths `projector` (hidden…, output), shaped by
    /// `head` (which BatchNorms it has).
    pub fn new(
        build: &Build,
        projector: &[usize],
        head: impl FnOnce(MlpConfig) -> MlpConfig,
    ) -> Self {
        let encoder = build.model.init(build.shape, build.device);
        let mut dims = vec![encoder.out_dim()];
        dims.extend(projector);
        Branch {
            encoder,
            projector: head(MlpConfig::new(dims)).init(build.device),
        }
    }

    /// The cost table of one `side`-pixel image: the encoder's stages, then the projector.
    pub fn stages(&self, side: usize) -> Vec<Stage> {
        let mut stages = self.encoder.costs(side);
        stages.push(super::head_stage("projector", &self.projector));
        stages
    }

    /// [`Branch::stages`] followed by `predictor` (absent when it has no layers: an ablation).
    pub fn stages_with_predictor(&self, side: usize, predictor: &Mlp) -> Vec<Stage> {
        let mut stages = self.stages(side);
        if predictor.out_dim() > 0 {
            stages.push(super::head_stage("predictor", predictor));
        }
        stages
    }

    /// A step that trains this branch on both views and whose loss keeps `loss` values.
    pub fn two_view_step(&self, sides: &[usize], loss: u64) -> StepCost {
        StepCost {
            passes: vec![Pass::trained(
                "encoder + projector",
                2,
                self.stages(sides[0]),
            )],
            loss,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(x))
    }
}

/// A predictor MLP from the projector's output through `predictor` (hidden, output), shaped by
/// `head`; an empty `predictor` is no predictor at all (an ablation).
pub fn predictor(
    projector: &[usize],
    predictor: &[usize],
    head: impl FnOnce(MlpConfig) -> MlpConfig,
    device: &Device,
) -> Mlp {
    let mut dims = vec![*projector.last().expect("validated non-empty")];
    dims.extend(predictor);
    head(MlpConfig::new(dims)).init(device)
}

/// `method.projector` needs at least one positive width.
pub fn check_projector(projector: &[usize]) -> Result<(), String> {
    if projector.is_empty() || projector.contains(&0) {
        return Err("method.projector needs at least one positive width (e.g. [512, 128])".into());
    }
    Ok(())
}

/// `method.predictor` maps the projector's output back to its width.
pub fn check_predictor(projector: &[usize], predictor: &[usize]) -> Result<(), String> {
    check_projector(projector)?;
    if predictor.is_empty() {
        return Ok(());
    }
    if predictor.len() < 2 || predictor.contains(&0) {
        return Err(
            "method.predictor needs [hidden, output] positive widths, or [] for none (an ablation)"
                .into(),
        );
    }
    if predictor.last() != projector.last() {
        return Err(format!(
            "method.predictor output {} must equal the projector output {}",
            predictor.last().unwrap(),
            projector.last().unwrap()
        ));
    }
    Ok(())
}

/// An EMA momentum is a fraction.
pub fn check_momentum(base_momentum: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&base_momentum) {
        return Err(format!(
            "method.base_momentum = {base_momentum} must be in [0, 1]"
        ));
    }
    Ok(())
}

/// A softmax temperature is positive.
pub fn check_temperature(temperature: f64) -> Result<(), String> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(format!(
            "method.temperature = {temperature} must be a positive number (0.07–0.5 is usual)"
        ));
    }
    Ok(())
}

/// A loss weight is finite and not negative.
pub fn check_weight(name: &str, weight: f64) -> Result<(), String> {
    if !(weight.is_finite() && weight >= 0.0) {
        return Err(format!("method.{name} = {weight} must be ≥ 0"));
    }
    Ok(())
}
