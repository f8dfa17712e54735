//! Loader throughput on a folder of JPEGs: index, decode on worker threads, two SimCLR views
//! (random resized crop from the original resolution, flip, colour jitter, grayscale, blur with
//! SimCLR's 23-px kernel) at 224 px, normalised — what a 224-px pretraining run asks of the data
//! path. Compare with `benches/torch_loader.py` (torchvision `ImageFolder` + `DataLoader`) via
//! `benches/compare.sh`.
//!
//! cargo bench --bench loader -- FOLDER [images] [side]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use selfsup::augment::AugmentConfig;
use selfsup::data::loader::{Loader, Normalize};
use selfsup::data::{LoadOptions, OnCorrupt};

fn main() {
    selfsup::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let folder = PathBuf::from(args.first().expect("usage: loader FOLDER [images] [side]"));
    let images: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2048);
    let side: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(224);
    let start = Instant::now();
    let options = LoadOptions {
        view_side: Some(side),
        on_corrupt: OnCorrupt::Skip,
        shuffle_buffer: 1000,
        ..LoadOptions::default()
    };
    let splits = selfsup::data::load(Some(&folder), &options).expect("a photo folder");
    let train = splits.train.take(images);
    let normalize = Normalize {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    };
    let augment = AugmentConfig {
        size: side,
        ..AugmentConfig::default() // SimCLR strength 1, blur p = 0.5 on both views
    };
    let batch = 256.min(train.len());
    let loader = Arc::new(Loader::new(train, augment, normalize, batch, 0));
    let mut count = 0;
    for batch in loader.epoch(0, 0).iter() {
        count += batch.expect("readable images").size;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"bench\": \"loader_two_simclr_views_{side}px_jpeg\", \"framework\": \"selfsup\", \"images_per_s\": {:.1}, \"peak_rss_mb\": {:.0}, \"threads\": {}, \"images\": {count}}}",
        count as f64 / seconds,
        common::peak_rss_mb(),
        rayon::current_num_threads()
    );
}
