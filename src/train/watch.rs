//! Collapse monitoring during training: each logged step's batch embeddings (and a tokenizer's
//! codes, a teacher's distributions) are measured, and the first sign of each kind of collapse
//! becomes a [`Warning`].

use crate::diagnose::monitor::{Reading, Readings};
use crate::diagnose::{self, CollapseStats, Verdict};
use crate::method::Signal;

use super::events::{Warning, WarningKind};

/// Steps before the codebook and teacher checks start: a random codebook starts narrow and
/// restarts need ~30 steps; a random teacher can start on few prototypes.
const SETTLE_STEPS: usize = 50;

/// What one logged step looked like.
pub struct Look {
    pub stats: CollapseStats,
    pub readings: Readings,
}

/// The step at which each kind of warning was first raised.
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstWarnings {
    pub complete_collapse: Option<usize>,
    pub dimensional_collapse: Option<usize>,
    pub codebook_collapse: Option<usize>,
    pub teacher_collapse: Option<usize>,
}

impl FirstWarnings {
    /// Where the first step of a collapse warning is kept (data warnings have their own count).
    fn slot(&mut self, kind: WarningKind) -> Option<&mut Option<usize>> {
        match kind {
            WarningKind::CompleteCollapse => Some(&mut self.complete_collapse),
            WarningKind::DimensionalCollapse => Some(&mut self.dimensional_collapse),
            WarningKind::CodebookCollapse => Some(&mut self.codebook_collapse),
            WarningKind::TeacherCollapse => Some(&mut self.teacher_collapse),
            WarningKind::CorruptImage => None,
        }
    }

    /// Records `kind` at `step` unless it was raised before; `Some` when this is the first time.
    fn raise(&mut self, kind: WarningKind, step: usize, message: String) -> Option<Warning> {
        let slot = self.slot(kind)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(step);
        Some(Warning {
            kind,
            step,
            message,
        })
    }
}

/// Measures one logged step; returns what it looked like and the warnings raised for the first time.
/// `centred`: measure the embeddings around their mean (ViT features of masked image models).
/// `hint`: what to check when the embeddings collapse, for this method and recipe.
pub fn look(
    first: &mut FirstWarnings,
    step: usize,
    embeddings: burn::tensor::Tensor<2>,
    signals: Vec<Signal>,
    centred: bool,
    hint: &str,
) -> (Look, Vec<Warning>) {
    let mut warnings = Vec::new();
    let [n, d] = embeddings.dims();
    let values = crate::host::to_f32(embeddings);
    let stats = diagnose::analyze_for(&values, n, d, centred);
    let readings = Readings::of(signals);
    for reading in readings
        .iter()
        .filter(|r| r.collapsed() && step >= SETTLE_STEPS)
    {
        let kind = match reading {
            Reading::Codebook(_) => WarningKind::CodebookCollapse,
            Reading::Distillation(_) => WarningKind::TeacherCollapse,
        };
        let message = match reading.explain() {
            Some(why) => format!("at step {step}: {}. {why}", reading.describe()),
            None => format!("at step {step}: {}", reading.describe()),
        };
        warnings.extend(first.raise(kind, step, message));
    }
    let kind = match stats.verdict {
        Verdict::CompleteCollapse => Some(WarningKind::CompleteCollapse),
        Verdict::DimensionalCollapse => Some(WarningKind::DimensionalCollapse),
        Verdict::Healthy => None,
    };
    if let Some(kind) = kind {
        let message = format!(
            "{} at step {step}: embedding std {:.4} (healthy {:.4}), effective rank {:.1} of {d}. {hint}",
            stats.verdict.as_str().replace('_', " "),
            stats.embedding_std,
            stats.healthy_std,
            stats.effective_rank,
        );
        warnings.extend(first.raise(kind, step, message));
    }
    (Look { stats, readings }, warnings)
}
