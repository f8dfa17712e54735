//! GELU and LayerNorm kernel speed, ns per element (fastest of 30 calls on 2²⁰ values; the
//! ViT recipes' row widths 64 and 128, and 256): the elementwise passes between a ViT's GEMMs.
//! Then batch norm + ReLU on the ResNet recipes' shapes (width 8, 28 px, batch 128).
//!
//! RAYON_NUM_THREADS=1 cargo run --release --example elementwise
use std::time::Instant;
fn main() {
    selfsup::allocator::keep_freed_memory();
    let best = |f: &dyn Fn()| {
        (0..30)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let n = 1 << 20;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 2001) as f32 / 500.0 - 2.0)
        .collect();
    let dy = vec![0.5f32; n];
    let f = best(&|| {
        std::hint::black_box(selfsup::kernels::gelu::forward_and_slope(&x));
    });
    let b = best(&|| {
        std::hint::black_box(selfsup::kernels::gelu::backward(&x, &dy));
    });
    println!(
        "gelu: fwd (value and slope) {:.2} ns/elem, bwd {:.2} ns/elem",
        f * 1e9 / n as f64,
        b * 1e9 / n as f64
    );
    for d in [64usize, 128, 256] {
        let (g, bt) = (vec![1.1f32; d], vec![0.1f32; d]);
        let f = best(&|| {
            std::hint::black_box(selfsup::kernels::layer_norm::forward(&x, &g, &bt, 1e-6));
        });
        let (_, mean, rstd) = selfsup::kernels::layer_norm::forward(&x, &g, &bt, 1e-6);
        let b = best(&|| {
            std::hint::black_box(selfsup::kernels::layer_norm::backward(
                &x, &g, &mean, &rstd, &dy,
            ));
        });
        println!(
            "layer norm d={d}: fwd {:.2} ns/elem, bwd {:.2} ns/elem",
            f * 1e9 / n as f64,
            b * 1e9 / n as f64
        );
    }
    for (channels, side) in [(8usize, 28usize), (16, 14), (32, 7), (64, 4)] {
        use selfsup::kernels::batch_norm::{Planes, backward, forward};
        let p = Planes {
            batch: 128,
            channels,
            spatial: side * side,
        };
        let len = p.batch * channels * p.spatial;
        let (x, dy) = (&x[..len], &dy[..len]);
        let (g, bt) = (vec![1.1f32; channels], vec![0.1f32; channels]);
        let f = best(&|| {
            std::hint::black_box(forward(p, x, &g, &bt, 1e-5, true, None));
        });
        let (y, mean, var) = forward(p, x, &g, &bt, 1e-5, true, None);
        let b = best(&|| {
            std::hint::black_box(backward(p, x, Some(&y), &g, &mean, &var, 1e-5, dy, false));
        });
        println!(
            "batch norm + relu {channels}×{side}²: fwd {:.2} ns/elem, bwd {:.2} ns/elem",
            f * 1e9 / len as f64,
            b * 1e9 / len as f64
        );
    }
}
