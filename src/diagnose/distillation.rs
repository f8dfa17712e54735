//! The two ways a self-distillation run (DINO, iBOT, DINOv2) collapses, told apart from the
//! teacher's and the student's output distributions (Caron et al. 2021, §5.3 and Fig. 7): the
//! teacher's per-image entropy goes to ln K when every output turns uniform (centring without
//! sharpening), to 0 when one prototype dominates every image (sharpening without centring); in
//! both the KL between teacher and student goes to 0, since the student has nothing left to learn.
//! A healthy teacher is sharp per image yet spreads its images over many prototypes.

use serde::{Deserialize, Serialize};

/// Per-image teacher entropy above this fraction of ln K: the outputs are uniform.
pub const UNIFORM_ENTROPY_FRACTION: f64 = 0.9;
/// Entropy of the batch-averaged teacher distribution below this fraction of ln K: the images
/// share one or a few prototypes (at most K^0.2 in effect: 4 of 1024).
pub const DOMINANT_ENTROPY_FRACTION: f64 = 0.2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillationVerdict {
    Healthy,
    /// Every teacher output is (nearly) uniform over the prototypes.
    UniformCollapse,
    /// One prototype (or a few) takes (nearly) every image.
    DominantPrototypeCollapse,
}

impl DistillationVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            DistillationVerdict::Healthy => "healthy",
            DistillationVerdict::UniformCollapse => "uniform_collapse",
            DistillationVerdict::DominantPrototypeCollapse => "dominant_prototype_collapse",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            DistillationVerdict::Healthy => {
                "the teacher is sharp on each image and spreads the images over many prototypes"
            }
            DistillationVerdict::UniformCollapse => {
                "every teacher output is flat over the prototypes: sharpening lost to centring (lower the teacher temperature)"
            }
            DistillationVerdict::DominantPrototypeCollapse => {
                "one prototype (or a few) takes every image: nothing spreads the outputs (keep centring on, or Sinkhorn-Knopp)"
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DistillationStats {
    pub prototypes: usize,
    /// Mean over images of the teacher's entropy (nats); ln K is the uniform maximum.
    pub teacher_entropy: f64,
    /// Entropy of the teacher distribution averaged over the images.
    pub batch_entropy: f64,
    /// Mean over images of KL(teacher ‖ student).
    pub kl: f64,
    pub verdict: DistillationVerdict,
}

fn entropy(p: &[f32]) -> f64 {
    p.iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| -(v as f64) * (v as f64).ln())
        .sum()
}

/// Statistics of `n × k` row-major teacher and student probabilities (each row sums to 1).
pub fn analyze(teacher: &[f32], student: &[f32], n: usize, k: usize) -> DistillationStats {
    assert!(n >= 1 && k >= 2 && teacher.len() == n * k && student.len() == n * k);
    let mut mean = vec![0f32; k];
    let (mut teacher_entropy, mut kl) = (0.0, 0.0);
    for (t, s) in teacher.chunks_exact(k).zip(student.chunks_exact(k)) {
        teacher_entropy += entropy(t) / n as f64;
        kl += t
            .iter()
            .zip(s)
            .filter(|&(&p, _)| p > 0.0)
            .map(|(&p, &q)| p as f64 * ((p as f64) / (q as f64).max(1e-30)).ln())
            .sum::<f64>()
            / n as f64;
        for (m, &p) in mean.iter_mut().zip(t) {
            *m += p / n as f32;
        }
    }
    let batch_entropy = entropy(&mean);
    let max = (k as f64).ln();
    let verdict = if teacher_entropy > UNIFORM_ENTROPY_FRACTION * max {
        DistillationVerdict::UniformCollapse
    } else if batch_entropy < DOMINANT_ENTROPY_FRACTION * max {
        DistillationVerdict::DominantPrototypeCollapse
    } else {
        DistillationVerdict::Healthy
    };
    DistillationStats {
        prototypes: k,
        teacher_entropy,
        batch_entropy,
        kl,
        verdict,
    }
}

impl DistillationStats {
    /// One line for people: the verdict, the entropies against ln K, the KL.
    pub fn describe(&self) -> String {
        format!(
            "{}: teacher entropy {:.2} and batch entropy {:.2} of ln K = {:.2}, teacher–student KL {:.3}",
            self.verdict.as_str().replace('_', " "),
            self.teacher_entropy,
            self.batch_entropy,
            (self.prototypes as f64).ln(),
            self.kl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows sharp on prototype `pick(i)`: 0.9 there, the rest shared equally.
    fn sharp(n: usize, k: usize, pick: impl Fn(usize) -> usize) -> Vec<f32> {
        let mut rows = Vec::with_capacity(n * k);
        for i in 0..n {
            let hot = pick(i);
            rows.extend((0..k).map(|j| if j == hot { 0.9 } else { 0.1 / (k - 1) as f32 }));
        }
        rows
    }

    #[test]
    fn tells_the_two_collapses_from_a_healthy_teacher() {
        let (n, k) = (64, 16);
        // Healthy: sharp, images spread over all prototypes.
        let healthy = sharp(n, k, |i| i % k);
        let s = analyze(&healthy, &healthy, n, k);
        assert_eq!(s.verdict, DistillationVerdict::Healthy);
        assert!(s.kl.abs() < 1e-9, "identical student: KL 0");
        // Uniform: every row 1/K (entropy = ln K exactly).
        let uniform = vec![1.0 / k as f32; n * k];
        let s = analyze(&uniform, &uniform, n, k);
        assert_eq!(s.verdict, DistillationVerdict::UniformCollapse);
        assert!((s.teacher_entropy - (k as f64).ln()).abs() < 1e-5);
        // One prototype for every image.
        let dominant: Vec<f32> = (0..n)
            .flat_map(|_| (0..k).map(|j| if j == 3 { 1.0 } else { 0.0 }))
            .collect();
        let s = analyze(&dominant, &dominant, n, k);
        assert_eq!(s.verdict, DistillationVerdict::DominantPrototypeCollapse);
        assert!(s.teacher_entropy.abs() < 1e-9 && s.batch_entropy.abs() < 1e-9);
        // Images split between 2 of 1024 prototypes: batch entropy ln 2 < 0.2 ln 1024.
        let (n, k) = (8, 1024);
        let two: Vec<f32> = (0..n)
            .flat_map(|i| (0..k).map(move |j| if j == i % 2 { 1.0 } else { 0.0 }))
            .collect();
        assert_eq!(
            analyze(&two, &two, n, k).verdict,
            DistillationVerdict::DominantPrototypeCollapse
        );
        // The same over 16 prototypes is a small batch of a healthy teacher.
        let (n, k) = (16, 1024);
        let spread = sharp(n, k, |i| i);
        assert_eq!(
            analyze(&spread, &spread, n, k).verdict,
            DistillationVerdict::Healthy
        );
    }

    #[test]
    fn kl_matches_hand_computed_value() {
        // KL([1/2, 1/2] ‖ [1/4, 3/4]) = ½ ln 2 + ½ ln(2/3).
        let s = analyze(&[0.5, 0.5], &[0.25, 0.75], 1, 2);
        let want = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((s.kl - want).abs() < 1e-6, "{}", s.kl);
    }
}
