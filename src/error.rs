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
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
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
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
