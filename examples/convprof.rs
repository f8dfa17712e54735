//! Per-layer convolution timings (forward, backward) of ResNet-18 at 32×32, batch 64, with the
//! GFLOP/s each reaches: where the train step's time goes.
//!
//! With `SMALL=1`: the shipped recipes' ResNet-18 at width 8 on 28×28×1, batch 128. With `R50=1`:
//! ResNet-50's convolutions (ImageNet stem, stride on the 3×3s) at 224×224×3, batch 32, as the
//! 224-px train step runs them.
//!
//! cargo run --release --example convprof -- [c_in c_out side]   (one layer only)
//!
//! Each time is the fastest of `REPS` runs (default 5); a few hundred make a layer long enough
//! for `perf record`.
use burn::tensor::ops::ConvOptions;
use selfsup::kernels::conv::{ConvGeometry, backward, forward};
use std::time::Instant;
fn main() {
    selfsup::allocator::keep_freed_memory();
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let (small, r50) = (flag("SMALL"), flag("R50"));
    let width8 = [
        (1usize, 8usize, 28usize, 1usize, 3usize, 1usize),
        (8, 8, 28, 1, 3, 4),
        (8, 16, 28, 2, 3, 1),
        (16, 16, 14, 1, 3, 3),
        (8, 16, 28, 2, 1, 1),
        (16, 32, 14, 2, 3, 1),
        (32, 32, 7, 1, 3, 3),
        (16, 32, 14, 2, 1, 1),
        (32, 64, 7, 2, 3, 1),
        (64, 64, 4, 1, 3, 3),
        (32, 64, 7, 2, 1, 1),
    ];
    let width64 = [
        (3usize, 64usize, 32usize, 1usize, 3usize, 1usize),
        (64, 64, 32, 1, 3, 4),
        (64, 128, 32, 2, 3, 1),
        (128, 128, 16, 1, 3, 3),
        (64, 128, 32, 2, 1, 1),
        (128, 256, 16, 2, 3, 1),
        (256, 256, 8, 1, 3, 3),
        (128, 256, 16, 2, 1, 1),
        (256, 512, 8, 2, 3, 1),
        (512, 512, 4, 1, 3, 3),
        (256, 512, 8, 2, 1, 1),
    ];
    let resnet50 = [
        (3usize, 64usize, 224usize, 2usize, 7usize, 1usize),
        (64, 64, 56, 1, 1, 1),
        (256, 64, 56, 1, 1, 2),
        (64, 64, 56, 1, 3, 3),
        (64, 256, 56, 1, 1, 4),
        (256, 128, 56, 1, 1, 1),
        (128, 128, 56, 2, 3, 1),
        (128, 512, 28, 1, 1, 4),
        (256, 512, 56, 2, 1, 1),
        (512, 128, 28, 1, 1, 3),
        (128, 128, 28, 1, 3, 3),
        (512, 256, 28, 1, 1, 1),
        (256, 256, 28, 2, 3, 1),
        (256, 1024, 14, 1, 1, 6),
        (512, 1024, 28, 2, 1, 1),
        (1024, 256, 14, 1, 1, 5),
        (256, 256, 14, 1, 3, 5),
        (1024, 512, 14, 1, 1, 1),
        (512, 512, 14, 2, 3, 1),
        (512, 2048, 7, 1, 1, 3),
        (1024, 2048, 14, 2, 1, 1),
        (2048, 512, 7, 1, 1, 2),
        (512, 512, 7, 1, 3, 2),
    ];
    let (batch, layers): (usize, &[_]) = if r50 {
        (32, &resnet50)
    } else if small {
        (128, &width8)
    } else {
        (64, &width64)
    };
    let only: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let reps: usize = std::env::var("REPS").map_or(5, |v| v.parse().expect("REPS: a count"));
    let (mut tf, mut tb, mut fl_all) = (0.0, 0.0, 0.0);
    for &(cin, cout, side, stride, k, count) in layers {
        if only.len() == 3 && only != [cin, cout, side] {
            continue;
        }
        let o = ConvOptions::new([stride, stride], [k / 2, k / 2], [1, 1], 1);
        let g = ConvGeometry::new([batch, cin, side, side], [cout, cin, k, k], &o);
        let x = vec![0.5f32; batch * cin * side * side];
        let w = vec![0.1f32; cout * cin * k * k];
        let dy = vec![0.2f32; batch * cout * g.oh * g.ow];
        let fl = 2.0 * (batch * cout * cin * k * k * g.oh * g.ow) as f64;
        // The fastest of five (`REPS`): this machine's noise only ever adds time.
        let fastest = |f: &dyn Fn()| {
            f();
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let f = fastest(&|| {
            std::hint::black_box(forward(&g, &x, &w));
        });
        // The stem's input (the image) needs no gradient.
        let stem = cin == 3 || cin == 1;
        let b = fastest(&|| {
            std::hint::black_box(backward(&g, &x, &w, &dy, !stem, true));
        });
        let bfl = if stem { fl } else { 2.0 * fl };
        println!(
            "{cin}->{cout} {side}px s{stride} k{k} x{count}: fwd {:.2} ms {:.0} GF/s, bwd {:.2} ms {:.0} GF/s",
            f * 1e3,
            fl / f / 1e9,
            b * 1e3,
            bfl / b / 1e9
        );
        tf += f * count as f64;
        tb += b * count as f64;
        fl_all += (fl + bfl) * count as f64;
    }
    println!(
        "total conv fwd {:.0} ms, bwd {:.0} ms, {:.0} GF/s",
        tf * 1e3,
        tb * 1e3,
        fl_all / (tf + tb) / 1e9
    );
}
