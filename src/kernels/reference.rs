//! The fused operations composed from burn's own backend operations: the default bodies of
//! [`super::KernelOps`] (so the GPU backend and autodiff over it get them, gradients included)
//! and the fallback for inputs the flex kernels do not take.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Scalar, Slice, TensorMetadata};
use burn::tensor::Shape;

/// Training-mode batch norm, then ReLU when `relu`: `(output, batch mean, batch variance)`.
pub fn batch_norm_act<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    relu: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let result = B::batch_norm_train(x, gamma, beta, epsilon);
    let output = if relu {
        B::relu(result.output)
    } else {
        result.output
    };
    (output, result.mean, result.variance)
}

/// `relu(bn(x) + residual)` in training mode: `(output, batch mean, batch variance)`.
pub fn batch_norm_add_relu<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    residual: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let result = B::batch_norm_train(x, gamma, beta, epsilon);
    let output = B::relu(B::float_add(result.output, residual));
    (output, result.mean, result.variance)
}

/// GELU `x·Φ(x) = x/2·(1 + erf(x/√2))` from `erf`, so that autodiff takes erf's exact
/// derivative: burn's own `gelu` differentiates the tanh approximation (relative gradient error
/// up to ~1e-3).
pub fn gelu_erf<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let erf = B::float_erf(B::float_mul_scalar(
        x.clone(),
        Scalar::from(std::f64::consts::FRAC_1_SQRT_2),
    ));
    let half_cdf = B::float_mul_scalar(
        B::float_add_scalar(erf, Scalar::from(1.0)),
        Scalar::from(0.5),
    );
    B::float_mul(x, half_cdf)
}

/// LayerNorm over the last dimension with the biased variance.
pub fn layer_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    // [d] → [1, …, 1, d] so that the affine parameters broadcast over the leading dims.
    let mut param_dims = vec![1; last];
    param_dims.push(shape[last]);
    let mean = B::float_mean_dim(x.clone(), last);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(
        var,
        Scalar::from(epsilon),
    )));
    let normalized = B::float_mul(centered, rstd);
    let gamma = B::float_reshape(gamma, Shape::from(param_dims.clone()));
    let beta = B::float_reshape(beta, Shape::from(param_dims));
    B::float_add(B::float_mul(normalized, gamma), beta)
}

/// `softmax(Q·Kᵀ/√d_h)·V` per head from `qkv [b, n, 3d]` (tokens laid out `[3, heads, d_h]`),
/// heads concatenated back to `[b, n, d]`.
pub fn multi_head_attention<B: Backend>(qkv: FloatTensor<B>, heads: usize) -> FloatTensor<B> {
    let shape = qkv.shape();
    let (b, n, d) = (shape[0], shape[1], shape[2] / 3);
    let hd = d / heads;
    let qkv = B::float_reshape(qkv, Shape::from(vec![b, n, 3, heads, hd]));
    let qkv = B::float_permute(qkv, &[2, 0, 3, 1, 4]);
    let part = |i: usize| {
        let full = |len: usize| Slice::from(0..len);
        let slices = [
            Slice::from(i..i + 1),
            full(b),
            full(heads),
            full(n),
            full(hd),
        ];
        B::float_reshape(
            B::float_slice(qkv.clone(), &slices),
            Shape::from(vec![b, heads, n, hd]),
        )
    };
    let (q, k, v) = (part(0), part(1), part(2));
    let scores = B::float_matmul(
        B::float_mul_scalar(q, Scalar::from(1.0 / (hd as f64).sqrt())),
        B::float_swap_dims(k, 2, 3),
    );
    let max = B::float_max_dim(scores.clone(), 3);
    let e = B::float_exp(B::float_sub(scores, max));
    let probs = B::float_div(e.clone(), B::float_sum_dim(e, 3));
    let out = B::float_swap_dims(B::float_matmul(probs, v), 1, 2);
    B::float_reshape(out, Shape::from(vec![b, n, d]))
}

/// One AdamW step of a flat parameter: `(w', m', v')`; see [`super::update::adamw`].
pub fn adamw<B: Backend>(
    w: FloatTensor<B>,
    g: FloatTensor<B>,
    m: FloatTensor<B>,
    v: FloatTensor<B>,
    h: super::update::Adamw,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let [b1, b2] = h.betas;
    let times = |x: FloatTensor<B>, s: f64| B::float_mul_scalar(x, Scalar::from(s));
    let m = B::float_add(times(m, b1), times(g.clone(), 1.0 - b1));
    let v = B::float_add(times(v, b2), times(B::float_mul(g.clone(), g), 1.0 - b2));
    let m_hat = B::float_div_scalar(m.clone(), Scalar::from(1.0 - b1.powi(h.step)));
    let v_hat = B::float_div_scalar(v.clone(), Scalar::from(1.0 - b2.powi(h.step)));
    let update = B::float_div(
        m_hat,
        B::float_add_scalar(B::float_sqrt(v_hat), Scalar::from(h.eps)),
    );
    let w = B::float_sub(times(w, 1.0 - h.decay), times(update, h.lr));
    (w, m, v)
}

/// DINO's loss from targets `[teacher crops · batch, K]` (detached) and student logits
/// `[student crops · batch, K]`: `−Σ t · log softmax(s / τ)` over every (teacher crop j,
/// student crop i ≠ j) pair, divided by pairs · batch.
pub fn dino_cross_entropy<B: Backend>(
    targets: FloatTensor<B>,
    student: FloatTensor<B>,
    batch: usize,
    temperature: f64,
) -> FloatTensor<B> {
    let (teacher_rows, k) = (targets.shape()[0], targets.shape()[1]);
    let student_rows = student.shape()[0];
    let targets = B::float_detach(targets);
    let scaled = B::float_div_scalar(student, Scalar::from(temperature));
    let shifted = B::float_sub(scaled.clone(), B::float_max_dim(scaled, 1));
    let lse = B::float_log(B::float_sum_dim(B::float_exp(shifted.clone()), 1));
    let log_probs = B::float_sub(shifted, lse);
    let crop = |t: &FloatTensor<B>, c: usize| {
        B::float_slice(
            t.clone(),
            &[Slice::from(c * batch..(c + 1) * batch), Slice::from(0..k)],
        )
    };
    let mut total: Option<FloatTensor<B>> = None;
    let mut pairs = 0;
    for j in 0..teacher_rows / batch {
        for i in (0..student_rows / batch).filter(|&i| i != j) {
            let ce = B::float_sum(B::float_mul(crop(&targets, j), crop(&log_probs, i)));
            total = Some(match total {
                Some(acc) => B::float_add(acc, ce),
                None => ce,
            });
            pairs += 1;
        }
    }
    let total = total.expect("at least one teacher crop and one other student crop");
    B::float_mul_scalar(total, Scalar::from(-1.0 / (pairs * batch) as f64))
}
