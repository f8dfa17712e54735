//! One writer per run directory: `train` holds an exclusive `flock` on `<run>/.lock` while it
//! runs. The kernel drops the lock when the process ends, however it ends, so a killed run never
//! leaves the directory stuck.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};

use super::RunDir;
use crate::error::{Error, Result};

/// Held for as long as a run is being trained.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the run directory's lock (creating the directory), or says who holds it.
    pub fn acquire(run: &RunDir) -> Result<RunLock> {
        std::fs::create_dir_all(&run.root).map_err(|e| Error::io(&run.root, e))?;
        let path = run.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::RunBusy {
                    path: run.root.clone(),
                    pid: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Who holds it, for the error another process will print.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let root = std::env::temp_dir().join(format!("selfsup-lock-{}", std::process::id()));
        let run = RunDir::new(&root);
        let first = RunLock::acquire(&run).unwrap();
        let err = RunLock::acquire(&run).err().expect("second lock refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("process {}", std::process::id())) && msg.contains("--out"),
            "{msg}"
        );
        drop(first);
        RunLock::acquire(&run).expect("free again once dropped");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
