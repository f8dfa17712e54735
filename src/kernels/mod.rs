//! Custom tensor operations (burn backend extensions) where burn's own are slow on the CPU.
//!
//! Each operation has a flex implementation with a handwritten backward pass registered for
//! autodiff; every other backend (the Vulkan GPU backend) runs burn's own operations through the
//! trait's default body, so results agree everywhere.

pub mod batch_norm;
pub mod conv;
mod gemm;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::nn::BatchNorm;
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;

use batch_norm::Planes;
use burn::backend::AutodiffBackend;
use conv::ConvGeometry;

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
        let result = Self::batch_norm_train(x, gamma, beta, epsilon);
        let output = if relu {
            Self::relu(result.output)
        } else {
            result.output
        };
        (output, result.mean, result.variance)
    }
}

#[cfg(feature = "gpu")]
impl KernelOps for burn::backend::Cube {}
#[cfg(feature = "gpu")]
impl<C: CheckpointStrategy> KernelOps for Autodiff<burn::backend::Cube, C> {}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let shape = t.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

fn f32_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape.to_vec())))
}

fn flex_conv_forward(x: FlexTensor, weight: FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let g = ConvGeometry::new(dims4(&x), dims4(&weight), options);
    let y = conv::forward(&g, x.storage::<f32>(), weight.storage::<f32>());
    f32_tensor(y, [g.batch, g.c_out, g.oh, g.ow])
}

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

impl KernelOps for Flex {
    fn conv2d_nobias(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if !is_f32(&[&x, &weight]) {
            return Flex::conv2d(x, weight, None, options);
        }
        flex_conv_forward(x, weight, &options)
    }

    fn batch_norm_act_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !is_f32(&[&x, &gamma, &beta]) || x.layout().shape().num_dims() != 4 {
            let result = Flex::batch_norm_train(x, gamma, beta, epsilon);
            let output = if relu { Flex::relu(result.output) } else { result.output };
            return (output, result.mean, result.variance);
        }
        flex_batch_norm_forward(x, gamma, beta, epsilon, relu)
    }
}

fn planes(x: &FlexTensor) -> Planes {
    let [batch, channels, h, w] = dims4(x);
    Planes {
        batch,
        channels,
        spatial: h * w,
    }
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    FlexTensor::from_data(TensorData::new(values, Shape::from(vec![len])))
}

fn flex_batch_norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
    relu: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
    let (y, mean, var) = batch_norm::forward(
        planes(&x),
        x.storage::<f32>(),
        gamma.storage::<f32>(),
        beta.storage::<f32>(),
        epsilon,
        relu,
    );
    (f32_tensor(y, dims4(&x)), vector(mean), vector(var))
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 2> for Conv2dBackward {
    type State = (FlexTensor, FlexTensor, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x, weight, options) = ops.state;
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let g = ConvGeometry::new(dims4(&x), dims4(&weight), &options);
        let (dx, dw) = conv::backward(
            &g,
            x.storage::<f32>(),
            weight.storage::<f32>(),
            dy.storage::<f32>(),
            node_x.is_some(),
            node_w.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, f32_tensor(dx, dims4(&x)));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, f32_tensor(dw, dims4(&weight)));
        }
    }
}

fn conv2d_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    options: ConvOptions<2>,
) -> FloatTensor<Autodiff<Flex, C>> {
        if !is_f32(&[x.primitive(), weight.primitive()]) {
            return <Autodiff<Flex, C> as ModuleOps<Autodiff<Flex, C>>>::conv2d(x, weight, None, options);
        }
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let y = flex_conv_forward(x.clone(), weight.clone(), &options);
                prep.finish((x, weight, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_conv_forward(
                x.into_primitive(),
                weight.into_primitive(),
                &options,
            )),
        }
    }

#[derive(Debug)]
struct BatchNormBackward;

/// x, gamma, mean, variance, epsilon, and the output when a ReLU followed.
type BatchNormState = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f64, Option<FlexTensor>);

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x, gamma, mean, var, epsilon, y) = ops.state;
        let y = y.map(|y| y.to_contiguous());
        let (dx, dgamma, dbeta) = batch_norm::backward(
            planes(&x),
            x.storage::<f32>(),
            y.as_ref().map(|y| y.storage::<f32>()),
            gamma.storage::<f32>(),
            mean.storage::<f32>(),
            var.storage::<f32>(),
            epsilon,
            dy.storage::<f32>(),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, f32_tensor(dx, dims4(&x)));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, vector(dgamma));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, vector(dbeta));
        }
    }
}

impl<C: CheckpointStrategy> KernelOps for Autodiff<Flex, C> {
    fn conv2d_nobias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv2d_autodiff::<C>(x, weight, options)
    }

    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let supported = is_f32(&[x.primitive(), gamma.primitive(), beta.primitive()])
            && x.primitive().layout().shape().num_dims() == 4;
        if !supported {
            let result = <Self as ModuleOps<Self>>::batch_norm_train(x, gamma, beta, epsilon);
            let output = if relu {
                <Self as ActivationOps<Self>>::relu(result.output)
            } else {
                result.output
            };
            return (output, result.mean, result.variance);
        }
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, gp) = (x.primitive().clone(), gamma.primitive().clone());
                let (y, mean, var) =
                    flex_batch_norm_forward(xp.clone(), gp.clone(), beta.into_primitive(), epsilon, relu);
                let state = (xp, gp, mean.clone(), var.clone(), epsilon, relu.then(|| y.clone()));
                (
                    prep.finish(state, y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = flex_batch_norm_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                (prep.finish(y), Self::from_inner(mean), Self::from_inner(var))
            }
        }
    }
}

/// A burn `BatchNorm` layer's forward pass, then ReLU when `relu`; same parameters, same
/// running-statistics update, same result, in two fused passes on flex.
pub fn batch_norm_layer(layer: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    if !(x.device().is_autodiff() && layer.training.is_enabled()) {
        let y = layer.forward(x);
        return if relu { burn::tensor::activation::relu(y) } else { y };
    }
    let (y, mean, var) = <Dispatch as KernelOps>::batch_norm_act_train(
        x.into_dispatch(),
        layer.gamma.val().into_dispatch(),
        layer.beta.val().into_dispatch(),
        layer.epsilon,
        relu,
    );
    let (mean, var) = (Tensor::<1>::from_dispatch(mean), Tensor::<1>::from_dispatch(var));
    let device = mean.device();
    let m = layer.momentum;
    let running_mean = layer.running_mean.value_sync().to_device(&device);
    let running_var = layer.running_var.value_sync().to_device(&device);
    layer
        .running_mean
        .update((running_mean.mul_scalar(1.0 - m) + mean.detach().mul_scalar(m)).detach());
    layer
        .running_var
        .update((running_var.mul_scalar(1.0 - m) + var.detach().mul_scalar(m)).detach());
    Tensor::<4>::from_dispatch(y)
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        let (a, b) = (crate::host::to_f32(a), crate::host::to_f32(b));
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{what}[{i}]: {x} vs burn {y}"
            );
        }
    }

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
            close(ours.clone(), reference.clone(), &format!("case {n} output"));
            // A non-uniform upstream gradient, so every output position matters differently.
            let up = Tensor::<4>::random(reference.dims(), normal, &device);
            let g_ours = (ours * up.clone()).sum().backward();
            let g_burn = (reference * up).sum().backward();
            close(
                ours_in.0.grad(&g_ours).unwrap(),
                burn_in.0.grad(&g_burn).unwrap(),
                &format!("case {n} dx"),
            );
            close(
                ours_in.1.grad(&g_ours).unwrap(),
                burn_in.1.grad(&g_burn).unwrap(),
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
        close(
            conv2d(x.clone(), w.clone(), None, options.clone()),
            burn::tensor::module::conv2d(x, w, None, options),
            "inference output",
        );
    }
}

#[cfg(test)]
mod batch_norm_tests {
    use super::*;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
        let (a, b) = (crate::host::to_f32(a), crate::host::to_f32(b));
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 2e-4 * scale, "{what}[{i}]: {x} vs burn {y}");
        }
    }

    #[test]
    fn batch_norm_layer_matches_burn_with_and_without_relu() {
        let device = Device::flex().autodiff();
        device.seed(7);
        for relu in [false, true] {
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
            let x = Tensor::<4>::random([3, 5, 4, 7], Distribution::Normal(2.0, 3.0), &device);
            let (xa, xb) = (x.clone().require_grad(), x.require_grad());
            let ya = batch_norm_layer(&ours, xa.clone(), relu);
            let yb = theirs.forward(xb.clone());
            let yb = if relu { burn::tensor::activation::relu(yb) } else { yb };
            assert_close(ya.clone(), yb.clone(), "output");
            let up = Tensor::<4>::random(yb.dims(), normal, &device);
            let ga = (ya * up.clone()).sum().backward();
            let gb = (yb * up).sum().backward();
            assert_close(xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap(), "dx");
            assert_close(
                ours.gamma.val().grad(&ga).unwrap(),
                theirs.gamma.val().grad(&gb).unwrap(),
                "dgamma",
            );
            assert_close(
                ours.beta.val().grad(&ga).unwrap(),
                theirs.beta.val().grad(&gb).unwrap(),
                "dbeta",
            );
            assert_close(ours.running_mean.value(), theirs.running_mean.value(), "running mean");
            assert_close(ours.running_var.value(), theirs.running_var.value(), "running var");
        }
    }
}
