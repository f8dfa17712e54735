//! Multi-head attention kernel speed on the ViT recipes' shapes, forward and backward, fastest
//! of 40 calls each (10 for ViT-S/16), with the GFLOP/s of its six products: at batch 128 and
//! four heads DINO's global (17 tokens) and local (5 tokens) crops at width 64, MAE's encoder (17
//! visible tokens, width 128) and decoder (65 tokens, width 64); ViT-S/16 at 224 px (197 tokens,
//! width 384, six heads) at batch 32.
//!
//! RAYON_NUM_THREADS=1 cargo run --release --example attention [-- NAME]   (shapes whose name contains NAME)
use selfsup::kernels::attention::{Heads, backward, forward};
use std::time::Instant;

fn main() {
    selfsup::allocator::keep_freed_memory();
    for (name, batch, tokens, dim, heads, calls) in [
        ("DINO global crops", 128, 17, 64, 4, 40),
        ("DINO local crops", 128, 5, 64, 4, 40),
        ("MAE encoder", 128, 17, 128, 4, 40),
        ("MAE decoder", 128, 65, 64, 4, 40),
        ("ViT-S/16, 224 px", 32, 197, 384, 6, 10),
    ] {
        if std::env::args()
            .nth(1)
            .is_some_and(|only| !name.contains(&only))
        {
            continue;
        }
        let s = Heads {
            batch,
            tokens,
            dim,
            heads,
        };
        let qkv: Vec<f32> = (0..s.batch * tokens * 3 * dim)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.002 - 1.0)
            .collect();
        let dout: Vec<f32> = (0..s.batch * tokens * dim)
            .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
            .collect();
        let (mut fastest_forward, mut fastest_backward) = (f64::MAX, f64::MAX);
        for _ in 0..calls {
            let start = Instant::now();
            let (_, probs) = forward(s, &qkv);
            fastest_forward = fastest_forward.min(start.elapsed().as_secs_f64());
            let start = Instant::now();
            std::hint::black_box(backward(s, &qkv, &probs, &dout));
            fastest_backward = fastest_backward.min(start.elapsed().as_secs_f64());
        }
        // Q·Kᵀ and P·V forward, four products backward: 2·tokens²·dim FLOP each per image.
        let product = 2.0 * (batch * tokens * tokens * dim) as f64;
        println!(
            "{name:18} {tokens:3} tokens × {dim:3}: forward {:7.3} ms ({:3.0} GFLOP/s), backward {:7.3} ms ({:3.0} GFLOP/s)",
            fastest_forward * 1e3,
            2.0 * product / fastest_forward / 1e9,
            fastest_backward * 1e3,
            4.0 * product / fastest_backward / 1e9
        );
    }
}
