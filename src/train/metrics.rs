//! `metrics.jsonl`: one JSON object per logging step.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, write_atomic};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MetricsLine {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    /// Absent from logs written before it was recorded.
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Mean per-dimension std of the L2-normalised batch embeddings.
    pub embedding_std: f64,
    /// The healthy value of `embedding_std` (1/√d).
    pub healthy_std: f64,
    pub effective_rank: f64,
    pub images_per_s: f64,
    /// Unreadable images skipped so far (absent while there are none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub corrupt_images: usize,
    /// The loss's named parts (VICReg's invariance / variance / covariance, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub terms: std::collections::BTreeMap<String, f64>,
    /// What the method's own signals say on the batch (a tokenizer's codebook usage; a
    /// self-distillation teacher's entropies and the teacher–student KL).
    #[serde(flatten)]
    pub readings: crate::diagnose::monitor::Readings,
}

impl MetricsLine {
    /// Every number of the line but its step, tagged with its JSON key (nested ones joined by
    /// `/`: `terms/invariance`, `distillation/teacher_entropy`): TensorBoard's scalars.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, f64)>) {
            match value {
                serde_json::Value::Number(n) => out.extend(n.as_f64().map(|v| (prefix.into(), v))),
                serde_json::Value::Object(map) => {
                    for (key, v) in map {
                        let tag = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}/{key}")
                        };
                        walk(&tag, v, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(
            "",
            &serde_json::to_value(self).expect("serialisable"),
            &mut out,
        );
        out.retain(|(tag, _)| tag != "step");
        out
    }
}

/// Drops the lines of a JSON-lines log whose `step` is past `limit` (written by a run that was
/// killed after its last checkpoint), so a resumed log matches an uninterrupted one.
pub fn truncate_after_step(path: &Path, limit: usize) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|step| step as usize <= limit)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, kept.as_bytes())
}

/// Appends one line of `eval_history.jsonl`: the online kNN monitor after `epoch` epochs.
pub fn append_eval_history(path: &Path, epoch: usize, step: usize, knn_top1: f64) -> Result<()> {
    let line = serde_json::json!({"epoch": epoch, "step": step, "knn_top1": knn_top1});
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(file, "{line}").map_err(|e| Error::io(path, e))
}

/// `eval_history.jsonl` as (epoch, kNN top-1) pairs.
pub fn read_eval_history(path: &Path) -> Result<Vec<(usize, f64)>> {
    #[derive(Deserialize)]
    struct Line {
        epoch: usize,
        knn_top1: f64,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Line>(l)
                .map(|h| (h.epoch, h.knn_top1))
                .map_err(|e| Error::data(path, format!("bad line ({e}): {l}")))
        })
        .collect()
}

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the log for appending; lines after step `keep_through_step` (left by a run that was
    /// killed after its last checkpoint) are dropped so a resumed log matches an uninterrupted one.
    pub fn open(path: &Path, keep_through_step: Option<usize>) -> Result<Self> {
        match keep_through_step {
            Some(limit) => truncate_after_step(path, limit)?,
            None => write_atomic(path, b"")?,
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn write(&mut self, line: &MetricsLine) -> Result<()> {
        let mut text = serde_json::to_string(line).expect("serialisable");
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }

    pub fn read(path: &Path) -> Result<Vec<MetricsLine>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| Error::data(path, format!("bad metrics line ({e}): {l}")))
            })
            .collect()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
