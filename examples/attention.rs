//! Multi-head attention kernel speed on the ViT recipes' shapes at batch 128, forward and
//! backward, fastest of 40 calls each: DINO's global (17 tokens) and local (5 tokens) crops at
//! width 64, MAE's encoder (17 visible tokens, width 128) and decoder (65 tokens, width 64);
//! four heads each.
//!
//! RAYON_NUM_THREADS=1 cargo run --release --example attention
use selfsup::kernels::attention::{Heads, backward, forward};
use std::time::Instant;

fn main() {
    selfsup::allocator::keep_freed_memory();
    for (name, tokens, dim) in [
        ("DINO global crops", 17, 64),
        ("DINO local crops", 5, 64),
        ("MAE encoder", 17, 128),
        ("MAE decoder", 65, 64),
    ] {
        let s = Heads {
            batch: 128,
            tokens,
            dim,
            heads: 4,
        };
        let qkv: Vec<f32> = (0..s.batch * tokens * 3 * dim)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.002 - 1.0)
            .collect();
        let dout: Vec<f32> = (0..s.batch * tokens * dim)
            .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
            .collect();
        let (mut fastest_forward, mut fastest_backward) = (f64::MAX, f64::MAX);
        for _ in 0..40 {
            let start = Instant::now();
            let (_, probs) = forward(s, &qkv);
            fastest_forward = fastest_forward.min(start.elapsed().as_secs_f64());
            let start = Instant::now();
            std::hint::black_box(backward(s, &qkv, &probs, &dout));
            fastest_backward = fastest_backward.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{name:18} {tokens:2} tokens × {dim:3}: forward {:6.3} ms, backward {:6.3} ms",
            fastest_forward * 1e3,
            fastest_backward * 1e3
        );
    }
}
