//! Contrastive losses: InfoNCE with in-batch negatives (SimCLR's NT-Xent, MoCo v3) and against a
//! queue of past keys (MoCo v1/v2).

use burn::tensor::{Device, Tensor, TensorData};

use super::l2_normalize;

/// Row-wise log Σ exp, shifted by the (detached) row maximum so that small temperatures
/// (logits of 1/τ = 100 and more) cannot overflow.
pub fn logsumexp_rows(x: Tensor<2>) -> Tensor<1> {
    let max = x.clone().max_dim(1).detach();
    let shifted = (x - max.clone()).exp().sum_dim(1).log();
    (shifted + max).squeeze_dim(1)
}

/// InfoNCE where row i of `keys` is the positive of query i and every other key is a negative:
/// mean over i of −log softmax(q·kᵀ/τ)_ii. Both inputs are L2-normalised here. MoCo v3 uses this
/// per direction (scaled by 2τ); it is cross-entropy with labels 0..n.
pub fn info_nce(queries: Tensor<2>, keys: Tensor<2>, temperature: f64) -> Tensor<1> {
    let q = l2_normalize(queries);
    let k = l2_normalize(keys);
    let logits = q
        .clone()
        .matmul(k.clone().transpose())
        .div_scalar(temperature);
    let positive = (q * k).sum_dim(1).squeeze_dim(1).div_scalar(temperature);
    (logsumexp_rows(logits) - positive).mean()
}

/// InfoNCE against a queue (MoCo v1/v2): logits are [q·k₊, q·queueᵀ] / τ with the positive in
/// column 0. `queue` rows are already-normalised, detached past keys.
pub fn info_nce_queue(
    queries: Tensor<2>,
    keys: Tensor<2>,
    queue: Tensor<2>,
    temperature: f64,
) -> Tensor<1> {
    let q = l2_normalize(queries);
    let k = l2_normalize(keys);
    let positive = (q.clone() * k).sum_dim(1).div_scalar(temperature);
    let negatives = q.matmul(queue.transpose()).div_scalar(temperature);
    let logits = Tensor::cat(vec![positive.clone(), negatives], 1);
    (logsumexp_rows(logits) - positive.squeeze_dim(1)).mean()
}

/// SimCLR's NT-Xent over the 2N embeddings of two views: for each embedding the positive is its
/// pair and the other 2N−2 are negatives; cosine similarity / τ, averaged over all 2N anchors
/// (so both directions count).
pub fn nt_xent(z1: Tensor<2>, z2: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n, _] = z1.dims();
    let device = z1.device();
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0));
    let sim = z
        .clone()
        .matmul(z.clone().transpose())
        .div_scalar(temperature);
    // exp(−1e9) underflows to exactly 0: an anchor is never its own negative.
    let sim = sim + self_mask(2 * n, &device);
    let pair = Tensor::cat(vec![z.clone().slice(n..2 * n), z.clone().slice(0..n)], 0);
    let positive = (z * pair).sum_dim(1).squeeze_dim(1).div_scalar(temperature);
    (logsumexp_rows(sim) - positive).mean()
}

fn self_mask(n: usize, device: &Device) -> Tensor<2> {
    let mut data = vec![0.0f32; n * n];
    for i in 0..n {
        data[i * n + i] = -1e9;
    }
    Tensor::from_data(TensorData::new(data, [n, n]), device)
}

/// NT-Xent without its negatives: −cos(z1ᵢ, z2ᵢ)/τ averaged over the pairs, the positive term
/// alone. Nothing pushes different images apart, so the embeddings collapse (the lab's "delete
/// the negatives" experiment).
pub fn positives_only(z1: Tensor<2>, z2: Tensor<2>, temperature: f64) -> Tensor<1> {
    super::mean_cosine(z1, z2).neg().div_scalar(temperature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{Rows, check_gradient, rows, scalar};

    fn normalize(r: &Rows) -> Rows {
        r.iter()
            .map(|x| {
                let n = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                x.iter().map(|v| v / n).collect()
            })
            .collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// −log(exp(pos) / Σ exp(all)), in f64.
    fn ce(pos: f64, all: &[f64]) -> f64 {
        let m = all.iter().cloned().fold(f64::MIN, f64::max);
        m + all.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - pos
    }

    #[test]
    fn positives_only_is_the_scaled_negative_mean_cosine() {
        let z1 = rows(&[vec![1.0, 0.0], vec![1.0, 1.0]]);
        let z2 = rows(&[vec![3.0, 0.0], vec![1.0, -1.0]]);
        // cos = 1 and 0: mean 0.5, over τ = 0.5 → −1.
        assert!((scalar(positives_only(z1, z2, 0.5)) + 1.0).abs() < 1e-6);
    }

    fn nt_xent_ref(z1: &Rows, z2: &Rows, t: f64) -> f64 {
        let n = z1.len();
        let z = normalize(&[z1.clone(), z2.clone()].concat());
        let mut total = 0.0;
        for i in 0..2 * n {
            let pair = (i + n) % (2 * n);
            let others: Vec<f64> = (0..2 * n)
                .filter(|&j| j != i)
                .map(|j| dot(&z[i], &z[j]) / t)
                .collect();
            total += ce(dot(&z[i], &z[pair]) / t, &others);
        }
        total / (2 * n) as f64
    }

    fn info_nce_ref(q: &Rows, k: &Rows, t: f64) -> f64 {
        let (q, k) = (normalize(q), normalize(k));
        let mut total = 0.0;
        for i in 0..q.len() {
            let all: Vec<f64> = k.iter().map(|kj| dot(&q[i], kj) / t).collect();
            total += ce(all[i], &all);
        }
        total / q.len() as f64
    }

    fn queue_ref(q: &Rows, k: &Rows, queue: &Rows, t: f64) -> f64 {
        let (q, k) = (normalize(q), normalize(k));
        let mut total = 0.0;
        for i in 0..q.len() {
            let mut all = vec![dot(&q[i], &k[i]) / t];
            all.extend(queue.iter().map(|c| dot(&q[i], c) / t));
            total += ce(all[0], &all);
        }
        total / q.len() as f64
    }

    fn sample(n: usize, d: usize, seed: u64) -> Rows {
        (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| (((i * 7 + j * 3) as u64 + seed * 13) % 11) as f64 / 5.0 - 1.0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn nt_xent_batch_of_two_matches_hand_computation() {
        // z1 = [(1,0), (0,1)], z2 = [(1,0), (0,-1)], τ = 1. Anchor 0 (1,0): positive (1,0) → 1;
        // negatives (0,1) → 0, (0,-1) → 0: loss ln(e + 2) − 1. Anchor 1 (0,1): positive (0,-1) → −1,
        // negatives (1,0), (1,0) → 0: ln(e⁻¹ + 2) + 1. Anchor 2 is anchor 0's mirror; anchor 3
        // mirrors anchor 1.
        let e = std::f64::consts::E;
        let expected = (((e + 2.0).ln() - 1.0) + ((1.0 / e + 2.0).ln() + 1.0)) / 2.0;
        let z1 = rows(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
        let z2 = rows(&[vec![1.0, 0.0], vec![0.0, -1.0]]);
        let got = scalar(nt_xent(z1, z2, 1.0));
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn nt_xent_matches_formula_across_temperatures() {
        let (a, b) = (sample(6, 5, 1), sample(6, 5, 2));
        for t in [0.01, 0.07, 0.5, 10.0] {
            let got = scalar(nt_xent(rows(&a), rows(&b), t));
            let want = nt_xent_ref(&a, &b, t);
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "τ={t}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn nt_xent_with_identical_embeddings_is_log_of_negatives() {
        // Every cosine is 1, so each anchor's softmax is uniform over 2N−1 candidates.
        let z = vec![vec![0.3, -0.4]; 4];
        let got = scalar(nt_xent(rows(&z), rows(&z), 0.5));
        assert!((got - 7f64.ln()).abs() < 1e-5, "{got}");
    }

    #[test]
    fn info_nce_matches_formula() {
        let (q, k) = (sample(5, 4, 3), sample(5, 4, 4));
        for t in [0.01, 0.2, 1.0, 10.0] {
            let got = scalar(info_nce(rows(&q), rows(&k), t));
            let want = info_nce_ref(&q, &k, t);
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "τ={t}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn info_nce_queue_matches_formula_and_hand_value() {
        // q = k = (1,0), queue = [(0,1)], τ = 1: −log(e / (e + 1)).
        let e = std::f64::consts::E;
        let got = scalar(info_nce_queue(
            rows(&[vec![1.0, 0.0]]),
            rows(&[vec![2.0, 0.0]]),
            rows(&[vec![0.0, 1.0]]),
            1.0,
        ));
        assert!((got - (1.0 + 1.0 / e).ln()).abs() < 1e-5, "{got}");
        let (q, k) = (sample(4, 6, 5), sample(4, 6, 6));
        let queue = normalize(&sample(9, 6, 7));
        for t in [0.07, 0.2, 5.0] {
            let got = scalar(info_nce_queue(rows(&q), rows(&k), rows(&queue), t));
            let want = queue_ref(&q, &k, &queue, t);
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "τ={t}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn contrastive_gradients_match_finite_differences() {
        let (a, b) = (sample(4, 3, 8), sample(4, 3, 9));
        check_gradient(
            &a,
            |x| nt_xent(x, rows(&b), 0.5),
            |x| nt_xent_ref(x, &b, 0.5),
        );
        check_gradient(
            &a,
            |x| info_nce(x, rows(&b), 0.2),
            |x| info_nce_ref(x, &b, 0.2),
        );
        let queue = normalize(&sample(5, 3, 10));
        check_gradient(
            &a,
            |x| info_nce_queue(x, rows(&b), rows(&queue), 0.2),
            |x| queue_ref(x, &b, &queue, 0.2),
        );
    }
}
