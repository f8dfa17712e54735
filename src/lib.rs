//! selfsup: self-supervised visual representation learning on burn.
//!
//! Building blocks (datasets, augmentations, backbones, heads, losses, EMA teachers, optimizers)
//! are public so they can be used outside the `selfsup` command. The library prints nothing:
//! training reports [`train::Event`]s to an observer, and the command line (the `selfsup`
//! binary, `src/main.rs` and `src/cli/`) draws them.

pub mod allocator;
pub mod attention;
pub mod augment;
pub mod data;
pub mod device;
pub mod diagnose;
pub mod error;
pub mod eval;
pub mod host;
pub mod inspect;
pub mod kernels;
pub mod lab;
pub mod loss;
pub mod method;
pub mod nn;
pub mod optim;
pub mod pipeline;
pub mod recipe;
pub mod report;
pub mod run;
pub mod teacher;
#[cfg(test)]
mod testing;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
