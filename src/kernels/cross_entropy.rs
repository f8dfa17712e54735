//! DINO's cross-entropy between the teacher's target distributions and the student's
//! temperature softmax, over every (teacher crop, other student crop) pair: one pass over each
//! student row for the loss and one for its gradient, rows split over threads. Composed from
//! burn's operations it is a dozen serial passes over the `[crops · batch, prototypes]` logits
//! per pair and direction.

use rayon::prelude::*;

use super::geometry::output_buffer;
use super::simd::{BLOCK, exp, lane_max, lane_sum_by, lane_sums_by, vectorized};

/// `teacher · batch` target rows and `student · batch` logit rows of `classes` values, crop by
/// crop; the first `teacher` student crops are the teacher's crops in the same order, and a
/// crop is never paired with itself.
#[derive(Clone, Copy, Debug)]
pub struct Crops {
    pub batch: usize,
    pub teacher: usize,
    pub student: usize,
    pub classes: usize,
}

impl Crops {
    /// The teacher crops paired with student crop `crop`.
    fn partners(self, crop: usize) -> impl Iterator<Item = usize> {
        (0..self.teacher).filter(move |&j| j != crop)
    }

    /// Number of (teacher crop, student crop) pairs: the loss is their mean.
    pub fn pairs(self) -> usize {
        (0..self.student).map(|i| self.partners(i).count()).sum()
    }

    fn check(self, targets: &[f32], student: &[f32]) {
        assert!(self.classes > 0 && self.teacher <= self.student);
        assert_eq!(targets.len(), self.teacher * self.batch * self.classes);
        assert_eq!(student.len(), self.student * self.batch * self.classes);
    }

    /// Student row `row`'s partner targets summed into `sum` (zeros when it has none).
    fn target_sum(self, targets: &[f32], row: usize, sum: &mut Vec<f32>) {
        let (crop, sample) = (row / self.batch, row % self.batch);
        let k = self.classes;
        sum.clear();
        sum.resize(k, 0.0);
        for j in self.partners(crop) {
            let t = &targets[(j * self.batch + sample) * k..][..k];
            for (s, &v) in sum.iter_mut().zip(t) {
                *s += v;
            }
        }
    }
}

/// Student rows per parallel task: about 16,384 values.
fn rows_per_task(classes: usize) -> usize {
    (16_384 / classes).max(1)
}

/// `(loss, log Σ_k exp(s_k / τ) of every student row)`: the loss is the mean over pairs and
/// samples of `−Σ_k t_k · log softmax(s / τ)_k`; the rows' log-sum-exps are what [`backward`]
/// needs.
pub fn forward(s: Crops, targets: &[f32], student: &[f32], temperature: f32) -> (f64, Vec<f32>) {
    s.check(targets, student);
    assert!(temperature > 0.0);
    let inv = 1.0 / temperature;
    let per_row: Vec<(f64, f32)> = student
        .par_chunks(s.classes)
        .enumerate()
        .with_min_len(rows_per_task(s.classes))
        .map_init(Vec::new, |sum, (row, logits)| {
            s.target_sum(targets, row, sum);
            if s.classes >= BLOCK {
                row_loss::<true>(logits, sum, inv)
            } else {
                row_loss::<false>(logits, sum, inv)
            }
        })
        .collect();
    // Summed in row order, whatever the split: the same loss on any thread count.
    let total: f64 = per_row.iter().map(|&(loss, _)| loss).sum();
    let lse = per_row.into_iter().map(|(_, lse)| lse).collect();
    (total / (s.pairs() * s.batch).max(1) as f64, lse)
}

/// One row's `(−Σ_k t_k · (s_k / τ − lse), lse)` for targets `t` summed over its partners:
/// `lse · Σt − Σ t·s / τ`.
fn row_loss<const LONG: bool>(logits: &[f32], targets: &[f32], inv: f32) -> (f64, f32) {
    vectorized(
        #[inline(always)]
        || {
            let max = lane_max(logits) * inv;
            let sum = lane_sum_by::<LONG>(
                logits,
                logits,
                #[inline(always)]
                |v, _| exp(v * inv - max),
            );
            let lse = max as f64 + sum.ln();
            let (dot, mass) = lane_sums_by::<LONG>(
                targets,
                logits,
                logits,
                #[inline(always)]
                |t, v, _| (t * v, t),
            );
            (lse * mass - inv as f64 * dot, lse as f32)
        },
    )
}

/// `∂loss/∂s` from the forward's row log-sum-exps: per row
/// `dloss / (pairs · batch · τ) · (Σt · softmax(s / τ) − t)`, `t` summed over its partners.
pub fn backward(
    s: Crops,
    targets: &[f32],
    student: &[f32],
    lse: &[f32],
    temperature: f32,
    dloss: f32,
) -> Vec<f32> {
    s.check(targets, student);
    assert_eq!(lse.len(), s.student * s.batch);
    let inv = 1.0 / temperature;
    let scale = dloss * inv / (s.pairs() * s.batch).max(1) as f32;
    let len = student.len();
    let mut ds = output_buffer(len);
    ds.spare_capacity_mut()[..len]
        .par_chunks_mut(s.classes)
        .zip(student.par_chunks(s.classes))
        .enumerate()
        .with_min_len(rows_per_task(s.classes))
        .for_each_init(Vec::new, |sum, (row, (out, logits))| {
            s.target_sum(targets, row, sum);
            let lse = lse[row];
            vectorized(
                #[inline(always)]
                || {
                    let mass = sum.iter().sum::<f32>();
                    for ((o, &v), &t) in out.iter_mut().zip(logits).zip(sum.iter()) {
                        o.write(scale * (mass * exp(v * inv - lse) - t));
                    }
                },
            )
        });
    // SAFETY: the rows cover all `len` values, each written above.
    unsafe { ds.set_len(len) };
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss in f64 straight from its definition: pairs (j, i ≠ j), per sample
    /// −Σ_k t_jk · log softmax(s_i / τ)_k, averaged.
    fn loss_by_definition(s: Crops, targets: &[f32], student: &[f32], tau: f64) -> f64 {
        let k = s.classes;
        let mut total = 0.0;
        for i in 0..s.student {
            for j in (0..s.teacher).filter(|&j| j != i) {
                for b in 0..s.batch {
                    let logits = &student[(i * s.batch + b) * k..][..k];
                    let t = &targets[(j * s.batch + b) * k..][..k];
                    let max = logits.iter().fold(f64::MIN, |m, &v| m.max(v as f64 / tau));
                    let lse = max
                        + logits
                            .iter()
                            .map(|&v| (v as f64 / tau - max).exp())
                            .sum::<f64>()
                            .ln();
                    total -= t
                        .iter()
                        .zip(logits)
                        .map(|(&t, &v)| t as f64 * (v as f64 / tau - lse))
                        .sum::<f64>();
                }
            }
        }
        total / (s.pairs() * s.batch) as f64
    }

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn loss_and_gradient_match_the_definition() {
        // Short rows and rows through the block loop; DINO's two global and two local crops,
        // a student crop without partners (the one teacher crop's own), only global crops.
        for (teacher, student, classes) in [(2, 4, 37), (2, 3, 130), (1, 3, 5), (2, 2, 64)] {
            let s = Crops {
                batch: 3,
                teacher,
                student,
                classes,
            };
            let logits: Vec<f32> = pseudo_random(student * 3 * classes, 7)
                .iter()
                .map(|v| 4.0 * v)
                .collect();
            // Targets: softmax rows of other values, as the teacher's are.
            let mut targets = pseudo_random(teacher * 3 * classes, 11);
            for row in targets.chunks_mut(classes) {
                let total: f32 = row.iter().map(|v| v.exp()).sum();
                row.iter_mut().for_each(|v| *v = v.exp() / total);
            }
            let tau = 0.1;
            let (loss, lse) = forward(s, &targets, &logits, tau as f32);
            let want = loss_by_definition(s, &targets, &logits, tau);
            assert!(
                (loss - want).abs() < 1e-5 * want.abs().max(1.0),
                "{s:?}: {loss} vs {want}"
            );
            let grad = backward(s, &targets, &logits, &lse, tau as f32, 2.0);
            let h = 1e-3;
            for idx in (0..logits.len()).step_by(7) {
                let mut plus = logits.clone();
                plus[idx] += h as f32;
                let mut minus = logits.clone();
                minus[idx] -= h as f32;
                let dh = (plus[idx] - minus[idx]) as f64;
                let numeric = 2.0
                    * (loss_by_definition(s, &targets, &plus, tau)
                        - loss_by_definition(s, &targets, &minus, tau))
                    / dh;
                assert!(
                    (grad[idx] as f64 - numeric).abs() < 1e-3 * numeric.abs().max(1.0),
                    "{s:?}: d/ds[{idx}] {} vs {numeric}",
                    grad[idx]
                );
            }
        }
    }
}
