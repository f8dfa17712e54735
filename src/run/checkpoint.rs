//! Checkpoints: the whole method (students, teacher, BatchNorm statistics), the optimizer's
//! momentum buffers and the loop position, written as one directory that replaces the previous
//! one atomically (write `checkpoint.tmp/`, then swap).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{RunDir, load_module, read_json, save_module, write_json};
use crate::error::{Error, Result};
use crate::optim::Optimizer;

/// Where the loop stands: the next batch to run is `batch` of `epoch`; `step` steps are done.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Position {
    pub epoch: usize,
    pub batch: usize,
    pub step: usize,
}

impl Position {
    /// Whether this position can come from a run of `batches_per_epoch` batches per epoch; the
    /// error says why not.
    pub fn check(&self, batches_per_epoch: usize) -> std::result::Result<(), String> {
        let expected = self
            .epoch
            .checked_mul(batches_per_epoch)
            .and_then(|s| s.checked_add(self.batch));
        if self.batch <= batches_per_epoch && expected == Some(self.step) {
            return Ok(());
        }
        Err(format!(
            "step {} at epoch {} batch {} does not fit {batches_per_epoch} batches per epoch: the data or the batch size changed since the run started, or the file is damaged",
            self.step, self.epoch, self.batch
        ))
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Writes the checkpoint next to the current one, then swaps it in. When writing fails (disk
/// full, permissions) the half-written copy is removed, the previous checkpoint stays as it was
/// and the error says which step it holds.
pub fn save<M: Module>(
    run: &RunDir,
    method: &M,
    optimizer: &Optimizer,
    position: Position,
) -> Result<()> {
    let dir = run.checkpoint_dir();
    let tmp = sibling(&dir, ".tmp");
    let old = sibling(&dir, ".old");
    let written = write_into(&tmp, method, optimizer, position);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        let kept = latest(run).and_then(|d| read_json::<Position>(&d.join("position.json")).ok());
        let reason = match e {
            Error::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        return Err(Error::CheckpointWrite {
            step: position.step,
            path: dir,
            reason,
            kept: kept.map(|p| p.step),
        });
    }
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

fn write_into<M: Module>(
    tmp: &Path,
    method: &M,
    optimizer: &Optimizer,
    position: Position,
) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    save_module(method.clone(), &tmp.join("model.bpk"))?;
    optimizer.save(&tmp.join("optimizer.safetensors"))?;
    write_json(&tmp.join("position.json"), &position)
}

/// The newest complete checkpoint directory, if any (`checkpoint/`, or `checkpoint.old/` when a
/// crash hit between the two renames).
pub fn latest(run: &RunDir) -> Option<PathBuf> {
    let dir = run.checkpoint_dir();
    [dir.clone(), sibling(&dir, ".old")]
        .into_iter()
        .find(|d| d.join("position.json").is_file())
}

/// Restores the method, the optimizer and the position of a run of `batches_per_epoch` batches
/// per epoch; a position that cannot come from such a run is an error.
pub fn load<M: Module>(
    dir: &Path,
    fresh: M,
    optimizer: &mut Optimizer,
    device: &Device,
    batches_per_epoch: usize,
) -> Result<(M, Position)> {
    let method = load_module(fresh, &dir.join("model.bpk"))?;
    optimizer.load_for(&dir.join("optimizer.safetensors"), &method, device)?;
    let path = dir.join("position.json");
    let position: Position = read_json(&path)?;
    position
        .check(batches_per_epoch)
        .map_err(|msg| Error::Checkpoint { path, msg })?;
    Ok((method, position))
}
