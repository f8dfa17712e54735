//! What one image costs a network: parameters, multiply-accumulates, and the f32 values autodiff
//! keeps for the backward pass, counted from the layers' real shapes. The saving rules are those
//! of selfsup's kernels (`kernels/flex.rs`) and burn's autodiff: a convolution or linear layer
//! keeps its input, batch norm its input (and its output when a ReLU is fused), ReLU and
//! LayerNorm their input, GELU its slope (as many values), attention its `qkv` and its
//! probabilities. A tensor kept by two operations is one buffer and is counted once.

use std::ops::{Add, AddAssign};

use serde::Serialize;

/// Per-image cost of a part of a network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Multiply-accumulates of the forward pass.
    pub macs: u64,
    /// f32 values kept for the backward pass.
    pub saved: u64,
    /// The largest single activation (the transient of a pass that keeps nothing).
    pub widest: u64,
}

impl Cost {
    pub fn new(macs: u64, saved: u64, widest: u64) -> Self {
        Cost {
            macs,
            saved,
            widest,
        }
    }

    pub fn times(self, n: u64) -> Cost {
        Cost {
            macs: self.macs * n,
            saved: self.saved * n,
            widest: self.widest,
        }
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            macs: self.macs + other.macs,
            saved: self.saved + other.saved,
            widest: self.widest.max(other.widest),
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}

/// One row of a network's cost table: a stem, a stage, a block group or a head.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    pub name: String,
    /// The output of one image, e.g. "256×56×56" or "197×384".
    pub output: String,
    pub params: usize,
    pub cost: Cost,
}

impl Stage {
    pub fn new(name: impl Into<String>, output: String, params: usize, cost: Cost) -> Self {
        Stage {
            name: name.into(),
            output,
            params,
            cost,
        }
    }
}

/// The sum of a table's rows.
pub fn total(stages: &[Stage]) -> Cost {
    stages.iter().map(|s| s.cost).sum()
}

/// A linear layer `d_in → d_out` applied to `tokens` vectors per image: it keeps its input.
pub fn linear(d_in: usize, d_out: usize, tokens: usize) -> Cost {
    let (i, o, t) = (d_in as u64, d_out as u64, tokens as u64);
    Cost::new(i * o * t, i * t, o.max(i) * t)
}

/// One pre-norm transformer block of width `dim` over `tokens` tokens whose output keeps `kept`
/// of them (all, but for a decoder's last block): LayerNorm 1's input and output, `qkv` and the
/// attention probabilities over every token; the attention output, the residual sum, LayerNorm
/// 2's output, the MLP's hidden layer before and after GELU (+ the LayerScale inputs) over the
/// kept ones; LayerNorm's two statistics per token.
pub fn transformer_block(
    dim: usize,
    hidden: usize,
    heads: usize,
    [tokens, kept]: [usize; 2],
    layer_scale: bool,
) -> Cost {
    let (d, m, h, n, k) = (
        dim as u64,
        hidden as u64,
        heads as u64,
        tokens as u64,
        kept as u64,
    );
    let per_token = 5 * d + h * n + 2;
    let per_kept = 2 * d + 2 * m + 2 + if layer_scale { 2 * d } else { 0 };
    let macs = n * 3 * d * d + 2 * n * n * d + k * (d * d + 2 * d * m);
    Cost::new(macs, per_token * n + per_kept * k, (h * n * n).max(m * k))
}

/// `a×b×c`, the shape column of a cost table.
pub fn shape(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}
