//! WebDataset shards: `.tar` files of `key.jpg` / `key.png` / `key.webp` members with an optional
//! `key.cls` (the integer label). Indexing reads only the tar headers (a seek per member, no
//! image data); training then reads each shard front to back in a per-epoch shard order through
//! a shuffle buffer ([`super::stream::Stream::order`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::index::{Index, Location, is_image_extension};
use crate::error::{Error, Result};

/// Class numbers a `.cls` member may hold (ImageNet-21k has 21,841 classes).
const MAX_CLASSES: u32 = 1 << 20;

/// The `.tar` files directly in `dir`, sorted.
pub fn shards_in(dir: &Path) -> Vec<PathBuf> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tar"))
        .collect();
    shards.sort();
    shards
}

/// WebDataset's split of a member path into (key, extension): at the first dot of the file name.
fn key_and_extension(path: &str) -> Option<(&str, &str)> {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[name_start..].find('.')? + name_start;
    Some((&path[..dot], &path[dot + 1..]))
}

/// Indexes the image members of `shards`; labelled when every image has a `.cls`.
pub fn index(shards: &[PathBuf]) -> Result<Index> {
    let mut index = Index {
        shards: shards.to_vec(),
        ..Index::default()
    };
    let mut keys: Vec<String> = Vec::new();
    let mut classes: HashMap<String, u32> = HashMap::new();
    for (s, shard) in shards.iter().enumerate() {
        let start = index.locations.len();
        let file = std::fs::File::open(shard).map_err(|e| Error::io(shard, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let bad = |e: std::io::Error| {
            Error::data(
                shard,
                format!("not a readable tar shard ({e}); re-create or remove it"),
            )
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            let Some((key, ext)) = key_and_extension(&path) else {
                continue;
            };
            let key = format!("{s}/{key}");
            if ext.eq_ignore_ascii_case("cls") {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(bad)?;
                let label = text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&l| l < MAX_CLASSES)
                    .ok_or_else(|| {
                        Error::data(
                            shard,
                            format!(
                                "{path}: a .cls member must hold one class number from 0 to {}, not {text:?}",
                                MAX_CLASSES - 1
                            ),
                        )
                    })?;
                classes.insert(key, label);
            } else if is_image_extension(ext) {
                index.locations.push(Location::Member {
                    shard: s as u32,
                    offset: entry.raw_file_position(),
                    len: entry.size(),
                    key: path.clone(),
                });
                keys.push(key);
            }
        }
        index.shard_ranges.push(start..index.locations.len());
    }
    if index.is_empty() {
        return Err(Error::data(
            shards.first().map_or(Path::new("."), |p| p.as_path()),
            "no image members (key.jpg / key.png / key.webp) in these tar shards",
        ));
    }
    let labels: Option<Vec<u32>> = keys.iter().map(|k| classes.get(k).copied()).collect();
    if let Some(labels) = &labels {
        let count = labels.iter().max().map_or(0, |&m| m as usize + 1);
        index.classes = (0..count).map(|c| c.to_string()).collect();
    }
    index.labels = labels;
    Ok(index)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a shard of (name, bytes) members.
    pub(crate) fn write_shard(path: &Path, members: &[(String, Vec<u8>)]) {
        let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &bytes[..]).unwrap();
        }
        builder.finish().unwrap();
    }

    #[test]
    fn members_keys_and_labels() {
        assert_eq!(
            key_and_extension("a/b/x001.seg.png"),
            Some(("a/b/x001", "seg.png"))
        );
        assert_eq!(key_and_extension("x.jpg"), Some(("x", "jpg")));
        assert_eq!(key_and_extension("dir.v2/noext"), None);

        let dir = std::env::temp_dir().join(format!("selfsup-wds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shard = dir.join("s0.tar");
        let members = vec![
            ("a.jpg".to_string(), b"JPEGBYTES".to_vec()),
            ("a.cls".to_string(), b"2\n".to_vec()),
            ("a.txt".to_string(), b"caption".to_vec()),
            ("b.png".to_string(), b"PNGBYTES!!".to_vec()),
            ("b.cls".to_string(), b"0".to_vec()),
        ];
        write_shard(&shard, &members);
        let index = index(std::slice::from_ref(&shard)).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.labels, Some(vec![2, 0]));
        assert_eq!(index.classes, vec!["0", "1", "2"]);
        assert_eq!(index.read(0).unwrap(), b"JPEGBYTES");
        assert_eq!(index.read(1).unwrap(), b"PNGBYTES!!");
        assert!(index.name(1).ends_with("s0.tar:b.png"), "{}", index.name(1));
        assert_eq!(index.shard_ranges, vec![0..2]);

        // Without a .cls for every image there are no labels; a bad .cls names the member.
        let shard2 = dir.join("s1.tar");
        write_shard(&shard2, &[("c.jpg".into(), b"x".to_vec())]);
        assert_eq!(super::index(&[shard.clone(), shard2]).unwrap().labels, None);
        let bad = dir.join("bad.tar");
        write_shard(
            &bad,
            &[
                ("d.jpg".into(), b"x".to_vec()),
                ("d.cls".into(), b"cat".to_vec()),
            ],
        );
        let err = super::index(&[bad]).unwrap_err().to_string();
        assert!(
            err.contains("d.cls") && err.contains("class number"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
