//! Losses as free functions on tensors, reusable outside any method.

pub mod cosine;

pub use cosine::{byol_regression, l2_normalize, mean_cosine, negative_cosine};
