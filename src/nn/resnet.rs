//! ResNet-18/34/50 with basic and bottleneck blocks, a small-image stem and a width setting.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::cost::{Cost, Stage, shape};
use crate::kernels::{batch_norm_add_relu_layer, batch_norm_layer, conv2d_layer, max_pool2d_layer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    Resnet18,
    Resnet34,
    Resnet50,
}

impl Depth {
    /// Blocks per stage and whether they are bottlenecks.
    pub fn layout(self) -> ([usize; 4], bool) {
        match self {
            Depth::Resnet18 => ([2, 2, 2, 2], false),
            Depth::Resnet34 => ([3, 4, 6, 3], false),
            Depth::Resnet50 => ([3, 4, 6, 3], true),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 conv, stride 1, no max-pool: for 28–64 px images (CIFAR-style).
    Small,
    /// 7×7 conv, stride 2, then 3×3 max-pool stride 2: the ImageNet stem.
    Imagenet,
}

/// A ResNet's shape (built from the recipe's `[model]` section).
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    pub arch: Depth,
    pub stem: Stem,
    /// Channels of the first stage (64 in the paper); later stages double it.
    pub width: usize,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            arch: Depth::Resnet18,
            stem: Stem::Small,
            width: 64,
        }
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        // He init, fan-out, as torchvision's ResNet.
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}

#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// One residual block: basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 with 4× expansion).
#[derive(Module, Debug)]
pub struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(cin: usize, planes: usize, stride: usize, bottleneck: bool, device: &Device) -> Self {
        let cout = if bottleneck { planes * 4 } else { planes };
        let downsample = (stride != 1 || cin != cout).then(|| Downsample {
            conv: conv(cin, cout, 1, stride, device),
            bn: bn(cout, device),
        });
        if bottleneck {
            Block {
                conv1: conv(cin, planes, 1, 1, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, stride, device),
                bn2: bn(planes, device),
                conv3: Some(conv(planes, cout, 1, 1, device)),
                bn3: Some(bn(cout, device)),
                downsample,
            }
        } else {
            Block {
                conv1: conv(cin, planes, 3, stride, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, 1, device),
                bn2: bn(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => batch_norm_layer(&d.bn, conv2d_layer(&d.conv, x.clone()), false),
            None => x.clone(),
        };
        let out = batch_norm_layer(&self.bn1, conv2d_layer(&self.conv1, x), true);
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            let out = batch_norm_layer(&self.bn2, conv2d_layer(&self.conv2, out), true);
            batch_norm_add_relu_layer(bn3, conv2d_layer(conv3, out), identity)
        } else {
            batch_norm_add_relu_layer(&self.bn2, conv2d_layer(&self.conv2, out), identity)
        }
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: Option<MaxPool2d>,
    layers: Vec<Block>,
    out_dim: usize,
}

impl ResNetConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.width == 0 {
            return Err("model.width must be at least 1".into());
        }
        Ok(())
    }

    /// Feature dimension of the pooled output.
    pub fn out_dim(&self) -> usize {
        let (_, bottleneck) = self.arch.layout();
        self.width * 8 * if bottleneck { 4 } else { 1 }
    }

    pub fn init(&self, in_channels: usize, device: &Device) -> ResNet {
        let (blocks, bottleneck) = self.arch.layout();
        let (conv1, maxpool) = match self.stem {
            Stem::Small => (conv(in_channels, self.width, 3, 1, device), None),
            Stem::Imagenet => (
                conv(in_channels, self.width, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        let mut layers = Vec::new();
        let mut cin = self.width;
        for (stage, &n) in blocks.iter().enumerate() {
            let planes = self.width << stage;
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let block = Block::new(cin, planes, stride, bottleneck, device);
                cin = if bottleneck { planes * 4 } else { planes };
                layers.push(block);
            }
        }
        ResNet {
            conv1,
            bn1: bn(self.width, device),
            maxpool,
            layers,
            out_dim: self.out_dim(),
        }
    }
}

impl ResNet {
    /// Pooled features `[batch, out_dim]` (the representation; no classifier).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm_layer(&self.bn1, conv2d_layer(&self.conv1, x), true);
        if let Some(pool) = &self.maxpool {
            x = max_pool2d_layer(pool, x);
        }
        for block in &self.layers {
            x = block.forward(x);
        }
        let [b, c, _, _] = x.dims();
        x.mean_dims(&[2, 3]).reshape([b, c])
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// A convolution on a `side`-pixel input: its output side, and multiply-accumulates per image.
fn conv_cost(conv: &Conv2d, side: usize) -> (usize, u64) {
    let [cout, cin, k, _] = conv.weight.dims();
    let out = (side + 2 * (k / 2) - k) / conv.stride[0] + 1;
    (out, (cout * cin * k * k * out * out) as u64)
}

impl Block {
    /// Per image, for `side`-pixel inputs: output side, output channels and cost. Kept: every
    /// convolution's output (batch norm's input), each fused BN+ReLU output, the residual sum
    /// (the last ReLU's input) and the block's output (the next convolution's input).
    fn cost(&self, side: usize) -> (usize, usize, Cost) {
        let mut convs = vec![&self.conv1, &self.conv2];
        convs.extend(&self.conv3);
        let (mut s, mut macs, mut saved) = (side, 0, 0);
        let mut fused_relu_outputs = 0;
        for (i, conv) in convs.iter().enumerate() {
            let (out, m) = conv_cost(conv, s);
            s = out;
            macs += m;
            let plane = (conv.weight.dims()[0] * out * out) as u64;
            saved += plane;
            if i + 1 < convs.len() {
                fused_relu_outputs += plane;
            }
        }
        let cout = convs.last().expect("two convs").weight.dims()[0];
        let output = (cout * s * s) as u64;
        if let Some(d) = &self.downsample {
            let (_, m) = conv_cost(&d.conv, side);
            macs += m;
            saved += output;
        }
        // The fused `relu(bn(x) + residual)` keeps only its output (for the ReLU mask).
        let saved = saved + fused_relu_outputs + output;
        (s, cout, Cost::new(macs, saved, output))
    }
}

impl ResNet {
    /// The cost table of one `side`-pixel image: the stem, each stage, the pooling.
    pub fn costs(&self, side: usize) -> Vec<Stage> {
        let (mut s, macs) = conv_cost(&self.conv1, side);
        let mut channels = self.conv1.weight.dims()[0];
        let plane = (channels * s * s) as u64;
        // The conv's output and the fused BN+ReLU output.
        let mut stem = Cost::new(macs, 2 * plane, plane);
        if self.maxpool.is_some() {
            s = (s + 2 - 3) / 2 + 1;
            let pooled = (channels * s * s) as u64;
            // The pooled output and its argmax indices (64-bit: two f32's worth).
            stem += Cost::new(0, 3 * pooled, pooled);
        }
        let params = self.conv1.num_params() + self.bn1.num_params();
        let mut rows = vec![Stage::new("stem", shape(&[channels, s, s]), params, stem)];
        for block in &self.layers {
            let (out, cout, cost) = block.cost(s);
            let starts_stage = rows.len() == 1 || block.downsample.is_some();
            if starts_stage {
                let name = format!("layer{}", rows.len());
                rows.push(Stage::new(name, String::new(), 0, Cost::default()));
            }
            let row = rows.last_mut().expect("a stage row");
            row.params += block.num_params();
            row.cost += cost;
            (s, channels) = (out, cout);
            row.output = shape(&[channels, s, s]);
        }
        rows.push(Stage::new("pool", shape(&[channels]), 0, Cost::default()));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn depths_stems_and_output_dims() {
        let device = Device::flex();
        let x1 = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let r18 = ResNetConfig {
            arch: Depth::Resnet18,
            stem: Stem::Small,
            width: 4,
        }
        .init(1, &device);
        assert_eq!(r18.layers.len(), 8);
        assert_eq!(r18.forward(x1).dims(), [2, 32]);
        let x3 = Tensor::<4>::random([2, 3, 64, 64], Distribution::Default, &device);
        let r34 = ResNetConfig {
            arch: Depth::Resnet34,
            stem: Stem::Imagenet,
            width: 2,
        }
        .init(3, &device);
        assert_eq!(r34.layers.len(), 16);
        assert_eq!(r34.forward(x3.clone()).dims(), [2, 16]);
        let r50 = ResNetConfig {
            arch: Depth::Resnet50,
            stem: Stem::Imagenet,
            width: 2,
        }
        .init(3, &device);
        assert_eq!(r50.out_dim(), 64);
        assert!(r50.layers.iter().all(|b| b.conv3.is_some()));
        assert_eq!(r50.forward(x3).dims(), [2, 64]);
    }
}
