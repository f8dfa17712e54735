//! Networks: the ResNet backbone and the MLP heads.

pub mod mlp;
pub mod resnet;

pub use mlp::{Mlp, MlpConfig};
pub use resnet::{ResNet, ResNetConfig};
