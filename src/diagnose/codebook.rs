//! Codebook usage of a discrete tokenizer: how many codes the data actually uses, and the
//! perplexity (exp of the entropy of the code histogram). A codebook that has collapsed onto a few
//! codes makes every patch look alike to BEiT.

use serde::{Deserialize, Serialize};

/// Below this fraction of the codebook in use, the codebook has collapsed.
pub const CODEBOOK_COLLAPSE_USED_FRACTION: f64 = 0.1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CodebookUsage {
    pub size: usize,
    /// Distinct codes assigned at least once.
    pub used: usize,
    /// exp(entropy) of the code frequencies: the number of equally used codes it is worth.
    pub perplexity: f64,
    /// Fewer than [`CODEBOOK_COLLAPSE_USED_FRACTION`] of the codes in use.
    pub collapsed: bool,
}

impl CodebookUsage {
    pub fn of(ids: &[i64], size: usize) -> Self {
        let mut counts = vec![0usize; size];
        for &id in ids {
            counts[id as usize] += 1;
        }
        let total = ids.len().max(1) as f64;
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                -p * p.ln()
            })
            .sum();
        let used = counts.iter().filter(|&&c| c > 0).count();
        CodebookUsage {
            size,
            used,
            perplexity: entropy.exp(),
            collapsed: (used as f64) < CODEBOOK_COLLAPSE_USED_FRACTION * size as f64,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} of {} codes used, perplexity {:.1}{}",
            self.used,
            self.size,
            self.perplexity,
            if self.collapsed {
                " — CODEBOOK COLLAPSE: keep method.restart_codes = true, lower optim.base_lr or shrink method.codebook_size"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_perplexity_match_hand_counts() {
        // Codes 0 and 1 used equally (perplexity 2) out of 8; 2 of 8 = 25% ≥ 10%.
        let u = CodebookUsage::of(&[0, 1, 0, 1], 8);
        assert_eq!((u.used, u.collapsed), (2, false));
        assert!((u.perplexity - 2.0).abs() < 1e-12);
        // One code out of 64 is collapse.
        let u = CodebookUsage::of(&[5; 100], 64);
        assert_eq!((u.used, u.collapsed), (1, true));
        assert!((u.perplexity - 1.0).abs() < 1e-12);
    }
}
