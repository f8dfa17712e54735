//! The `[model]` recipe section and the backbone it builds: a ResNet or a ViT behind one type.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::cost::Stage;
use super::resnet::{Depth, ResNet, ResNetConfig, Stem};
use super::vit::{Pool, PosEmbedKind, Vit, VitConfig};

/// Channels and side of the square images a backbone sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub side: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Resnet18,
    Resnet34,
    Resnet50,
    /// 192 wide, 12 blocks, 3 heads.
    VitTiny,
    /// 384 wide, 12 blocks, 6 heads.
    VitSmall,
    /// 768 wide, 12 blocks, 12 heads.
    VitBase,
    /// A ViT sized entirely by `embed_dim`, `depth` and `heads`.
    Vit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PosEmbed {
    Sincos,
    Learned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    Cls,
    Mean,
}

/// Backbone settings (the `[model]` section). ResNets read `stem` and `width`; ViTs read the
/// rest. For the ViT presets, `embed_dim` / `depth` / `heads` = 0 keep the preset's value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    pub stem: Stem,
    /// ResNet: channels of the first stage (64 in the paper); later stages double it.
    pub width: usize,
    pub patch_size: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    /// LayerScale init value; 0 disables it.
    pub layer_scale: f64,
    /// Stochastic-depth rate of the last block.
    pub drop_path: f64,
    pub pos_embed: PosEmbed,
    pub registers: usize,
    /// What evaluation sees: the CLS token or the mean of the patch tokens.
    pub pool: PoolKind,
    /// Keep the patch projection at its random init (MoCo v3).
    pub freeze_patch_embed: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Resnet18,
            stem: Stem::Small,
            width: 64,
            patch_size: 4,
            embed_dim: 0,
            depth: 0,
            heads: 0,
            mlp_ratio: 4.0,
            layer_scale: 0.0,
            drop_path: 0.0,
            pos_embed: PosEmbed::Sincos,
            registers: 0,
            pool: PoolKind::Cls,
            freeze_patch_embed: false,
        }
    }
}

impl ModelConfig {
    pub fn is_vit(&self) -> bool {
        !matches!(self.arch, Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50)
    }

    pub fn resnet(&self) -> Option<ResNetConfig> {
        let arch = match self.arch {
            Arch::Resnet18 => Depth::Resnet18,
            Arch::Resnet34 => Depth::Resnet34,
            Arch::Resnet50 => Depth::Resnet50,
            _ => return None,
        };
        Some(ResNetConfig {
            arch,
            stem: self.stem,
            width: self.width,
        })
    }

    /// The ViT for `image_size`-pixel inputs, presets filled in.
    pub fn vit(&self, in_channels: usize, image_size: usize) -> Option<VitConfig> {
        let (dim, depth, heads) = match self.arch {
            Arch::VitTiny => (192, 12, 3),
            Arch::VitSmall => (384, 12, 6),
            Arch::VitBase => (768, 12, 12),
            Arch::Vit => (0, 0, 0),
            _ => return None,
        };
        let pick = |set: usize, preset: usize| if set > 0 { set } else { preset };
        Some(VitConfig {
            image_size,
            patch_size: self.patch_size,
            in_channels,
            embed_dim: pick(self.embed_dim, dim),
            depth: pick(self.depth, depth),
            heads: pick(self.heads, heads),
            mlp_ratio: self.mlp_ratio,
            layer_scale: self.layer_scale,
            drop_path: self.drop_path,
            pos_embed: match self.pos_embed {
                PosEmbed::Sincos => PosEmbedKind::SinCos,
                PosEmbed::Learned => PosEmbedKind::Learned,
            },
            registers: self.registers,
            pool: match self.pool {
                PoolKind::Cls => Pool::Cls,
                PoolKind::Mean => Pool::MeanPatch,
            },
            freeze_patch_embed: self.freeze_patch_embed,
        })
    }

    /// Checks what can be checked without the data (the ViT's image size is checked at init).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(resnet) = self.resnet() {
            return resnet.validate();
        }
        if self.arch == Arch::Vit && (self.embed_dim == 0 || self.depth == 0 || self.heads == 0) {
            return Err(
                "model.arch = \"vit\" needs model.embed_dim, model.depth and model.heads (or pick vit-tiny / vit-small / vit-base)".into(),
            );
        }
        self.vit(1, self.patch_size.max(1))
            .expect("a ViT arch")
            .validate()
    }

    /// Checks the backbone against the images it will see.
    pub fn validate_for(&self, shape: ImageShape) -> Result<(), String> {
        match self.vit(shape.channels, shape.side) {
            Some(vit) => vit.validate(),
            None => self.validate(),
        }
    }

    /// One line for reports and tables, e.g. "resnet18 width 8" or "vit-tiny/4 (192-d × 12)".
    pub fn describe(&self) -> String {
        let name = serde_json::to_value(self.arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match self.vit(1, 1) {
            None => format!("{name} width {}", self.width),
            Some(v) => format!("{name}/{} ({}-d × {})", v.patch_size, v.embed_dim, v.depth),
        }
    }

    pub fn out_dim(&self) -> usize {
        match self.resnet() {
            Some(r) => r.out_dim(),
            None => self.vit(1, 1).expect("a ViT arch").embed_dim,
        }
    }

    /// Builds the backbone for images of `shape` (checked with [`Self::validate_for`]).
    pub fn init(&self, shape: ImageShape, device: &Device) -> Backbone {
        match self.resnet() {
            Some(r) => Backbone::ResNet(r.init(shape.channels, device)),
            None => Backbone::Vit(
                self.vit(shape.channels, shape.side)
                    .expect("a ViT arch")
                    .init(device),
            ),
        }
    }
}

/// The encoder a method trains and evaluation, diagnostics and export use.
#[derive(Module, Debug)]
pub enum Backbone {
    ResNet(ResNet),
    Vit(Vit),
}

impl Backbone {
    /// The representation `[batch, out_dim]`: pooled ResNet features or the ViT's CLS / mean token.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Backbone::ResNet(m) => m.forward(x),
            Backbone::Vit(m) => m.forward(x),
        }
    }

    /// The cost table of [`Backbone::forward`] on one `side`-pixel image.
    pub fn costs(&self, side: usize) -> Vec<Stage> {
        match self {
            Backbone::ResNet(m) => m.costs(side),
            Backbone::Vit(m) => m.pooled_costs(side),
        }
    }

    /// The whole network's cost table on one `side`-pixel image, every token through every
    /// block: its published size, and what PyTorch runs ([`Backbone::costs`] may be less).
    pub fn model_costs(&self, side: usize) -> Vec<Stage> {
        match self {
            Backbone::ResNet(m) => m.costs(side),
            Backbone::Vit(m) => m.costs(side, |all| all),
        }
    }

    /// The ViT, for methods that work on its tokens (the recipe check guarantees one).
    pub fn vit(&self) -> Option<&Vit> {
        match self {
            Backbone::Vit(v) => Some(v),
            Backbone::ResNet(_) => None,
        }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            Backbone::ResNet(m) => m.out_dim(),
            Backbone::Vit(m) => m.out_dim(),
        }
    }
}
