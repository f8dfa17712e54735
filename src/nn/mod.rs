//! Networks: backbones (ResNet, ViT) and the MLP heads.

pub mod backbone;
pub mod cost;
pub mod decoder;
pub mod dino_head;
pub mod drop_path;
pub mod mlp;
pub mod norm;
pub mod patches;
pub mod resnet;
pub mod vit;

pub use backbone::{Arch, Backbone, ModelConfig};
pub use mlp::{Mlp, MlpConfig};
pub use resnet::{ResNet, ResNetConfig};
pub use vit::{Vit, VitConfig};
