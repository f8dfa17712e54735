//! Weighted kNN on cosine similarity (InstDisc / DINO): votes weighted by exp(sim / T).

use burn::tensor::{Device, Tensor, TensorData};

use super::features::Features;

fn normalized_tensor(f: &Features, rows: std::ops::Range<usize>, device: &Device) -> Tensor<2> {
    let mut data = f.data[rows.start * f.dim..rows.end * f.dim].to_vec();
    for row in data.chunks_exact_mut(f.dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    Tensor::from_data(TensorData::new(data, [rows.len(), f.dim]), device)
}

/// Top-1 accuracy of weighted kNN classification of `test` by `train`.
#[allow(clippy::too_many_arguments)]
pub fn knn_top1(
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    num_classes: usize,
    k: usize,
    temperature: f64,
    device: &Device,
) -> f64 {
    let k = k.min(train.n);
    let bank = normalized_tensor(train, 0..train.n, device).transpose();
    let mut correct = 0usize;
    let chunk = 256;
    for start in (0..test.n).step_by(chunk) {
        let end = (start + chunk).min(test.n);
        let sims = normalized_tensor(test, start..end, device).matmul(bank.clone());
        let sims = crate::host::to_f32(sims);
        for (r, row) in sims.chunks_exact(train.n).enumerate() {
            let mut idx: Vec<usize> = (0..train.n).collect();
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0f64; num_classes];
            for &j in &idx[..k] {
                votes[train_labels[j] as usize] += ((row[j] as f64) / temperature).exp();
            }
            let predicted = (0..num_classes)
                .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
                .unwrap_or(0);
            if predicted == test_labels[start + r] as usize {
                correct += 1;
            }
        }
    }
    correct as f64 / test.n.max(1) as f64
}
