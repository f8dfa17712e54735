//! [`KernelOps`] on burn's flex backend, and on autodiff over flex with the handwritten
//! backward passes: the glue between burn's tensor primitives and the slice kernels of the
//! sibling modules. Anything the kernels do not cover (other dtypes, other ranks) goes to
//! burn's own operations.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, TensorData};
use burn_flex::FlexTensor;

use super::KernelOps;
use super::attention::{self, Heads};
use super::batch_norm::{self, Planes};
use super::conv::{self, ConvGeometry};
use super::cross_entropy::{self, Crops};
use super::linear::{self, Dims};
use super::pool::{self, Window};
use super::{gelu, layer_norm, update};

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let shape = t.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape.to_vec())))
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    tensor(values, &[len])
}

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

fn planes(x: &FlexTensor) -> Planes {
    let [batch, channels, h, w] = dims4(x);
    Planes {
        batch,
        channels,
        spatial: h * w,
    }
}

fn conv_forward(x: FlexTensor, weight: FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let g = ConvGeometry::new(dims4(&x), dims4(&weight), options);
    let y = conv::forward(&g, x.storage::<f32>(), weight.storage::<f32>());
    tensor(y, &[g.batch, g.c_out, g.oh, g.ow])
}

/// `(y, mean, var)` of `y = act(bn(x) + residual)`.
fn batch_norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
    relu: bool,
    residual: Option<&FlexTensor>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let residual = residual.map(FlexTensor::to_contiguous);
    let (y, mean, var) = batch_norm::forward(
        planes(&x),
        x.storage::<f32>(),
        gamma.storage::<f32>(),
        beta.storage::<f32>(),
        epsilon,
        relu,
        residual.as_ref().map(|r| r.storage::<f32>()),
    );
    (tensor(y, &dims4(&x)), vector(mean), vector(var))
}

/// `(y, mean, rstd)` of a LayerNorm over the last dimension.
fn layer_norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let (y, mean, rstd) = layer_norm::forward(
        x.storage::<f32>(),
        gamma.storage::<f32>(),
        beta.storage::<f32>(),
        epsilon,
    );
    (tensor(y, &dims(&x)), vector(mean), vector(rstd))
}

fn heads_of(qkv: &FlexTensor, heads: usize) -> Heads {
    let [batch, tokens, three_d] = <[usize; 3]>::try_from(dims(qkv)).expect("qkv is [b, n, 3d]");
    Heads {
        batch,
        tokens,
        dim: three_d / 3,
        heads,
    }
}

/// `(out, probabilities)` of multi-head self-attention.
fn attention_forward(qkv: &FlexTensor, heads: usize) -> (FlexTensor, FlexTensor) {
    let s = heads_of(qkv, heads);
    let (out, probs) = attention::forward(s, qkv.storage::<f32>());
    (
        tensor(out, &[s.batch, s.tokens, s.dim]),
        tensor(probs, &[s.batch, heads, s.tokens, s.tokens]),
    )
}

/// The layer's sizes when the flex kernel takes these inputs.
fn linear_dims(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> Option<Dims> {
    let (shape, w) = (dims(x), dims(weight));
    let supported = is_f32(&[x, weight, bias])
        && shape.len() >= 2
        && w.len() == 2
        && shape[shape.len() - 1] == w[0]
        && dims(bias) == [w[1]];
    supported.then(|| Dims {
        rows: shape[..shape.len() - 1].iter().product(),
        d_in: w[0],
        d_out: w[1],
    })
}

/// `x·weight + bias (+ residual)`, all contiguous.
fn linear_forward(
    s: Dims,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    residual: Option<&FlexTensor>,
) -> FlexTensor {
    let y = linear::forward(
        s,
        x.storage::<f32>(),
        weight.storage::<f32>(),
        bias.storage::<f32>(),
        residual.map(|r| r.storage::<f32>()),
    );
    let mut shape = dims(x);
    *shape.last_mut().expect("rank ≥ 2") = s.d_out;
    tensor(y, &shape)
}

/// `x·weight + bias (+ residual)` by the kernel, or by burn's operations for inputs it does not
/// take.
fn flex_linear(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    residual: Option<FlexTensor>,
) -> FlexTensor {
    let fits = residual
        .as_ref()
        .is_none_or(|r| residual_fits(&x, &weight, r));
    match linear_dims(&x, &weight, &bias).filter(|_| fits) {
        Some(s) => linear_forward(
            s,
            &x.to_contiguous(),
            &weight.to_contiguous(),
            &bias.to_contiguous(),
            residual.map(|r| r.to_contiguous()).as_ref(),
        ),
        None => {
            let y = Flex::linear(x, weight, Some(bias));
            match residual {
                Some(r) => Flex::float_add(y, r),
                None => y,
            }
        }
    }
}

/// Whether `residual` has the shape of `x · weight`.
fn residual_fits(x: &FlexTensor, weight: &FlexTensor, residual: &FlexTensor) -> bool {
    let mut shape = dims(x);
    if let (Some(last), Some(&d_out)) = (shape.last_mut(), dims(weight).last()) {
        *last = d_out;
    }
    is_f32(&[residual]) && dims(residual) == shape
}

fn attention_supported(qkv: &FlexTensor, heads: usize) -> bool {
    let shape = dims(qkv);
    is_f32(&[qkv]) && shape.len() == 3 && heads > 0 && shape[2].is_multiple_of(3 * heads)
}

fn layer_norm_supported(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor) -> bool {
    let shape = dims(x);
    is_f32(&[x, gamma, beta])
        && !shape.is_empty()
        && dims(gamma) == [shape[shape.len() - 1]]
        && dims(beta) == dims(gamma)
}

/// The pooling call when the flex kernel takes it.
fn pool_window(
    x: &FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<Window> {
    let shape = dims(x);
    let [batch, channels, h, w] = <[usize; 4]>::try_from(shape).ok()?;
    let win = Window {
        batch,
        channels,
        h,
        w,
        kernel,
        stride,
        padding,
    };
    (is_f32(&[x]) && win.output().is_some()).then_some(win)
}

/// `(y, argmax)` of a max pooling.
fn max_pool_forward(win: &Window, x: FlexTensor) -> (FlexTensor, Vec<u32>) {
    let x = x.to_contiguous();
    let (y, argmax) = pool::max_forward(win, x.storage::<f32>());
    let (oh, ow) = win.output().expect("checked by pool_window");
    (tensor(y, &[win.batch, win.channels, oh, ow]), argmax)
}

/// The crops of a DINO loss when the flex kernel takes these inputs.
fn dino_crops(targets: &FlexTensor, student: &FlexTensor, batch: usize) -> Option<Crops> {
    let ([t_rows, k], [s_rows, s_k]) = (
        <[usize; 2]>::try_from(dims(targets)).ok()?,
        <[usize; 2]>::try_from(dims(student)).ok()?,
    );
    let crops = Crops {
        batch,
        teacher: t_rows / batch.max(1),
        student: s_rows / batch.max(1),
        classes: k,
    };
    let supported = is_f32(&[targets, student])
        && batch > 0
        && k > 0
        && k == s_k
        && t_rows.is_multiple_of(batch)
        && s_rows.is_multiple_of(batch)
        && crops.teacher <= crops.student
        && crops.pairs() > 0;
    supported.then_some(crops)
}

/// `(loss [1], row log-sum-exps)` of DINO's cross-entropy.
fn dino_forward(
    crops: Crops,
    targets: &FlexTensor,
    student: &FlexTensor,
    temperature: f64,
) -> (FlexTensor, Vec<f32>) {
    let (loss, lse) = cross_entropy::forward(
        crops,
        targets.storage::<f32>(),
        student.storage::<f32>(),
        temperature as f32,
    );
    (vector(vec![loss as f32]), lse)
}

fn batch_norm_supported(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor) -> bool {
    is_f32(&[x, gamma, beta]) && x.layout().shape().num_dims() == 4
}

impl KernelOps for Flex {
    fn conv2d_nobias(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if !is_f32(&[&x, &weight]) {
            return Flex::conv2d(x, weight, None, options);
        }
        conv_forward(x, weight, &options)
    }

    fn batch_norm_act_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !batch_norm_supported(&x, &gamma, &beta) {
            return super::reference::batch_norm_act::<Flex>(x, gamma, beta, epsilon, relu);
        }
        batch_norm_forward(x, gamma, beta, epsilon, relu, None)
    }

    fn batch_norm_add_relu_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !batch_norm_supported(&x, &gamma, &beta) || dims(&residual) != dims(&x) {
            return super::reference::batch_norm_add_relu::<Flex>(
                x, gamma, beta, residual, epsilon,
            );
        }
        batch_norm_forward(x, gamma, beta, epsilon, true, Some(&residual))
    }

    fn gelu_erf(x: FlexTensor) -> FlexTensor {
        if !is_f32(&[&x]) {
            return Flex::gelu(x);
        }
        let x = x.to_contiguous();
        tensor(gelu::forward(x.storage::<f32>()), &dims(&x))
    }

    fn max_pool2d_padded(
        x: FlexTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        match pool_window(&x, kernel, stride, padding) {
            Some(win) => max_pool_forward(&win, x).0,
            None => Flex::max_pool2d(x, kernel, stride, padding, [1, 1], false),
        }
    }

    fn layer_norm_last_dim(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        if !layer_norm_supported(&x, &gamma, &beta) {
            return super::reference::layer_norm::<Flex>(x, gamma, beta, epsilon);
        }
        layer_norm_forward(x, gamma, beta, epsilon).0
    }

    fn adamw_step(
        w: FlexTensor,
        g: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        step: update::Adamw,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let n = dims(&w);
        if !is_f32(&[&w, &g, &m, &v]) || [&g, &m, &v].iter().any(|t| dims(t) != n) {
            return super::reference::adamw::<Flex>(w, g, m, v, step);
        }
        // Whole-buffer contiguous tensors; `storage_mut` copies only one that is shared.
        let [mut w, g, mut m, mut v] = [w, g, m, v].map(|t| t.to_contiguous());
        update::adamw(
            step,
            w.storage_mut::<f32>(),
            g.storage::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
        );
        (w, m, v)
    }

    fn linear_bias(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        flex_linear(x, weight, bias, None)
    }

    fn linear_bias_residual(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
    ) -> FlexTensor {
        flex_linear(x, weight, bias, Some(residual))
    }

    fn multi_head_attention(qkv: FlexTensor, heads: usize) -> FlexTensor {
        if !attention_supported(&qkv, heads) {
            return super::reference::multi_head_attention::<Flex>(qkv, heads);
        }
        attention_forward(&qkv.to_contiguous(), heads).0
    }

    fn dino_cross_entropy(
        targets: FlexTensor,
        student: FlexTensor,
        batch: usize,
        temperature: f64,
    ) -> FlexTensor {
        match dino_crops(&targets, &student, batch) {
            Some(crops) => {
                let (targets, student) = (targets.to_contiguous(), student.to_contiguous());
                dino_forward(crops, &targets, &student, temperature).0
            }
            None => {
                super::reference::dino_cross_entropy::<Flex>(targets, student, batch, temperature)
            }
        }
    }
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
            grads.register::<Flex>(node.id, tensor(dx, &dims4(&x)));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, tensor(dw, &dims4(&weight)));
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

/// x, gamma, mean, variance, epsilon, and the output when a ReLU followed.
type BatchNormState = (
    FlexTensor,
    FlexTensor,
    FlexTensor,
    FlexTensor,
    f64,
    Option<FlexTensor>,
);

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (dx, dgamma, dbeta, _) = batch_norm_backward(ops.state, &dy, false);
        register3(
            grads,
            [node_x, node_gamma, node_beta].map(|node| node.map(|n| n.id)),
            dx,
            &dims(&dy),
            dgamma,
            dbeta,
        );
    }
}

/// `relu(bn(x) + residual)`: batch norm's gradients, and the masked upstream gradient for the
/// residual.
#[derive(Debug)]
struct BatchNormAddReluBackward;

impl Backward<Flex, 4> for BatchNormAddReluBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta, node_residual] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (dx, dgamma, dbeta, dresidual) =
            batch_norm_backward(ops.state, &dy, node_residual.is_some());
        if let (Some(node), Some(dresidual)) = (node_residual, dresidual) {
            grads.register::<Flex>(node.id, tensor(dresidual, &dims(&dy)));
        }
        register3(
            grads,
            [node_x, node_gamma, node_beta].map(|node| node.map(|n| n.id)),
            dx,
            &dims(&dy),
            dgamma,
            dbeta,
        );
    }
}

/// The forward pass of a tracked batch norm: `(y, mean, var, the backward pass's state)`.
fn tracked_batch_norm<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    gamma: FloatTensor<Autodiff<Flex, C>>,
    beta: FloatTensor<Autodiff<Flex, C>>,
    epsilon: f64,
    relu: bool,
    residual: Option<FloatTensor<Autodiff<Flex, C>>>,
) -> (FlexTensor, FlexTensor, FlexTensor, BatchNormState) {
    let (xp, gp) = (x.primitive().clone(), gamma.primitive().clone());
    let (y, mean, var) = batch_norm_forward(
        xp.clone(),
        gp.clone(),
        beta.into_primitive(),
        epsilon,
        relu,
        residual.as_ref().map(|r| r.primitive()),
    );
    let state = (
        xp,
        gp,
        mean.clone(),
        var.clone(),
        epsilon,
        relu.then(|| y.clone()),
    );
    (y, mean, var, state)
}

fn batch_norm_backward(
    (x, gamma, mean, var, epsilon, y): BatchNormState,
    dy: &FlexTensor,
    residual_grad: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let y = y.map(|y| y.to_contiguous());
    batch_norm::backward(
        planes(&x),
        x.storage::<f32>(),
        y.as_ref().map(|y| y.storage::<f32>()),
        gamma.storage::<f32>(),
        mean.storage::<f32>(),
        var.storage::<f32>(),
        epsilon,
        dy.storage::<f32>(),
        residual_grad,
    )
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The slope at the input, `Φ(x) + x·φ(x)`.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let slope = ops.state;
        if let Some(node) = node_x {
            let dx = gelu::backward(slope.storage::<f32>(), dy.storage::<f32>());
            grads.register::<Flex>(node.id, tensor(dx, &dims(&slope)));
        }
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// The call and each output's input position.
    type State = (Window, Vec<u32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (win, argmax) = ops.state;
        if let Some(node) = node_x {
            let dx = pool::max_backward(&win, &argmax, dy.storage::<f32>());
            grads.register::<Flex>(
                node.id,
                tensor(dx, &[win.batch, win.channels, win.h, win.w]),
            );
        }
    }
}

#[derive(Debug)]
struct LayerNormBackward;

/// x, gamma, mean, rstd.
type LayerNormState = (FlexTensor, FlexTensor, FlexTensor, FlexTensor);

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LayerNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x, gamma, mean, rstd) = ops.state;
        let (dx, dgamma, dbeta) = layer_norm::backward(
            x.storage::<f32>(),
            gamma.storage::<f32>(),
            mean.storage::<f32>(),
            rstd.storage::<f32>(),
            dy.storage::<f32>(),
        );
        register3(
            grads,
            [node_x, node_gamma, node_beta].map(|node| node.map(|n| n.id)),
            dx,
            &dims(&x),
            dgamma,
            dbeta,
        );
    }
}

#[derive(Debug)]
struct LinearBackward;

/// x, weight (both contiguous), sizes.
type LinearState = (FlexTensor, FlexTensor, Dims);

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let ids = ops.parents.map(|node| node.map(|n| n.id));
        linear_backward(grads, ids, ops.state, &dy);
    }
}

#[derive(Debug)]
struct LinearResidualBackward;

impl Backward<Flex, 4> for LinearResidualBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b, node_r] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        if let Some(node) = node_r {
            grads.register::<Flex>(node.id, dy.clone());
        }
        let ids = [node_x, node_w, node_b].map(|node| node.map(|n| n.id));
        linear_backward(grads, ids, ops.state, &dy);
    }
}

/// Registers the gradients of `x·weight + bias` from the output's `dy`.
fn linear_backward(
    grads: &mut Gradients,
    [node_x, node_w, node_b]: [Option<NodeId>; 3],
    (x, weight, s): LinearState,
    dy: &FlexTensor,
) {
    let dy_values = dy.storage::<f32>();
    if let Some(id) = node_x {
        let dx = linear::input_grad(s, weight.storage::<f32>(), dy_values);
        grads.register::<Flex>(id, tensor(dx, &dims(&x)));
    }
    if let Some(id) = node_w {
        let dw = linear::weight_grad(s, x.storage::<f32>(), dy_values);
        grads.register::<Flex>(id, tensor(dw, &[s.d_in, s.d_out]));
    }
    if let Some(id) = node_b {
        grads.register::<Flex>(id, vector(linear::bias_grad(s, dy_values)));
    }
}

#[derive(Debug)]
struct AttentionBackward;

/// qkv, the attention probabilities, heads.
type AttentionState = (FlexTensor, FlexTensor, usize);

impl Backward<Flex, 1> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_qkv] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (qkv, probs, heads) = ops.state;
        if let Some(node) = node_qkv {
            let s = heads_of(&qkv, heads);
            let dqkv = attention::backward(
                s,
                qkv.storage::<f32>(),
                probs.storage::<f32>(),
                dout.storage::<f32>(),
            );
            grads.register::<Flex>(node.id, tensor(dqkv, &dims(&qkv)));
        }
    }
}

#[derive(Debug)]
struct DinoCrossEntropyBackward;

/// targets, student logits (both contiguous), their row log-sum-exps, crops, temperature.
type DinoState = (FlexTensor, FlexTensor, Vec<f32>, Crops, f64);

impl Backward<Flex, 1> for DinoCrossEntropyBackward {
    type State = DinoState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_student] = ops.parents;
        let dloss = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (targets, student, lse, crops, temperature) = ops.state;
        if let Some(node) = node_student {
            let ds = cross_entropy::backward(
                crops,
                targets.storage::<f32>(),
                student.storage::<f32>(),
                &lse,
                temperature as f32,
                dloss.storage::<f32>()[0],
            );
            grads.register::<Flex>(node.id, tensor(ds, &dims(&student)));
        }
    }
}

/// The contiguous primitives of a linear layer's input, weight and bias.
fn linear_operands<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    (
        x.into_primitive().to_contiguous(),
        weight.into_primitive().to_contiguous(),
        bias.into_primitive().to_contiguous(),
    )
}

/// Registers the gradients of an op with inputs (x, gamma, beta).
fn register3(
    grads: &mut Gradients,
    [node_x, node_gamma, node_beta]: [Option<NodeId>; 3],
    dx: Vec<f32>,
    x_dims: &[usize],
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
) {
    if let Some(id) = node_x {
        grads.register::<Flex>(id, tensor(dx, x_dims));
    }
    if let Some(id) = node_gamma {
        grads.register::<Flex>(id, vector(dgamma));
    }
    if let Some(id) = node_beta {
        grads.register::<Flex>(id, vector(dbeta));
    }
}

impl<C: CheckpointStrategy> KernelOps for Autodiff<Flex, C> {
    fn conv2d_nobias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if !is_f32(&[x.primitive(), weight.primitive()]) {
            return <Self as ModuleOps<Self>>::conv2d(x, weight, None, options);
        }
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let y = conv_forward(x.clone(), weight.clone(), &options);
                prep.finish((x, weight, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(conv_forward(
                x.into_primitive(),
                weight.into_primitive(),
                &options,
            )),
        }
    }

    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !batch_norm_supported(x.primitive(), gamma.primitive(), beta.primitive()) {
            return super::reference::batch_norm_act::<Self>(x, gamma, beta, epsilon, relu);
        }
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, mean, var, state) =
                    tracked_batch_norm::<C>(x, gamma, beta, epsilon, relu, None);
                (
                    prep.finish(state, y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = batch_norm_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                    None,
                );
                (
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
        }
    }

    fn batch_norm_add_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !batch_norm_supported(x.primitive(), gamma.primitive(), beta.primitive())
            || dims(residual.primitive()) != dims(x.primitive())
        {
            return super::reference::batch_norm_add_relu::<Self>(
                x, gamma, beta, residual, epsilon,
            );
        }
        match BatchNormAddReluBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node(), residual.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, mean, var, state) =
                    tracked_batch_norm::<C>(x, gamma, beta, epsilon, true, Some(residual));
                (
                    prep.finish(state, y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = batch_norm_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    true,
                    Some(residual.primitive()),
                );
                (
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
        }
    }

    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[x.primitive()]) {
            return <Self as ActivationOps<Self>>::gelu(x);
        }
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.primitive().to_contiguous();
                let (y, slope) = gelu::forward_and_slope(x.storage::<f32>());
                prep.finish(tensor(slope, &dims(&x)), tensor(y, &dims(&x)))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<Flex as KernelOps>::gelu_erf(x.into_primitive()))
            }
        }
    }

    fn max_pool2d_padded(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let Some(win) = pool_window(x.primitive(), kernel, stride, padding) else {
            return <Self as ModuleOps<Self>>::max_pool2d(
                x,
                kernel,
                stride,
                padding,
                [1, 1],
                false,
            );
        };
        match MaxPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, argmax) = max_pool_forward(&win, x.into_primitive());
                prep.finish((win, argmax), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(max_pool_forward(&win, x.into_primitive()).0),
        }
    }

    fn layer_norm_last_dim(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !layer_norm_supported(x.primitive(), gamma.primitive(), beta.primitive()) {
            return super::reference::layer_norm::<Self>(x, gamma, beta, epsilon);
        }
        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, gp) = (
                    x.primitive().to_contiguous(),
                    gamma.primitive().to_contiguous(),
                );
                let (y, mean, rstd) =
                    layer_norm_forward(xp.clone(), gp.clone(), beta.into_primitive(), epsilon);
                prep.finish((xp, gp, mean, rstd), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                layer_norm_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                )
                .0,
            ),
        }
    }

    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let Some(s) = linear_dims(x.primitive(), weight.primitive(), bias.primitive()) else {
            return <Self as ModuleOps<Self>>::linear(x, weight, Some(bias));
        };
        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp, bp) = linear_operands::<C>(x, weight, bias);
                let y = linear_forward(s, &xp, &wp, &bp, None);
                prep.finish((xp, wp, s), y)
            }
            OpsKind::UnTracked(prep) => {
                let (xp, wp, bp) = linear_operands::<C>(x, weight, bias);
                prep.finish(linear_forward(s, &xp, &wp, &bp, None))
            }
        }
    }

    fn linear_bias_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let s = linear_dims(x.primitive(), weight.primitive(), bias.primitive())
            .filter(|_| residual_fits(x.primitive(), weight.primitive(), residual.primitive()));
        let Some(s) = s else {
            let y = <Self as ModuleOps<Self>>::linear(x, weight, Some(bias));
            return Self::float_add(y, residual);
        };
        let rp = residual.primitive().to_contiguous();
        match LinearResidualBackward
            .prepare::<C>([x.node(), weight.node(), bias.node(), residual.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp, bp) = linear_operands::<C>(x, weight, bias);
                let y = linear_forward(s, &xp, &wp, &bp, Some(&rp));
                prep.finish((xp, wp, s), y)
            }
            OpsKind::UnTracked(prep) => {
                let (xp, wp, bp) = linear_operands::<C>(x, weight, bias);
                prep.finish(linear_forward(s, &xp, &wp, &bp, Some(&rp)))
            }
        }
    }

    fn multi_head_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        if !attention_supported(qkv.primitive(), heads) {
            return super::reference::multi_head_attention::<Self>(qkv, heads);
        }
        match AttentionBackward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let qkv = qkv.primitive().to_contiguous();
                let (out, probs) = attention_forward(&qkv, heads);
                prep.finish((qkv, probs, heads), out)
            }
            OpsKind::UnTracked(prep) => {
                let qkv = qkv.into_primitive().to_contiguous();
                prep.finish(attention_forward(&qkv, heads).0)
            }
        }
    }

    fn dino_cross_entropy(
        targets: FloatTensor<Self>,
        student: FloatTensor<Self>,
        batch: usize,
        temperature: f64,
    ) -> FloatTensor<Self> {
        // The targets get no gradient here as in the composed version, which detaches them.
        let Some(crops) = dino_crops(targets.primitive(), student.primitive(), batch) else {
            return super::reference::dino_cross_entropy::<Self>(
                targets,
                student,
                batch,
                temperature,
            );
        };
        let targets_p = targets.into_primitive().to_contiguous();
        match DinoCrossEntropyBackward
            .prepare::<C>([student.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let student = student.primitive().to_contiguous();
                let (loss, lse) = dino_forward(crops, &targets_p, &student, temperature);
                prep.finish((targets_p, student, lse, crops, temperature), loss)
            }
            OpsKind::UnTracked(prep) => {
                let student = student.into_primitive().to_contiguous();
                prep.finish(dino_forward(crops, &targets_p, &student, temperature).0)
            }
        }
    }
}
