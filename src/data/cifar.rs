//! CIFAR-10 / CIFAR-100 binary batches.

use std::path::Path;

use super::dataset::ImageSet;
use crate::error::{Error, Result};

const SIDE: usize = 32;
const IMAGE: usize = 3 * SIDE * SIDE;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    pub fn classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }
}

/// Which CIFAR variant `dir` holds, if any.
pub fn detect(dir: &Path) -> Option<Variant> {
    if dir.join("data_batch_1.bin").is_file() || dir.join("test_batch.bin").is_file() {
        Some(Variant::Cifar10)
    } else if dir.join("train.bin").is_file() && dir.join("test.bin").is_file() {
        Some(Variant::Cifar100)
    } else {
        None
    }
}

/// The class names from the folder's names file, or the label numbers when it is missing or
/// does not list one name per class.
fn class_names(dir: &Path, variant: Variant) -> Vec<String> {
    let file = match variant {
        Variant::Cifar10 => "batches.meta.txt",
        Variant::Cifar100 => "fine_label_names.txt",
    };
    let names: Vec<String> = std::fs::read_to_string(dir.join(file))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if names.len() == variant.classes() {
        names
    } else {
        (0..variant.classes()).map(|c| c.to_string()).collect()
    }
}

fn read_batches(dir: &Path, variant: Variant, files: &[&str]) -> Result<ImageSet> {
    let label_bytes = match variant {
        Variant::Cifar10 => 1,
        Variant::Cifar100 => 2,
    };
    let record = label_bytes + IMAGE;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for name in files {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(Error::data(
                &path,
                format!(
                    "size {} is not a multiple of the {record}-byte CIFAR record: the file is truncated or not a {variant:?} batch",
                    bytes.len()
                ),
            ));
        }
        let classes = variant.classes() as u32;
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            // CIFAR-100 records are (coarse, fine): the fine label is the one people report.
            let label = rec[label_bytes - 1] as u32;
            if label >= classes {
                return Err(Error::data(
                    &path,
                    format!(
                        "record {i} has label {label}, not one of {variant:?}'s {classes} classes: the file is damaged or not a {variant:?} batch"
                    ),
                ));
            }
            labels.push(label);
            pixels.extend_from_slice(&rec[label_bytes..]);
        }
    }
    Ok(ImageSet {
        pixels,
        channels: 3,
        height: SIDE,
        width: SIDE,
        labels: Some(labels),
        classes: class_names(dir, variant),
    })
}

/// Reads the train and test batches of a CIFAR folder.
pub fn read(dir: &Path, variant: Variant) -> Result<(ImageSet, Option<ImageSet>)> {
    match variant {
        Variant::Cifar10 => {
            let train: Vec<String> = (1..=5)
                .map(|i| format!("data_batch_{i}.bin"))
                .filter(|f| dir.join(f).is_file())
                .collect();
            if train.is_empty() {
                return Err(Error::data(
                    dir,
                    "no data_batch_*.bin files in this CIFAR-10 folder",
                ));
            }
            let names: Vec<&str> = train.iter().map(String::as_str).collect();
            let test = dir
                .join("test_batch.bin")
                .is_file()
                .then(|| read_batches(dir, variant, &["test_batch.bin"]))
                .transpose()?;
            Ok((read_batches(dir, variant, &names)?, test))
        }
        Variant::Cifar100 => Ok((
            read_batches(dir, variant, &["train.bin"])?,
            Some(read_batches(dir, variant, &["test.bin"])?),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label_bytes: &[u8], fill: u8) -> Vec<u8> {
        let mut r = label_bytes.to_vec();
        r.extend((0..IMAGE).map(|i| fill.wrapping_add(i as u8)));
        r
    }

    #[test]
    fn reads_cifar10_and_cifar100_batches() {
        let dir = std::env::temp_dir().join(format!("selfsup-cifar-{}", std::process::id()));
        let ten = dir.join("c10");
        std::fs::create_dir_all(&ten).unwrap();
        std::fs::write(
            ten.join("data_batch_1.bin"),
            [record(&[3], 0), record(&[9], 1)].concat(),
        )
        .unwrap();
        std::fs::write(ten.join("test_batch.bin"), record(&[5], 2)).unwrap();
        std::fs::write(
            ten.join("batches.meta.txt"),
            "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
        )
        .unwrap();
        assert_eq!(detect(&ten), Some(Variant::Cifar10));
        let (train, test) = read(&ten, Variant::Cifar10).unwrap();
        assert_eq!((train.len(), train.channels, train.height), (2, 3, 32));
        assert_eq!(train.labels, Some(vec![3, 9]));
        assert_eq!(train.image(1)[0], 1);
        assert_eq!(train.classes[3], "cat");
        assert_eq!(test.unwrap().labels, Some(vec![5]));

        let hundred = dir.join("c100");
        std::fs::create_dir_all(&hundred).unwrap();
        // (coarse, fine) labels: the fine one is used.
        std::fs::write(hundred.join("train.bin"), record(&[4, 77], 0)).unwrap();
        std::fs::write(
            hundred.join("test.bin"),
            [record(&[1, 12], 0), vec![0u8; 10]].concat(),
        )
        .unwrap();
        assert_eq!(detect(&hundred), Some(Variant::Cifar100));
        let err = read(&hundred, Variant::Cifar100).unwrap_err().to_string();
        assert!(
            err.contains("test.bin") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(hundred.join("test.bin"), record(&[1, 12], 0)).unwrap();
        let (train, _) = read(&hundred, Variant::Cifar100).unwrap();
        assert_eq!(train.labels, Some(vec![77]));
        std::fs::remove_dir_all(dir).ok();
    }
}
