//! Collapse diagnostics: per-dimension std, singular-value spectrum, effective rank, verdict.

pub mod chart;
pub mod codebook;
pub mod distillation;
pub mod font;
pub mod grid;
pub mod monitor;
pub mod plot;
pub mod scatter;
pub mod spectrum;
pub mod stats;

pub use stats::{CollapseStats, Verdict, analyze, analyze_centred};

/// The analysis a method's embeddings get: around their mean when `centred`.
pub fn analyze_for(embeddings: &[f32], n: usize, d: usize, centred: bool) -> CollapseStats {
    if centred {
        analyze_centred(embeddings, n, d)
    } else {
        analyze(embeddings, n, d)
    }
}
