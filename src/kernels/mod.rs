//! Custom tensor operations (burn backend extensions) where burn's own are slow on the CPU:
//! convolution, batch norm (+ReLU), exact GELU, LayerNorm and multi-head attention.
//!
//! Each operation has a flex implementation with a handwritten backward pass registered for
//! autodiff (`flex.rs`); every other backend (the Vulkan GPU backend) runs the trait's default
//! body, composed from burn's own operations, so results agree everywhere.

pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod cross_entropy;
mod direct;
mod flex;
pub mod gelu;
mod gemm;
mod geometry;
pub mod layer_norm;
pub mod linear;
pub mod pool;
mod reference;
mod simd;
pub use simd::vectorized;
pub mod update;
mod winograd;

#[cfg(feature = "gpu")]
use burn::backend::Autodiff;
#[cfg(feature = "gpu")]
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

#[backend_extension(Flex, Autodiff, Cube: cfg(feature = "gpu"))]
pub trait KernelOps: Backend {
    /// 2-D convolution without bias, NCHW.
    fn conv2d_nobias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// Training-mode batch norm over dim 1 of an NCHW tensor, then ReLU when `relu`:
    /// `(output, batch mean, biased batch variance)`; the statistics carry no gradient.
    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::batch_norm_act::<Self>(x, gamma, beta, epsilon, relu)
    }

    /// Training-mode `relu(bn(x) + residual)` (a residual block's end): `(output, batch mean,
    /// biased batch variance)`; the statistics carry no gradient.
    fn batch_norm_add_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::batch_norm_add_relu::<Self>(x, gamma, beta, residual, epsilon)
    }

    /// GELU, exact form `x·Φ(x)`.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::gelu_erf::<Self>(x)
    }

    /// LayerNorm over the last dimension, affine `gamma`, `beta` of that dimension's size.
    fn layer_norm_last_dim(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        reference::layer_norm::<Self>(x, gamma, beta, epsilon)
    }

    /// `x·weight + bias` over the last dimension of `x`; `weight` is `[d_in, d_out]`.
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// `residual + x·weight + bias`, `residual` of the output's shape (a residual branch's last
    /// layer added onto the stream).
    fn linear_bias_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::float_add(Self::linear(x, weight, Some(bias)), residual)
    }

    /// Multi-head self-attention from a fused projection `qkv [b, n, 3d]` to `[b, n, d]`.
    fn multi_head_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        reference::multi_head_attention::<Self>(qkv, heads)
    }

    /// One AdamW step of a flat parameter `w` with gradient `g` and moments `m`, `v` (zeros
    /// before the first step): `(w', m', v')`.
    fn adamw_step(
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        step: update::Adamw,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::adamw::<Self>(w, g, m, v, step)
    }

    /// DINO's loss: the mean over (teacher crop j, student crop i ≠ j) pairs and samples of
    /// `−Σ_k t_k · log softmax(s / τ)_k`, from targets `[teacher crops · batch, K]` (they get no
    /// gradient) and student logits `[student crops · batch, K]`, both crop by crop, the first
    /// student crops the teacher's in the same order; `[1]`.
    fn dino_cross_entropy(
        targets: FloatTensor<Self>,
        student: FloatTensor<Self>,
        batch: usize,
        temperature: f64,
    ) -> FloatTensor<Self> {
        reference::dino_cross_entropy::<Self>(targets, student, batch, temperature)
    }

    /// 2-D max pooling, NCHW, padding on both sides of each axis, no dilation, output size
    /// rounded down.
    fn max_pool2d_padded(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel, stride, padding, [1, 1], false)
    }
}

#[cfg(feature = "gpu")]
impl KernelOps for burn::backend::Cube {}
#[cfg(feature = "gpu")]
impl<C: CheckpointStrategy> KernelOps for Autodiff<burn::backend::Cube, C> {}

/// A burn `BatchNorm` layer's forward pass, then ReLU when `relu`; same parameters, same
/// running-statistics update, same result, in two fused passes on flex.
pub fn batch_norm_layer(layer: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    if !in_training(layer, &x) {
        let y = layer.forward(x);
        return if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
    }
    let (y, mean, var) = <Dispatch as KernelOps>::batch_norm_act_train(
        x.into_dispatch(),
        layer.gamma.val().into_dispatch(),
        layer.beta.val().into_dispatch(),
        layer.epsilon,
        relu,
    );
    update_running_statistics(layer, mean, var);
    Tensor::<4>::from_dispatch(y)
}

/// `relu(layer(x) + residual)` for a burn `BatchNorm` layer: a residual block's end, one pass
/// forward and one backward on flex (no separate add and ReLU).
pub fn batch_norm_add_relu_layer(
    layer: &BatchNorm,
    x: Tensor<4>,
    residual: Tensor<4>,
) -> Tensor<4> {
    if !in_training(layer, &x) {
        return burn::tensor::activation::relu(layer.forward(x) + residual);
    }
    let (y, mean, var) = <Dispatch as KernelOps>::batch_norm_add_relu_train(
        x.into_dispatch(),
        layer.gamma.val().into_dispatch(),
        layer.beta.val().into_dispatch(),
        residual.into_dispatch(),
        layer.epsilon,
    );
    update_running_statistics(layer, mean, var);
    Tensor::<4>::from_dispatch(y)
}

/// Batch statistics (training mode) apply, and are tracked, on the autodiff device only.
fn in_training(layer: &BatchNorm, x: &Tensor<4>) -> bool {
    x.device().is_autodiff() && layer.training.is_enabled()
}

/// burn's running-statistics update from a batch's `mean` and biased `var`: `r·(1 − m) + v·m`
/// in f32 as burn computes it, on the host — a handful of values per channel, where burn's
/// four operations per statistic cost more in dispatch than in arithmetic.
fn update_running_statistics(
    layer: &BatchNorm,
    mean: FloatTensor<Dispatch>,
    var: FloatTensor<Dispatch>,
) {
    let m = layer.momentum;
    let blend = |running: &burn::module::RunningState<Tensor<1>>, batch: FloatTensor<Dispatch>| {
        let batch = Tensor::<1>::from_dispatch(batch);
        let device = batch.device();
        let old = crate::host::to_f32(running.value_sync());
        let new: Vec<f32> = old
            .iter()
            .zip(crate::host::to_f32(batch))
            .map(|(&r, v)| r * (1.0 - m) as f32 + v * m as f32)
            .collect();
        let len = new.len();
        running.update(Tensor::from_data(
            burn::tensor::TensorData::new(new, [len]),
            &device,
        ));
    };
    blend(&layer.running_mean, mean);
    blend(&layer.running_var, var);
}

/// `conv2d(x, weight) + bias`, NCHW, on any device; fast kernels on flex.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let y = Tensor::<4>::from_dispatch(<Dispatch as KernelOps>::conv2d_nobias(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ));
    match bias {
        Some(bias) => {
            let channels = bias.dims()[0];
            y + bias.reshape([1, channels, 1, 1])
        }
        None => y,
    }
}

/// A burn `Conv2d` layer's forward pass through [`conv2d`]; same parameters, same result.
pub fn conv2d_layer(layer: &burn::nn::conv::Conv2d, x: Tensor<4>) -> Tensor<4> {
    use burn::nn::PaddingConfig2d;
    let padding = match layer.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        // Input-dependent padding: burn's layer computes it.
        PaddingConfig2d::Same => return layer.forward(x),
    };
    let options =
        ConvOptions::new_with_padding(layer.stride, padding, layer.dilation, layer.groups);
    conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// A burn `MaxPool2d` layer's forward pass; same result, one pass per plane on flex.
pub fn max_pool2d_layer(layer: &burn::nn::pool::MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    use burn::nn::PaddingConfig2d;
    let padding = match layer.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return layer.forward(x),
    };
    if layer.dilation != [1, 1] || layer.ceil_mode {
        return layer.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as KernelOps>::max_pool2d_padded(
        x.into_dispatch(),
        layer.kernel_size,
        layer.stride,
        padding,
    ))
}

/// GELU, exact (erf) form, as `torch.nn.GELU()`; fused on flex.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as KernelOps>::gelu_erf(x.into_dispatch()))
}

/// LayerNorm over the last dimension: `(x − mean)/√(var + ε)·gamma + beta`; fused on flex.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as KernelOps>::layer_norm_last_dim(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// A burn `Linear` layer's forward pass; same parameters, same result, fused on flex.
pub fn linear_layer<const D: usize>(layer: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
    linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// `x · weight + bias` over the last dimension of `x`, `weight [d_in, d_out]`; without a bias a
/// plain product. Fused on flex (products split over threads, the bias the output's initial
/// value).
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let bias = bias_or_zeros(bias, &weight);
    Tensor::from_dispatch(<Dispatch as KernelOps>::linear_bias(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// `residual + layer(x)`: a residual branch's last layer onto the stream, fused on flex (the
/// sum is the product's initial value, no separate pass).
pub fn linear_onto<const D: usize>(
    residual: Tensor<D>,
    layer: &burn::nn::Linear,
    x: Tensor<D>,
) -> Tensor<D> {
    linear_plus(
        residual,
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
    )
}

/// `residual + x · weight + bias`, `weight [d_in, d_out]`: [`linear`] with the residual as the
/// product's initial value on flex.
pub fn linear_plus<const D: usize>(
    residual: Tensor<D>,
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let bias = bias_or_zeros(bias, &weight);
    Tensor::from_dispatch(<Dispatch as KernelOps>::linear_bias_residual(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        residual.into_dispatch(),
    ))
}

/// A zero bias is the product's initial value all the same, and untracked it gets no gradient.
fn bias_or_zeros(bias: Option<Tensor<1>>, weight: &Tensor<2>) -> Tensor<1> {
    bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[1]], &weight.device()))
}

/// Multi-head self-attention `softmax(Q·Kᵀ/√d_h)·V` from the fused projection
/// `qkv [b, n, 3d]` (each token `[3, heads, d_h]`, timm's layout), heads concatenated:
/// `[b, n, d]`. Fused on flex: no permutes, one pass per head.
pub fn multi_head_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as KernelOps>::multi_head_attention(
        qkv.into_dispatch(),
        heads,
    ))
}

/// DINO's cross-entropy between teacher targets `[teacher crops · batch, K]` (no gradient
/// flows to them) and student logits `[student crops · batch, K]`: see
/// [`KernelOps::dino_cross_entropy`]. One parallel pass over the student's rows on flex.
pub fn dino_cross_entropy(
    targets: Tensor<2>,
    student: Tensor<2>,
    batch: usize,
    temperature: f64,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as KernelOps>::dino_cross_entropy(
        targets.into_dispatch(),
        student.into_dispatch(),
        batch,
        temperature,
    ))
}

/// One AdamW step of a flat parameter: `(w', m', v')` from the weight, its gradient and the
/// moments (zeros before the first step); one pass on flex.
pub fn adamw_step(
    w: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    step: update::Adamw,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let (w, m, v) = <Dispatch as KernelOps>::adamw_step(
        w.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(w),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// Asserts `ours` matches `reference` within `tolerance` relative to the reference's largest
/// magnitude (at least 1).
#[cfg(test)]
fn assert_close<const D: usize>(ours: Tensor<D>, reference: Tensor<D>, tolerance: f32, what: &str) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shapes");
    let (a, b) = (crate::host::to_f32(ours), crate::host::to_f32(reference));
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * scale,
            "{what}[{i}]: {x} vs burn {y}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn conv2d_matches_burn_on_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(3);
        // (x dims, c_out, kernel, stride, padding (begin, end), dilation, groups, bias)
        let cases = [
            (
                [2, 3, 9, 7],
                5,
                [3, 3],
                [1, 1],
                [(1, 1), (1, 1)],
                [1, 1],
                1,
                false,
            ),
            (
                [3, 4, 8, 11],
                6,
                [3, 2],
                [2, 1],
                [(2, 0), (0, 1)],
                [1, 2],
                2,
                true,
            ),
            (
                [1, 6, 5, 6],
                9,
                [1, 1],
                [1, 1],
                [(0, 0), (0, 0)],
                [1, 1],
                3,
                false,
            ),
            // Pointwise: the input gradient's weight is a plain transpose.
            (
                [2, 6, 5, 7],
                10,
                [1, 1],
                [1, 1],
                [(0, 0), (0, 0)],
                [1, 1],
                1,
                false,
            ),
            (
                [2, 8, 7, 7],
                4,
                [1, 1],
                [2, 2],
                [(0, 0), (0, 0)],
                [1, 1],
                1,
                false,
            ),
            (
                [4, 3, 13, 13],
                8,
                [7, 7],
                [2, 2],
                [(3, 3), (3, 3)],
                [1, 1],
                1,
                false,
            ),
            (
                [2, 4, 6, 6],
                4,
                [3, 3],
                [1, 1],
                [(2, 2), (2, 2)],
                [2, 2],
                4,
                true,
            ),
            // Enough channels for the Winograd path: forward, input and weight gradients, by
            // F(2×2) on a 6 × 5 output and F(4×4) on 9 × 8.
            (
                [3, 32, 6, 5],
                36,
                [3, 3],
                [1, 1],
                [(1, 1), (1, 1)],
                [1, 1],
                1,
                false,
            ),
            (
                [2, 33, 9, 8],
                32,
                [3, 3],
                [1, 1],
                [(1, 1), (1, 1)],
                [1, 1],
                1,
                false,
            ),
            // A ViT's patch embedding: kernel = stride, no padding, bias.
            (
                [2, 3, 16, 16],
                8,
                [4, 4],
                [4, 4],
                [(0, 0), (0, 0)],
                [1, 1],
                1,
                true,
            ),
            // ResNet's stride-2 downsampling with few channels: the direct kernel's forward and
            // weight gradient, col2im's input gradient.
            (
                [3, 8, 9, 10],
                16,
                [3, 3],
                [2, 2],
                [(1, 1), (1, 1)],
                [1, 1],
                1,
                false,
            ),
            // An odd batch of small images: uneven multi-image chunks in both passes.
            (
                [9, 3, 5, 4],
                4,
                [3, 3],
                [2, 1],
                [(1, 1), (1, 1)],
                [1, 1],
                1,
                false,
            ),
            (
                [11, 2, 3, 3],
                3,
                [3, 3],
                [1, 1],
                [(1, 1), (1, 1)],
                [1, 1],
                1,
                false,
            ),
        ];
        for (n, (dims, c_out, k, stride, padding, dilation, groups, bias)) in
            cases.into_iter().enumerate()
        {
            let options = ConvOptions::new_with_padding(stride, padding, dilation, groups);
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<4>::random(dims, normal, &device);
            let w = Tensor::<4>::random([c_out, dims[1] / groups, k[0], k[1]], normal, &device);
            let b = bias.then(|| Tensor::<1>::random([c_out], normal, &device));
            let ours_in = (x.clone().require_grad(), w.clone().require_grad());
            let burn_in = (x.require_grad(), w.require_grad());
            let ours_b = b.clone().map(|b| b.require_grad());
            let ours = conv2d(
                ours_in.0.clone(),
                ours_in.1.clone(),
                ours_b,
                options.clone(),
            );
            let reference = burn::tensor::module::conv2d(
                burn_in.0.clone(),
                burn_in.1.clone(),
                b.map(|b| b.require_grad()),
                options,
            );
            assert_close(
                ours.clone(),
                reference.clone(),
                1e-4,
                &format!("case {n} output"),
            );
            // A non-uniform upstream gradient, so every output position matters differently.
            let up = Tensor::<4>::random(reference.dims(), normal, &device);
            let g_ours = (ours * up.clone()).sum().backward();
            let g_burn = (reference * up).sum().backward();
            assert_close(
                ours_in.0.grad(&g_ours).unwrap(),
                burn_in.0.grad(&g_burn).unwrap(),
                1e-4,
                &format!("case {n} dx"),
            );
            assert_close(
                ours_in.1.grad(&g_ours).unwrap(),
                burn_in.1.grad(&g_burn).unwrap(),
                1e-4,
                &format!("case {n} dw"),
            );
        }
    }

    #[test]
    fn conv2d_without_autodiff_matches_burn() {
        let device = Device::flex();
        device.seed(4);
        let options = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        let x = Tensor::<4>::random([2, 3, 10, 9], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        assert_close(
            conv2d(x.clone(), w.clone(), None, options.clone()),
            burn::tensor::module::conv2d(x, w, None, options),
            1e-4,
            "inference output",
        );
    }

    #[test]
    fn max_pool_matches_burn_on_values_and_gradients_with_ties() {
        use burn::nn::PaddingConfig2d;
        use burn::nn::pool::MaxPool2dConfig;
        let device = Device::flex().autodiff();
        device.seed(12);
        // (x dims, kernel, stride, padding): the ImageNet stem's pooling on an odd size,
        // overlapping stride-1 windows, disjoint 2 × 2 windows, a non-square window.
        for (shape, kernel, stride, padding) in [
            ([2, 3, 13, 11], [3, 3], [2, 2], [1, 1]),
            ([1, 5, 6, 7], [3, 3], [1, 1], [1, 1]),
            ([3, 2, 8, 8], [2, 2], [2, 2], [0, 0]),
            ([2, 4, 9, 10], [2, 3], [1, 2], [1, 0]),
            // Narrower than the window: its last column lies wholly in the padding.
            ([1, 2, 2, 1], [3, 3], [2, 2], [1, 1]),
        ] {
            let layer = MaxPool2dConfig::new(kernel)
                .with_strides(stride)
                .with_padding(PaddingConfig2d::Explicit(
                    padding[0], padding[1], padding[0], padding[1],
                ))
                .init();
            // Values on a coarse grid: many windows hold their maximum twice.
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.5), &device).round();
            let (xa, xb) = (x.clone().require_grad(), x.require_grad());
            let (ya, yb) = (
                max_pool2d_layer(&layer, xa.clone()),
                layer.forward(xb.clone()),
            );
            assert_close(ya.clone(), yb.clone(), 0.0, "max pool");
            let up = Tensor::<4>::random(yb.dims(), Distribution::Normal(0.0, 1.0), &device);
            let (ga, gb) = (
                (ya * up.clone()).sum().backward(),
                (yb * up).sum().backward(),
            );
            assert_close(xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap(), 1e-6, "dx");
        }
    }
}

#[cfg(test)]
mod batch_norm_tests {
    use super::*;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    /// `batch_norm_layer` (`residual: None`) or `batch_norm_add_relu_layer` against burn's
    /// `BatchNorm` (+ residual, ReLU) on values, every gradient and the running statistics.
    #[test]
    fn batch_norm_layers_match_burn() {
        let device = Device::flex().autodiff();
        device.seed(7);
        // Planes of 28 values, and of 156 (past `LONG_ROW`, not a whole number of blocks).
        let cases = [(false, false), (true, false), (true, true)]
            .into_iter()
            .flat_map(|case| [([3, 5, 4, 7], case), ([2, 5, 12, 13], case)]);
        for (shape, (relu, with_residual)) in cases {
            let ours = BatchNormConfig::new(5).init(&device);
            let theirs = BatchNormConfig::new(5).init(&device);
            let normal = Distribution::Normal(0.0, 1.0);
            // Non-trivial affine parameters, shared by both layers.
            let gamma = Tensor::<1>::random([5], normal, &device);
            let beta = Tensor::<1>::random([5], normal, &device);
            let ours = BatchNorm {
                gamma: burn::module::Param::from_tensor(gamma.clone()),
                beta: burn::module::Param::from_tensor(beta.clone()),
                ..ours
            };
            let theirs = BatchNorm {
                gamma: burn::module::Param::from_tensor(gamma),
                beta: burn::module::Param::from_tensor(beta),
                ..theirs
            };
            let x = Tensor::<4>::random(shape, Distribution::Normal(2.0, 3.0), &device);
            let (xa, xb) = (x.clone().require_grad(), x.require_grad());
            let r = Tensor::<4>::random(shape, normal, &device);
            let (ra, rb) = (r.clone().require_grad(), r.require_grad());
            let (ya, yb) = if with_residual {
                let ya = batch_norm_add_relu_layer(&ours, xa.clone(), ra.clone());
                let yb = theirs.forward(xb.clone()) + rb.clone();
                (ya, burn::tensor::activation::relu(yb))
            } else {
                let ya = batch_norm_layer(&ours, xa.clone(), relu);
                let yb = theirs.forward(xb.clone());
                let yb = if relu {
                    burn::tensor::activation::relu(yb)
                } else {
                    yb
                };
                (ya, yb)
            };
            // Both signs present: the ReLU masks some gradient.
            let zeros = crate::host::to_f32(yb.clone())
                .iter()
                .filter(|v| **v == 0.0)
                .count();
            assert_eq!(zeros > 0, relu, "relu {relu}: {zeros} zeros");
            assert_close(ya.clone(), yb.clone(), 2e-4, "output");
            let up = Tensor::<4>::random(yb.dims(), normal, &device);
            let ga = (ya * up.clone()).sum().backward();
            let gb = (yb * up).sum().backward();
            assert_close(xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap(), 2e-4, "dx");
            if with_residual {
                assert_close(
                    ra.grad(&ga).unwrap(),
                    rb.grad(&gb).unwrap(),
                    1e-6,
                    "dresidual",
                );
            }
            assert_close(
                ours.gamma.val().grad(&ga).unwrap(),
                theirs.gamma.val().grad(&gb).unwrap(),
                2e-4,
                "dgamma",
            );
            assert_close(
                ours.beta.val().grad(&ga).unwrap(),
                theirs.beta.val().grad(&gb).unwrap(),
                2e-4,
                "dbeta",
            );
            assert_close(
                ours.running_mean.value(),
                theirs.running_mean.value(),
                2e-4,
                "running mean",
            );
            assert_close(
                ours.running_var.value(),
                theirs.running_var.value(),
                2e-4,
                "running var",
            );
        }
    }
}

#[cfg(test)]
mod transformer_tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn normal<const D: usize>(dims: [usize; D], std: f64, device: &Device) -> Tensor<D> {
        Tensor::random(dims, Distribution::Normal(0.0, std), device)
    }

    #[test]
    fn linear_matches_burn_on_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(10);
        // Rows not a multiple of the thread count; odd widths; with and without a bias.
        let cases = [([3, 7], 13, 29), ([1, 1], 5, 3), ([5, 33], 24, 8)];
        for ((lead, d_in, d_out), with_bias) in
            cases.into_iter().flat_map(|c| [(c, true), (c, false)])
        {
            let layer = burn::nn::LinearConfig::new(d_in, d_out)
                .with_bias(with_bias)
                .init(&device);
            // Non-zero bias (burn's init is uniform; make sure it matters).
            let layer = burn::nn::Linear {
                bias: layer
                    .bias
                    .as_ref()
                    .map(|b| burn::module::Param::from_tensor(b.val().add_scalar(0.5).detach())),
                ..layer
            };
            let x = normal([lead[0], lead[1], d_in], 1.0, &device);
            let (xa, xb) = (x.clone().require_grad(), x.require_grad());
            let (ya, yb) = (linear_layer(&layer, xa.clone()), layer.forward(xb.clone()));
            assert_close(ya.clone(), yb.clone(), 1e-5, "linear");
            let up = normal([lead[0], lead[1], d_out], 1.0, &device);
            let (ga, gb) = (
                (ya * up.clone()).sum().backward(),
                (yb * up).sum().backward(),
            );
            assert_close(xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap(), 1e-5, "dx");
            let w = layer.weight.val();
            assert_close(w.grad(&ga).unwrap(), w.grad(&gb).unwrap(), 1e-5, "dweight");
            if let Some(b) = layer.bias.as_ref().map(|b| b.val()) {
                assert_close(b.grad(&ga).unwrap(), b.grad(&gb).unwrap(), 1e-5, "dbias");
            }
            // Onto a residual: the same product plus the stream, whose gradient passes through.
            let r = normal([lead[0], lead[1], d_out], 1.0, &device);
            let (ra, rb) = (r.clone().require_grad(), r.require_grad());
            let (xa, xb) = (xa.detach().require_grad(), xb.detach().require_grad());
            let ya = linear_onto(ra.clone(), &layer, xa.clone());
            let yb = rb.clone() + layer.forward(xb.clone());
            assert_close(ya.clone(), yb.clone(), 1e-5, "linear onto a residual");
            let up = normal([lead[0], lead[1], d_out], 1.0, &device);
            let (ga, gb) = (
                (ya * up.clone()).sum().backward(),
                (yb * up).sum().backward(),
            );
            assert_close(
                ra.grad(&ga).unwrap(),
                rb.grad(&gb).unwrap(),
                1e-5,
                "dresidual",
            );
            assert_close(
                xa.grad(&ga).unwrap(),
                xb.grad(&gb).unwrap(),
                1e-5,
                "dx onto",
            );
            assert_close(
                w.grad(&ga).unwrap(),
                w.grad(&gb).unwrap(),
                1e-5,
                "dweight onto",
            );
        }
    }

    /// The fused GELU against `other` on values and input gradients.
    fn assert_gelu_matches(other: impl Fn(Tensor<3>) -> Tensor<3>, seed: u64) {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let x = normal([3, 7, 37], 2.0, &device);
        let (xa, xb) = (x.clone().require_grad(), x.require_grad());
        let (ya, yb) = (gelu(xa.clone()), other(xb.clone()));
        assert_close(ya.clone(), yb.clone(), 1e-6, "gelu");
        let up = normal([3, 7, 37], 1.0, &device);
        let (ga, gb) = (
            (ya * up.clone()).sum().backward(),
            (yb * up).sum().backward(),
        );
        assert_close(
            xa.grad(&ga).unwrap(),
            xb.grad(&gb).unwrap(),
            1e-5,
            "gelu dx",
        );
    }

    #[test]
    fn gelu_matches_burn_on_values_and_gradients() {
        assert_gelu_matches(burn::tensor::activation::gelu, 11);
    }

    #[test]
    fn gelu_reference_body_has_the_exact_gradient() {
        // The default body (what the GPU runs) against the fused kernel, whose backward is the
        // exact Φ(x) + x·φ(x).
        assert_gelu_matches(
            |x| Tensor::from_dispatch(reference::gelu_erf::<Dispatch>(x.into_dispatch())),
            13,
        );
    }

    #[test]
    fn layer_norm_matches_the_composed_definition() {
        let device = Device::flex().autodiff();
        device.seed(12);
        // Odd row lengths (not a multiple of the SIMD width), one whole block, and a large
        // offset, where a one-pass variance would lose its digits.
        for d in [37, 64, 131] {
            let x = normal([4, 5, d], 3.0, &device).add_scalar(50.0);
            let gamma = normal([d], 1.0, &device);
            let beta = normal([d], 1.0, &device);
            let inputs = || {
                (
                    x.clone().require_grad(),
                    gamma.clone().require_grad(),
                    beta.clone().require_grad(),
                )
            };
            let (xa, ga, ba) = inputs();
            let (xb, gb, bb) = inputs();
            let ya = layer_norm(xa.clone(), ga.clone(), ba.clone(), 1e-6);
            let (var, mean) = xb.clone().var_mean_bias(2);
            let yb = (xb.clone() - mean) / var.add_scalar(1e-6).sqrt()
                * gb.clone().unsqueeze::<3>()
                + bb.clone().unsqueeze::<3>();
            assert_close(ya.clone(), yb.clone(), 1e-5, "layer norm");
            let up = normal([4, 5, d], 1.0, &device);
            let (gra, grb) = (
                (ya * up.clone()).sum().backward(),
                (yb * up).sum().backward(),
            );
            assert_close(xa.grad(&gra).unwrap(), xb.grad(&grb).unwrap(), 1e-4, "dx");
            assert_close(
                ga.grad(&gra).unwrap(),
                gb.grad(&grb).unwrap(),
                1e-4,
                "dgamma",
            );
            assert_close(
                ba.grad(&gra).unwrap(),
                bb.grad(&grb).unwrap(),
                1e-4,
                "dbeta",
            );
        }
    }

    #[test]
    fn layer_norm_reference_on_flex_matches_the_kernel() {
        // The composed default body (what the GPU backend runs), checked on the CPU.
        let device = Device::flex();
        device.seed(13);
        let x = normal([6, 19], 2.0, &device);
        let (gamma, beta) = (normal([19], 1.0, &device), normal([19], 1.0, &device));
        let fused = layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let composed = Tensor::<2>::from_dispatch(<Dispatch as KernelOps>::layer_norm_last_dim(
            x.reshape([2, 3, 19]).into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            1e-5,
        ))
        .reshape([6, 19]);
        assert_close(fused, composed, 1e-5, "fused vs composed");
    }

    /// The attention of `crate::nn::vit` before fusion: reshape, permute, slice, softmax.
    fn composed_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
        let [b, n, three_d] = qkv.dims();
        let (d, hd) = (three_d / 3, three_d / 3 / heads);
        let qkv = qkv.reshape([b, n, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
        let take = |i: usize| qkv.clone().slice(i..i + 1).reshape([b, heads, n, hd]);
        let (q, k, v) = (take(0), take(1), take(2));
        let scores = q
            .mul_scalar(1.0 / (hd as f64).sqrt())
            .matmul(k.swap_dims(2, 3));
        let weights = burn::tensor::activation::softmax(scores, 3);
        weights.matmul(v).swap_dims(1, 2).reshape([b, n, d])
    }

    #[test]
    fn attention_matches_the_composed_version_on_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(14);
        // (batch, tokens, dim, heads): odd token counts, one head, head dims 8 and 5; 37 tokens
        // of head dim 36, products the gemm crate runs.
        for (b, n, d, heads) in [(2, 17, 24, 3), (3, 5, 8, 1), (1, 65, 20, 4), (2, 37, 72, 2)] {
            let qkv = normal([b, n, 3 * d], 1.5, &device);
            let (qa, qb) = (qkv.clone().require_grad(), qkv.require_grad());
            let ya = multi_head_attention(qa.clone(), heads);
            let yb = composed_attention(qb.clone(), heads);
            assert_close(ya.clone(), yb.clone(), 1e-5, "attention");
            let up = normal([b, n, d], 1.0, &device);
            let (ga, gb) = (
                (ya * up.clone()).sum().backward(),
                (yb * up).sum().backward(),
            );
            assert_close(qa.grad(&ga).unwrap(), qb.grad(&gb).unwrap(), 1e-4, "dqkv");
        }
    }

    #[test]
    fn attention_reference_on_flex_matches_the_kernel() {
        let device = Device::flex();
        device.seed(15);
        let qkv = normal([2, 9, 36], 1.0, &device);
        let fused = multi_head_attention(qkv.clone(), 3);
        let reference = Tensor::<3>::from_dispatch(reference_attention(qkv.into_dispatch(), 3));
        assert_close(fused, reference, 1e-5, "fused vs composed default body");
    }

    fn reference_attention(qkv: FloatTensor<Dispatch>, heads: usize) -> FloatTensor<Dispatch> {
        reference::multi_head_attention::<Dispatch>(qkv, heads)
    }

    #[test]
    fn dino_cross_entropy_matches_the_composed_version_on_values_and_gradients() {
        // The composed default body (what the GPU backend runs) through autodiff, against the
        // fused kernel; the targets are softmax rows, tracked on both sides and given no
        // gradient by either.
        let device = Device::flex().autodiff();
        device.seed(16);
        for (batch, teacher, student, k) in [(3, 2, 4, 70), (5, 2, 2, 9), (2, 1, 3, 130)] {
            let targets =
                burn::tensor::activation::softmax(normal([teacher * batch, k], 2.0, &device), 1);
            let logits = normal([student * batch, k], 1.0, &device);
            let (sa, sb) = (logits.clone().require_grad(), logits.require_grad());
            let la = dino_cross_entropy(targets.clone(), sa.clone(), batch, 0.1);
            let lb = Tensor::<1>::from_dispatch(reference::dino_cross_entropy::<Dispatch>(
                targets.into_dispatch(),
                sb.clone().into_dispatch(),
                batch,
                0.1,
            ));
            assert_close(la.clone(), lb.clone(), 1e-5, "loss");
            let (ga, gb) = (la.backward(), lb.backward());
            assert_close(
                sa.grad(&ga).unwrap(),
                sb.grad(&gb).unwrap(),
                1e-5,
                "dstudent",
            );
        }
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Three AdamW steps over 40,000 values (two whole parallel chunks and a part): the fused
    /// pass against PyTorch's formula in f64, and bit for bit against the composed reference.
    /// The first step's inputs are shared with the reference (updated on copies, or the
    /// reference would see the change), the later ones unique (updated in place).
    #[test]
    fn adamw_step_matches_the_formula_and_the_reference() {
        let device = Device::flex();
        let n = 40_000;
        let flat = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
        let mut w64: Vec<f64> = geometry::test_values(n, 7919, 1013)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let (mut m64, mut v64) = (vec![0.0f64; n], vec![0.0f64; n]);
        let w0 = flat(w64.iter().map(|&v| v as f32).collect());
        let zeros = Tensor::<1>::zeros([n], &device);
        let (mut ours, mut reference) = (
            (w0.clone(), zeros.clone(), zeros.clone()),
            (w0, zeros.clone(), zeros),
        );
        for t in 1..=3 {
            let g: Vec<f32> = geometry::test_values(n, 104_729 * t, 997)
                .iter()
                .map(|v| v * 0.01)
                .collect();
            let step = update::Adamw {
                lr: 0.01,
                betas: [0.9, 0.95],
                eps: 1e-8,
                decay: 0.01 * 0.05,
                step: t as i32,
            };
            let [b1, b2] = step.betas;
            for i in 0..n {
                let g = g[i] as f64;
                m64[i] = b1 * m64[i] + (1.0 - b1) * g;
                v64[i] = b2 * v64[i] + (1.0 - b2) * g * g;
                let m_hat = m64[i] / (1.0 - b1.powi(t as i32));
                let v_hat = v64[i] / (1.0 - b2.powi(t as i32));
                w64[i] = w64[i] * (1.0 - step.decay) - step.lr * m_hat / (v_hat.sqrt() + step.eps);
            }
            let (w, m, v) = ours;
            ours = adamw_step(w, flat(g.clone()), m, v, step);
            let (w, m, v) = reference;
            let (w, m, v) = reference::adamw::<Dispatch>(
                w.into_dispatch(),
                flat(g).into_dispatch(),
                m.into_dispatch(),
                v.into_dispatch(),
                step,
            );
            reference = (
                Tensor::from_dispatch(w),
                Tensor::from_dispatch(m),
                Tensor::from_dispatch(v),
            );
        }
        let host = |t: &Tensor<1>| crate::host::to_f32(t.clone());
        for (what, a, b) in [
            ("w", &ours.0, &reference.0),
            ("m", &ours.1, &reference.1),
            ("v", &ours.2, &reference.2),
        ] {
            assert_eq!(host(a), host(b), "{what}: fused vs composed");
        }
        for (what, got, want) in [
            ("w", &ours.0, &w64),
            ("m", &ours.1, &m64),
            ("v", &ours.2, &v64),
        ] {
            // f32 rounding relative to the largest magnitude of each quantity.
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (i, (&g, &w)) in host(got).iter().zip(want.iter()).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 1e-6 * scale,
                    "{what}[{i}]: {g} vs {w}"
                );
            }
        }
    }
}
