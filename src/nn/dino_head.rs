//! DINO's projection head: a 3-layer GELU MLP down to a bottleneck, L2 normalisation, and a
//! weight-normalised linear layer onto K prototypes whose norm is fixed at 1 (the paper's
//! norm_last_layer), so every logit is the cosine between the feature and a prototype.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use super::cost::Cost;
use super::mlp::{Mlp, MlpConfig};
use crate::loss::l2_normalize;

#[derive(Clone, Debug)]
pub struct DinoHeadConfig {
    /// The MLP's widths: input, hidden…, bottleneck (the paper's [d, 2048, 2048, 256]).
    pub widths: Vec<usize>,
    /// Number of prototypes K (65536 in the paper).
    pub prototypes: usize,
}

#[derive(Module, Debug)]
pub struct DinoHead {
    pub mlp: Mlp,
    /// Prototype directions `[bottleneck, K]`; used column-normalised.
    pub last_layer: Param<Tensor<2>>,
}

impl DinoHeadConfig {
    pub fn init(&self, device: &Device) -> DinoHead {
        let bottleneck = *self.widths.last().expect("at least input and bottleneck");
        DinoHead {
            mlp: MlpConfig::new(self.widths.clone())
                .with_hidden_bn(false)
                .with_gelu(true)
                .init(device),
            last_layer: Param::from_tensor(Tensor::random(
                [bottleneck, self.prototypes],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
        }
    }
}

impl DinoHead {
    /// Per image: the MLP, the normalised bottleneck, and the prototype logits, which the loss's
    /// softmax keeps.
    pub fn cost(&self) -> Cost {
        let [bottleneck, prototypes] = self.last_layer.dims();
        let (b, k) = (bottleneck as u64, prototypes as u64);
        self.mlp.cost() + Cost::new(b * k, 2 * b + k, k)
    }

    /// The L2-normalised bottleneck features `[b, bottleneck]`.
    pub fn bottleneck(&self, x: Tensor<2>) -> Tensor<2> {
        l2_normalize(self.mlp.forward(x))
    }

    /// Prototype logits `[b, K]` of bottleneck features; `frozen_prototypes` stops their
    /// gradient (DINO freezes the last layer during the first epoch).
    pub fn logits(&self, z: Tensor<2>, frozen_prototypes: bool) -> Tensor<2> {
        let mut weights = self.last_layer.val();
        if frozen_prototypes {
            weights = weights.detach();
        }
        crate::kernels::linear(z, l2_normalize(weights.transpose()).transpose(), None)
    }

    /// Prototype logits `[b, K]` of features `[b, in_dim]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.logits(self.bottleneck(x), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::to_f32;

    fn head(device: &Device) -> DinoHead {
        DinoHeadConfig {
            widths: vec![6, 16, 16, 4],
            prototypes: 10,
        }
        .init(device)
    }

    #[test]
    fn logits_are_cosines_to_unit_prototypes() {
        let device = Device::flex();
        let mut h = head(&device);
        let x = Tensor::<2>::random([5, 6], Distribution::Normal(0.0, 1.0), &device);
        let before = to_f32(h.forward(x.clone()));
        assert_eq!(before.len(), 5 * 10);
        assert!(before.iter().all(|v| v.abs() <= 1.0 + 1e-5), "{before:?}");
        // Weight normalisation: rescaling the prototypes changes nothing.
        h.last_layer = h.last_layer.map(|v| v.mul_scalar(7.5));
        let after = to_f32(h.forward(x));
        for (a, b) in before.iter().zip(&after) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn gradients_reach_the_prototypes_and_pass_through_the_mlp() {
        let device = Device::flex().autodiff();
        let h = head(&device);
        let x = Tensor::<2>::random([5, 6], Distribution::Normal(0.0, 1.0), &device).require_grad();
        // Σ of logits weighted by a fixed pattern (a plain sum would be insensitive to rotations).
        let w = Tensor::<2>::random([5, 10], Distribution::Normal(0.0, 1.0), &device);
        let grads = (h.forward(x.clone()) * w.clone()).sum().backward();
        assert!(h.last_layer.val().grad(&grads).is_some());
        let frozen = (h.logits(h.bottleneck(x.clone()), true) * w)
            .sum()
            .backward();
        assert!(h.last_layer.val().grad(&frozen).is_none());
        assert!(x.grad(&frozen).is_some());
        let gx = to_f32(
            x.grad(&grads)
                .expect("the input gets a gradient through the MLP"),
        );
        assert!(gx.iter().any(|v| v.abs() > 1e-6), "{gx:?}");
    }
}
