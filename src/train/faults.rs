//! Unreadable images met during a run: counted once each, the first few named in warnings.

use std::collections::HashSet;

use super::events::{Event, Observer, Warning, WarningKind};
use crate::data::Corrupt;

/// How many unreadable images are named (in warnings and the summary); the rest are counted.
const NAMED: usize = 5;

pub(super) struct CorruptImages {
    /// Found while loading, reported when the run starts.
    at_load: Vec<Corrupt>,
    seen: HashSet<String>,
    pub named: Vec<Corrupt>,
}

impl CorruptImages {
    pub fn new(at_load: Vec<Corrupt>) -> Self {
        CorruptImages {
            at_load,
            seen: HashSet::new(),
            named: Vec::new(),
        }
    }

    /// Reports what loading found (once).
    pub fn record_at_load(&mut self, step: usize, observer: &mut dyn Observer) {
        let found = std::mem::take(&mut self.at_load);
        self.record(found, step, observer);
    }

    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// Records `found`; the first few new ones become warnings.
    pub fn record(
        &mut self,
        found: impl IntoIterator<Item = Corrupt>,
        step: usize,
        observer: &mut dyn Observer,
    ) {
        for corrupt in found {
            if !self.seen.insert(corrupt.name.clone()) || self.named.len() >= NAMED {
                continue;
            }
            let more = if self.named.len() + 1 == NAMED {
                "; further ones are counted in metrics.jsonl and the summary, not named"
            } else {
                ""
            };
            observer.observe(&Event::Warning(Warning {
                kind: WarningKind::CorruptImage,
                step,
                message: format!(
                    "skipped unreadable image {} ({}); the next readable image took its place{more}",
                    corrupt.name, corrupt.reason
                ),
            }));
            self.named.push(corrupt);
        }
    }
}

/// `data.on_corrupt = "fail"`: the error once the run is checkpointed at `step`.
pub(super) fn stopped_by(corrupt: Corrupt, step: usize) -> crate::error::Error {
    corrupt.into_error_then(&format!(
        "; training stopped at step {step}, checkpointed: continue with --resume"
    ))
}
