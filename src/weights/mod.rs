//! Encoders in and out of selfsup in PyTorch's layout: timm names for ViTs, torchvision names for
//! ResNets, and a card that says how to build the matching PyTorch model; and back in, from
//! selfsup's own exports, timm, torchvision, DINO, DINOv2 and MAE checkpoints.

mod architecture;
mod export;
mod import;
mod init;

pub use export::{ExportCard, card_path, export_encoder, export_run};
pub use import::{IMAGENET_MEAN, IMAGENET_STD, Imported, expected_normalize, import_encoder};
pub use init::init_encoders;

use serde::{Deserialize, Serialize};

/// Whose parameter names a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    /// `timm.models.vision_transformer.VisionTransformer` (`blocks.N.attn.qkv`, `reg_token`, …).
    Timm,
    /// `torchvision.models.ResNet` (`layer1.0.conv1`, `layer1.0.downsample.0`, …; timm's ResNets
    /// use the same names).
    Torchvision,
}

impl std::fmt::Display for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Names::Timm => "timm",
            Names::Torchvision => "torchvision",
        })
    }
}
