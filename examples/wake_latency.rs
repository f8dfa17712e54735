//! How long a two-way rayon split takes after the calling thread has worked alone for a while,
//! with the other worker asleep (rayon's default) and with it polling
//! (`selfsup::device::WorkersPolling`, what training runs under): each half spins 50 µs, so 50 µs
//! is ideal. On a VM a sleeping worker wakes 40–90 µs late and the split takes up to twice as long.
//!
//! RAYON_NUM_THREADS=2 cargo run --release --example wake_latency
use rayon::prelude::*;
use std::time::{Duration, Instant};

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Mean wall time of a split of two 50-µs halves, each after `gap` of work on this thread alone.
fn split_after(gap: Duration) -> Duration {
    let rounds = 1000;
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        spin(gap);
        let start = Instant::now();
        (0..2)
            .into_par_iter()
            .for_each(|_| spin(Duration::from_micros(50)));
        total += start.elapsed();
    }
    total / rounds
}

fn main() {
    selfsup::device::compute_on_this_thread();
    println!("gap before the split   worker sleeping   worker polling   (ideal 50 µs)");
    for gap_us in [0, 20, 100, 1000] {
        let gap = Duration::from_micros(gap_us);
        let sleeping = split_after(gap);
        let polling = {
            let _polling = selfsup::device::WorkersPolling::start();
            split_after(gap)
        };
        println!(
            "{gap_us:>8} µs {:>20.1} µs {:>15.1} µs",
            sleeping.as_secs_f64() * 1e6,
            polling.as_secs_f64() * 1e6
        );
    }
}
