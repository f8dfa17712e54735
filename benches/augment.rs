//! Augmentation throughput: two SimCLR-style views per 32×32×3 image (random resized crop, flip,
//! color jitter, grayscale, blur), on all cores via the loader. Compare with
//! `benches/torch_augment.py` via `benches/compare.sh`.
//!
//! cargo bench --bench augment -- [images]

use std::sync::Arc;
use std::time::Instant;

use selfsup::augment::AugmentConfig;
use selfsup::data::ImageSet;
use selfsup::data::loader::{Loader, Normalize};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8192);
    let side = 32;
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
    let loader = Arc::new(Loader::new(Arc::new(set), augment, normalize, 256, 0));
    let start = Instant::now();
    let mut images = 0;
    for batch in loader.epoch(0, 0).iter() {
        images += batch.size;
    }
    let ips = images as f64 / start.elapsed().as_secs_f64();
    println!(
        "{{\"bench\": \"augment_two_simclr_views_32px\", \"framework\": \"selfsup\", \"images_per_s\": {ips:.1}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
}
