//! Learning-rate schedule: linear warmup, then cosine decay (computed per step, no lr cap).

#[derive(Clone, Copy, Debug)]
pub struct WarmupCosine {
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Floor of the cosine, as a fraction of `base_lr`.
    pub final_fraction: f64,
}

impl WarmupCosine {
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let floor = self.base_lr * self.final_fraction;
        floor + (self.base_lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// A value moved from `start` to `end` along a half cosine over `total_steps` (DINO's weight-decay
/// and teacher-momentum schedules).
pub fn cosine_between(start: f64, end: f64, step: usize, total_steps: usize) -> f64 {
    let progress = (step as f64 / total_steps.max(1) as f64).min(1.0);
    end + (start - end) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = WarmupCosine {
            base_lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            final_fraction: 0.0,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12);
        let floor = WarmupCosine {
            final_fraction: 0.1,
            ..s
        };
        assert!((floor.lr(110) - 0.1).abs() < 1e-12);
    }
}
