//! AdamW's update of one parameter in a single vectorised pass over its values: composed from
//! burn's operations it takes a dozen passes, each allocating, per parameter and step. The
//! arithmetic is the reference's, operation for operation in f32, so results agree exactly.

use std::mem::MaybeUninit;

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

/// `(w', m', v')` after one step from weights `w`, gradient `g` and moments `m`, `v` (zeros
/// before the first step).
pub fn adamw(h: Adamw, w: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> [Vec<f32>; 3] {
    let n = w.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: lengths differ"
    );
    let [b1, one_b1, b2, one_b2, c1, c2, eps, keep] = h.scalars();
    let lr = h.lr as f32;
    let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| Vec::with_capacity(n));
    let [w_out, m_out, v_out] = &mut out;
    w_out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(m_out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
        .zip(v_out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, ((w_out, m_out), v_out))| {
            let at = chunk * CHUNK;
            let len = w_out.len();
            let inputs = [w, g, m, v].map(|x| &x[at..][..len]);
            vectorized(
                #[inline(always)]
                || {
                    for i in 0..len {
                        let [w, g, m, v] = inputs.map(|x| x[i]);
                        let m = m * b1 + g * one_b1;
                        let v = v * b2 + g * g * one_b2;
                        let update = (m / c1) / ((v / c2).sqrt() + eps);
                        w_out[i] = MaybeUninit::new(w * keep - update * lr);
                        m_out[i] = MaybeUninit::new(m);
                        v_out[i] = MaybeUninit::new(v);
                    }
                },
            )
        });
    for x in &mut out {
        // SAFETY: the chunks cover all `n` values of each output, each written above.
        unsafe { x.set_len(n) };
    }
    out
}
