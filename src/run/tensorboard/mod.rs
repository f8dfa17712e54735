//! TensorBoard event files (`<run>/tb/`): the run's scalars, images and recipe in the format
//! TensorBoard reads (and `wandb sync --sync-tensorboard` imports). A file is a sequence of
//! TFRecords — length, masked CRC-32C of the length, an `Event` protocol buffer, its masked
//! CRC-32C — and the few `Event` / `Summary` fields used here are encoded by hand.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, write_atomic};

mod proto;
use proto::{decode_event, encode_event};

const FILE_VERSION: &str = "brain.Event:2";
/// What every event file's name contains; TensorBoard reads only such files.
const MARKER: &str = "tfevents";

/// What one summary value holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f32),
    /// A PNG and its size.
    Image {
        width: u32,
        height: u32,
        png: Vec<u8>,
    },
    /// Markdown (TensorBoard's text plugin).
    Text(String),
}

/// One event of a file: the file-version header, or tagged values at a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub values: Vec<(String, Value)>,
}

impl Value {
    /// A PNG file as an image.
    pub fn png_file(path: &Path) -> Result<Value> {
        let png = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (width, height) = png_size(&png)
            .ok_or_else(|| Error::data(path, "not a PNG file; cannot log it as an image"))?;
        Ok(Value::Image { width, height, png })
    }
}

/// Appends events to a run's event file.
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// Opens the event file in `dir` for a run starting at step 0 (a new file, replacing any
    /// there) or resumed from its checkpoint at `keep_through_step` (the file cut back to that
    /// step, so the curves continue without repeated steps). A damaged file is an error naming
    /// it, not silently replaced.
    pub fn open(dir: &Path, keep_through_step: Option<usize>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let existing = event_files(dir)?;
        let (path, kept) = match (keep_through_step, existing.last()) {
            (None, _) | (_, None) => {
                for stale in &existing {
                    std::fs::remove_file(stale).map_err(|e| Error::io(stale, e))?;
                }
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let path = dir.join(format!("events.out.{MARKER}.{secs}.selfsup"));
                let header = Event {
                    wall_time: now(),
                    step: 0,
                    file_version: Some(FILE_VERSION.into()),
                    values: Vec::new(),
                };
                (path, vec![header])
            }
            (Some(limit), Some(path)) => {
                let events = read_events(path)?;
                let kept = events
                    .into_iter()
                    .filter(|e| e.step <= limit as i64)
                    .collect();
                (path.clone(), kept)
            }
        };
        write_atomic(&path, &encode_file(&kept))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(EventWriter { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars at one step, as one event.
    pub fn scalars(&mut self, step: usize, values: &[(String, f64)]) -> Result<()> {
        let values = values
            .iter()
            .map(|(tag, v)| (tag.clone(), Value::Scalar(*v as f32)))
            .collect();
        self.write(step, values)
    }

    /// Markdown for TensorBoard's text tab.
    pub fn text(&mut self, step: usize, tag: &str, markdown: &str) -> Result<()> {
        self.write(step, vec![(tag.to_string(), Value::Text(markdown.into()))])
    }

    pub fn write(&mut self, step: usize, values: Vec<(String, Value)>) -> Result<()> {
        let event = Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            values,
        };
        // One write per record: a reader never sees half of one unless the process dies
        // mid-write, and the next open drops such a tail.
        self.file
            .write_all(&frame(&encode_event(&event)))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(())
    }
}

/// Adds what a command made of a finished run (its spectrum, evaluation, pictures) to the run's
/// event file at the last step it holds, replacing what an earlier call left under the same
/// tags. A run without event files (`train.tensorboard = false`) is left alone.
pub fn add_to_run(run: &super::RunDir, values: Vec<(String, Value)>) -> Result<()> {
    let Some(path) = event_files(&run.tensorboard_dir())?.pop() else {
        return Ok(());
    };
    let mut events = read_events(&path)?;
    let step = events.iter().map(|e| e.step).max().unwrap_or(0);
    for event in &mut events {
        event
            .values
            .retain(|(tag, _)| values.iter().all(|(t, _)| t != tag));
    }
    events.retain(|e| e.file_version.is_some() || !e.values.is_empty());
    events.push(Event {
        wall_time: now(),
        step,
        file_version: None,
        values,
    });
    write_atomic(&path, &encode_file(&events))
}

/// The event files in `dir`, oldest name first.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.") && n.contains(MARKER))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads an event file, checking every length and CRC. A record cut short at the end (a
/// process killed mid-write) ends the file; any other damage is an error.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let damaged =
        |what: String| Error::data(path, format!("{what}; delete the file to start it anew"));
    let mut events = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 12) else {
            break;
        };
        let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len_crc = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
        if masked_crc(&header[..8]) != len_crc {
            return Err(damaged(format!("length CRC mismatch at byte {at}")));
        }
        let start = at + 12;
        let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
            return Err(damaged(format!("record length {len} at byte {at}")));
        };
        let Some(data) = bytes.get(start..end) else {
            break;
        };
        let Some(crc) = bytes.get(end..end + 4) else {
            break;
        };
        if masked_crc(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(damaged(format!(
                "data CRC mismatch in the record at byte {at}"
            )));
        }
        events.push(decode_event(data).map_err(|e| damaged(format!("record at byte {at}: {e}")))?);
        at = end + 4;
    }
    Ok(events)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's CRC: CRC-32C, rotated and offset so that CRCs of CRCs stay well distributed.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn encode_file(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| frame(&encode_event(e)))
        .collect()
}

fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The width and height in a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..8)? != b"\x89PNG\r\n\x1a\n" || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC-32C check value (RFC 3720), and TFRecord's mask of it computed by hand:
        // rotr(0xE3069283, 15) = 0x2507C60D; + 0xA282EAD8 = 0xC78AB0E5.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn a_scalar_event_encodes_as_protobuf_bytes() {
        let event = Event {
            wall_time: 1.5,
            step: 300,
            file_version: None,
            values: vec![("loss".into(), Value::Scalar(0.25))],
        };
        let bytes = encode_event(&event);
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1.5f64.to_le_bytes());
        // step 300 = varint ac 02; summary (field 5) → value (field 1) → tag, simple_value.
        expected.extend_from_slice(&[0x10, 0xac, 0x02, 0x2a, 0x0d, 0x0a, 0x0b]);
        expected.extend_from_slice(&[0x0a, 0x04, b'l', b'o', b's', b's', 0x15]);
        expected.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(decode_event(&bytes).unwrap(), event);
    }

    #[test]
    fn files_round_trip_and_resume_drops_later_steps() {
        let root = std::env::temp_dir().join(format!("selfsup-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let run = crate::run::RunDir::new(&root);
        let dir = run.tensorboard_dir();
        let mut w = EventWriter::open(&dir, None).unwrap();
        w.text(0, "recipe", "`lr = 0.1`").unwrap();
        for step in 1..=6 {
            w.scalars(step, &[("loss".into(), 1.0 / step as f64)])
                .unwrap();
        }
        drop(w);
        let mut w = EventWriter::open(&dir, Some(4)).unwrap();
        w.scalars(5, &[("loss".into(), 0.5)]).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        // A second evaluation replaces the first, at the last step.
        for knn in [0.25, 0.75] {
            add_to_run(&run, vec![("knn".into(), Value::Scalar(knn))]).unwrap();
        }
        let events = read_events(&path).unwrap();
        assert_eq!(event_files(&dir).unwrap(), std::slice::from_ref(&path));
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!(events[1].values[0].1, Value::Text("`lr = 0.1`".into()));
        let steps: Vec<i64> = events[2..].iter().map(|e| e.step).collect();
        assert_eq!(steps, [1, 2, 3, 4, 5, 5]);
        assert_eq!(events[6].values[0].1, Value::Scalar(0.5));
        assert_eq!(events[7].values, [("knn".into(), Value::Scalar(0.75))]);

        // A record cut short by a kill is dropped; a flipped byte is an error.
        let mut bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(read_events(&path).unwrap().len(), 7);
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(err.contains("CRC mismatch"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
