//! Losses as free functions on tensors, reusable outside any method.

pub mod barlow;
pub mod contrastive;
pub mod cosine;
pub mod distillation;
pub mod reconstruction;
#[cfg(test)]
pub(crate) mod testing;
pub mod vicreg;

pub use barlow::{BarlowTerms, barlow_twins, standardize_batch};
pub use contrastive::{info_nce, info_nce_queue, logsumexp_rows, nt_xent, positives_only};
pub use cosine::{byol_regression, l2_normalize, mean_cosine, negative_cosine};
pub use distillation::{
    centered_teacher, dino_loss, ibot_patch_loss, koleo, masked_patch_rows, sinkhorn_knopp,
    update_center,
};
pub use reconstruction::{
    masked_cross_entropy, masked_l1, masked_mse, mse, normalize_patches, patch_mean_std,
};
pub use vicreg::{VicRegTerms, VicRegWeights, vicreg};
