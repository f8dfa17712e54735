//! Cuts the small Fashion-MNIST subset shipped in `data/fashion-mnist/` from the full dataset
//! (Debian package `dataset-fashion-mnist`).
//!
//! cargo run --release --example make_subset -- /usr/share/datasets/fashion-mnist data/fashion-mnist 10000 2000

use std::io::Write;
use std::path::PathBuf;

use selfsup::data::idx;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: make_subset <full-dir> <out-dir> <train-count> <test-count>");
        std::process::exit(2);
    }
    let (src, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    std::fs::create_dir_all(&out).unwrap();
    for (prefix, count) in [("train", &args[3]), ("t10k", &args[4])] {
        let set = idx::read_split(&src, prefix)
            .unwrap()
            .take(count.parse().unwrap());
        std::fs::write(
            out.join(format!("{prefix}-images-idx3-ubyte.gz")),
            gz(&idx::encode_images(&set)),
        )
        .unwrap();
        let labels = set.labels.as_ref().unwrap();
        std::fs::write(
            out.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            gz(&idx::encode_labels(labels)),
        )
        .unwrap();
        println!("{prefix}: {} images", set.len());
    }
}
