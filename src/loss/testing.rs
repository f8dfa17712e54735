//! Test helpers for losses: host rows ↔ tensors, and a finite-difference gradient check.

use burn::tensor::{Device, Tensor, TensorData};

pub type Rows = Vec<Vec<f64>>;

pub fn rows_on(r: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let d = r[0].len();
    let data: Vec<f32> = r.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [r.len(), d]), device)
}

pub fn rows(r: &[Vec<f64>]) -> Tensor<2> {
    rows_on(r, &Device::flex())
}

pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Compares the autodiff gradient of `loss` at `x` with central differences of `reference`
/// (an f64 implementation of the same formula).
pub fn check_gradient(
    x: &Rows,
    loss: impl Fn(Tensor<2>) -> Tensor<1>,
    reference: impl Fn(&Rows) -> f64,
) {
    let device = Device::flex().autodiff();
    let input = rows_on(x, &device).require_grad();
    let grads = loss(input.clone()).backward();
    let got = crate::host::to_f32(input.grad(&grads).expect("input has a gradient"));
    let h = 1e-5;
    for i in 0..x.len() {
        for j in 0..x[0].len() {
            let mut plus = x.clone();
            plus[i][j] += h;
            let mut minus = x.clone();
            minus[i][j] -= h;
            let numeric = (reference(&plus) - reference(&minus)) / (2.0 * h);
            let analytic = got[i * x[0].len() + j] as f64;
            assert!(
                (numeric - analytic).abs() < 1e-3 * numeric.abs().max(1.0),
                "d/dx[{i}][{j}]: autodiff {analytic} vs numeric {numeric}"
            );
        }
    }
}
