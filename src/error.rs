//! One error type for the whole crate: every variant says what went wrong and what to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    #[error("recipe: {0}")]
    Recipe(String),
    #[error("{0}")]
    Usage(String),
    #[error("training diverged: {0}")]
    Diverged(String),
    /// `train` into a directory that already holds a run.
    #[error("{0}: already holds a run")]
    RunExists(PathBuf),
    /// A run directory without a checkpoint to resume or inspect.
    #[error("{0}: no checkpoint in this run directory")]
    NoCheckpoint(PathBuf),
    /// A run whose training has not finished (no final encoder yet).
    #[error("{0}: no trained encoder yet, the run has not finished")]
    Unfinished(PathBuf),
    #[error("{path}: cannot read checkpoint ({msg}); it may be from another run or corrupt")]
    Checkpoint { path: PathBuf, msg: String },
    /// Pretrained weights that cannot be used: the file, and what to do.
    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },
    /// SIGINT / SIGTERM stopped training after `step` steps, checkpointed in `checkpoint`.
    #[error("stopped by {} after step {step}; checkpoint written to {}", crate::train::signal_name(*signal), checkpoint.display())]
    Interrupted {
        signal: i32,
        step: usize,
        checkpoint: PathBuf,
    },
    /// Another process trains into the same run directory.
    #[error("{}: another `selfsup train`{} is writing to this run directory; wait for it to finish, stop it (Ctrl-C checkpoints it), or choose another --out", path.display(), pid.map(|p| format!(" (process {p})")).unwrap_or_default())]
    RunBusy { path: PathBuf, pid: Option<u32> },
    /// A checkpoint could not be written; the previous one (if any) is intact.
    #[error("could not write the checkpoint of step {step} to {} ({reason}); {}", path.display(), match kept { Some(s) => format!("the previous checkpoint (step {s}) is intact: free disk space or fix permissions, then continue with --resume"), None => "no earlier checkpoint exists: free disk space or fix permissions, then start again".to_string() })]
    CheckpointWrite {
        step: usize,
        path: PathBuf,
        reason: String,
        kept: Option<usize>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The process exit status for this error: 128 + the signal for an interrupted run (as a
    /// shell reports a process killed by it), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted { signal, .. } => 128 + signal,
            _ => 1,
        }
    }

    pub fn data(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        // A full disk must not be left fuller by a half-written temporary.
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
