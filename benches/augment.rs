//! Augmentation throughput: two SimCLR-style views per `side`×`side`×3 image (random resized
//! crop, flip, color jitter, grayscale, blur with SimCLR's kernel of a tenth of the side), on all
//! cores via the loader. Compare with `benches/torch_augment.py` via `benches/compare.sh`.
//!
//! cargo bench --bench augment -- [images] [side]

use std::sync::Arc;
use std::time::Instant;

use selfsup::augment::AugmentConfig;
use selfsup::data::ImageSet;
use selfsup::data::loader::{Loader, Normalize};

fn main() {
    selfsup::allocator::keep_freed_memory();
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = numbers.first().copied().unwrap_or(8192);
    let side = numbers.get(1).copied().unwrap_or(32);
    // Deterministic textured images (the content does not change the cost of these ops).
    let pixels: Vec<u8> = (0..n * 3 * side * side)
        .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
        .collect();
    let set = ImageSet {
        pixels,
        channels: 3,
        height: side,
        width: side,
        labels: None,
        classes: vec![],
    };
    let augment = AugmentConfig::default(); // SimCLR strength 1, blur p = 0.5 on both views
    let normalize = Normalize {
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    let batch = 256.min(n);
    let loader = Arc::new(Loader::new(set.into(), augment, normalize, batch, 0));
    let start = Instant::now();
    let mut images = 0;
    for batch in loader.epoch(0, 0).iter() {
        images += batch.expect("in-memory images always decode").size;
    }
    let ips = images as f64 / start.elapsed().as_secs_f64();
    println!(
        "{{\"bench\": \"augment_two_simclr_views_{side}px\", \"framework\": \"selfsup\", \"images_per_s\": {ips:.1}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
}
