//! Copying tensors to host memory.

use burn::tensor::Tensor;

/// The tensor's values as `f32`, row-major.
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 above")
}
