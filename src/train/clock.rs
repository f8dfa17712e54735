//! Wall-clock bookkeeping of a run: throughput per logging window, time spent making batches.

use std::time::Instant;

pub(super) struct Clock {
    started: Instant,
    window_start: Instant,
    window_images: usize,
    pub trained_images: usize,
    /// Seconds spent making batches (reading, decoding, augmenting).
    pub data: f64,
    pub final_loss: f64,
}

impl Clock {
    pub fn start() -> Self {
        let now = Instant::now();
        Clock {
            started: now,
            window_start: now,
            window_images: 0,
            trained_images: 0,
            data: 0.0,
            final_loss: f64::NAN,
        }
    }

    /// Seconds since the start (never 0).
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn trained(&mut self, images: usize) {
        self.window_images += images;
        self.trained_images += images;
    }

    /// Images per second since the last call, which starts a new window.
    pub fn window_rate(&mut self) -> f64 {
        let rate = self.window_images as f64 / self.window_start.elapsed().as_secs_f64();
        self.window_start = Instant::now();
        self.window_images = 0;
        rate
    }
}
