//! Writes a photo-like image folder (and optionally WebDataset shards of the same images) from
//! real images: Fashion-MNIST upscaled to mixed sizes and aspect ratios, or crops of the sample
//! photographs in `data/photos/`. For the streaming loader's runs, tests and benchmark.
//!
//! cargo run --release --example photo_folder -- OUT [fashion|photos] [--train N] [--val N]
//!     [--size WxH | --sides MIN-MAX] [--shards PER_SHARD] [--corrupt N] [--jpeg-only] [--seed N]
//!
//! `fashion` reads the full Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian's
//! dataset-fashion-mnist) when present, else the subset in `data/`.

#[path = "../tests/common/photos.rs"]
mod photos;

use std::path::PathBuf;

use photos::{Size, Source, Spec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: photo_folder OUT [fashion|photos] [--train N] [--val N] [--size WxH | --sides MIN-MAX] [--shards PER_SHARD] [--corrupt N] [--jpeg-only] [--seed N]";
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: usize| {
        flag(name).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name} {v}: not a number\n{usage}");
                std::process::exit(2)
            })
        })
    };
    let photos_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/photos"));
    let source = if args.iter().any(|a| a == "photos") {
        Source::Photos(photos_dir)
    } else {
        let full = PathBuf::from(selfsup::data::DEBIAN_FASHION_MNIST);
        Source::Fashion(if full.is_dir() {
            full
        } else {
            selfsup::data::bundled_path()
        })
    };
    let size = if let Some(s) = flag("--size") {
        let (w, h) = s.split_once('x').expect("--size WxH");
        Size::Fixed(w.parse().unwrap(), h.parse().unwrap())
    } else {
        let s = flag("--sides").unwrap_or_else(|| "96-375".into());
        let (a, b) = s.split_once('-').expect("--sides MIN-MAX");
        Size::Mixed {
            min: a.parse().unwrap(),
            max: b.parse().unwrap(),
        }
    };
    let spec = Spec {
        source,
        train: number("--train", 20_000),
        val: number("--val", 2_000),
        size,
        corrupt: number("--corrupt", 0),
        jpeg_only: args.iter().any(|a| a == "--jpeg-only"),
        seed: number("--seed", 0) as u64,
    };
    let (images, classes) = photos::generate(&spec);
    photos::write_folder(&out, &images);
    let bytes: usize = images.iter().map(|w| w.bytes.len()).sum();
    eprintln!(
        "{}: {} images in {} classes, {} MB",
        out.display(),
        images.len(),
        classes.len(),
        bytes >> 20
    );
    if let Some(per) = flag("--shards") {
        let shards = PathBuf::from(format!("{}-shards", out.display()));
        photos::write_shards(&shards, &images, per.parse().expect("--shards N"));
        eprintln!("{}: the same images as WebDataset shards", shards.display());
    }
}
