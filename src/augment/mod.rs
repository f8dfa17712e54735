//! Image augmentations (torchvision semantics, seeded, on CPU) and per-method view recipes.

pub mod image;
pub mod mask;
pub mod ops;
pub mod views;

pub use image::{Image, Planes, Texel};
pub use views::AugmentConfig;
