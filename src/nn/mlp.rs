//! The projection / prediction MLP builder: linear layers with optional BatchNorm and ReLU.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::cost::Cost;

/// `dims = [in, hidden…, out]`; hidden layers get ReLU (GELU for DINO's head) and (by default)
/// BatchNorm, the last layer optionally BatchNorm (SimSiam's projector, BYOL has none) and never
/// an activation.
#[derive(Clone, Debug)]
pub struct MlpConfig {
    pub dims: Vec<usize>,
    pub hidden_bn: bool,
    pub output_bn: bool,
    pub gelu: bool,
}

#[derive(Module, Debug)]
pub struct MlpLayer {
    linear: Linear,
    bn: Option<BatchNorm>,
    relu: bool,
    gelu: bool,
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<MlpLayer>,
}

impl MlpConfig {
    pub fn new(dims: Vec<usize>) -> Self {
        MlpConfig {
            dims,
            hidden_bn: true,
            output_bn: false,
            gelu: false,
        }
    }

    /// GELU instead of ReLU between layers (DINO's head).
    pub fn with_gelu(mut self, gelu: bool) -> Self {
        self.gelu = gelu;
        self
    }

    pub fn with_hidden_bn(mut self, hidden_bn: bool) -> Self {
        self.hidden_bn = hidden_bn;
        self
    }

    pub fn with_output_bn(mut self, output_bn: bool) -> Self {
        self.output_bn = output_bn;
        self
    }

    pub fn init(&self, device: &Device) -> Mlp {
        let n = self.dims.len() - 1;
        let layers = (0..n)
            .map(|i| {
                let last = i + 1 == n;
                let bn_here = if last { self.output_bn } else { self.hidden_bn };
                MlpLayer {
                    // A bias before BatchNorm is redundant.
                    linear: LinearConfig::new(self.dims[i], self.dims[i + 1])
                        .with_bias(!bn_here)
                        .init(device),
                    bn: bn_here.then(|| BatchNormConfig::new(self.dims[i + 1]).init(device)),
                    relu: !last && !self.gelu,
                    gelu: !last && self.gelu,
                }
            })
            .collect();
        Mlp { layers }
    }
}

impl Mlp {
    /// Per image: each layer keeps its input, batch norm its input, ReLU / GELU theirs.
    pub fn cost(&self) -> Cost {
        self.layers
            .iter()
            .map(|layer| {
                let [d_in, d_out] = layer.linear.weight.dims();
                let kept = usize::from(layer.bn.is_some()) + usize::from(layer.relu || layer.gelu);
                super::cost::linear(d_in, d_out, 1) + Cost::new(0, (kept * d_out) as u64, 0)
            })
            .sum()
    }

    /// Width of the output.
    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.linear.weight.dims()[1])
    }

    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for layer in &self.layers {
            x = crate::kernels::linear_layer(&layer.linear, x);
            if let Some(bn) = &layer.bn {
                x = bn.forward(x);
            }
            if layer.relu {
                x = relu(x);
            }
            if layer.gelu {
                x = crate::kernels::gelu(x);
            }
        }
        x
    }
}
