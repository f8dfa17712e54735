//! AdamW's update of one parameter in a single vectorised pass over its values: composed from
//! burn's operations it takes a dozen passes, each allocating, per parameter and step. The
//! arithmetic is the reference's, operation for operation in f32, so results agree exactly.

use rayon::prelude::*;

use super::simd::vectorized;

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// One AdamW step's constants (PyTorch semantics: bias-corrected moments, decoupled decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adamw {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// `lr · weight decay`; zero for parameters exempt from decay.
    pub decay: f64,
    /// The step being taken, from 1: the bias corrections' exponent.
    pub step: i32,
}

impl Adamw {
    /// The f32 scalars in the order the update uses them, each rounded from f64 once as burn
    /// rounds a scalar operand.
    fn scalars(&self) -> [f32; 8] {
        let [b1, b2] = self.betas;
        [
            b1 as f32,
            (1.0 - b1) as f32,
            b2 as f32,
            (1.0 - b2) as f32,
            (1.0 - b1.powi(self.step)) as f32,
            (1.0 - b2.powi(self.step)) as f32,
            self.eps as f32,
            (1.0 - self.decay) as f32,
        ]
    }
}

/// One step in place: weights `w` and moments `m`, `v` (zeros before the first step) become
/// `(w', m', v')` from gradient `g`. In place, because fresh outputs cost a write-allocate pass
/// over three new buffers per parameter and step.
pub fn adamw(h: Adamw, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let n = w.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: lengths differ"
    );
    let [b1, one_b1, b2, one_b2, c1, c2, eps, keep] = h.scalars();
    let lr = h.lr as f32;
    w.par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((w, m), v), g)| {
            vectorized(
                #[inline(always)]
                || {
                    for i in 0..w.len() {
                        let m_i = m[i] * b1 + g[i] * one_b1;
                        let v_i = v[i] * b2 + g[i] * g[i] * one_b2;
                        let update = (m_i / c1) / ((v_i / c2).sqrt() + eps);
                        w[i] = w[i] * keep - update * lr;
                        m[i] = m_i;
                        v[i] = v_i;
                    }
                },
            )
        });
}
