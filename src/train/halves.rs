//! One step's loss and gradients, for methods whose loss allows it ([`Method::JOIN_HALVES`])
//! from the two halves of the batch on separate threads.
//!
//! Each operation of a step split over two threads leaves one of them waiting wherever the
//! other runs alone (autodiff bookkeeping, small copies) or finishes its half later: about a
//! tenth of MAE's step on a 2-core CPU. Halves of the batch keep both threads busy for the whole
//! forward and backward pass, each on its own copy of the parameters (so that the two autodiff
//! graphs stay apart), and meet once, to add their gradients.

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::method::{JoinCarries, LossTerm, Method, Progress, StepOutput};

/// `method`'s output on `views` at `progress` and the gradients of its loss: from two halves
/// of the batch on separate threads where the method allows it and the views are on the CPU
/// with two threads or more, otherwise in one pass. The output's loss is the batch's, its
/// gradients already taken.
pub fn loss_and_gradients<M: Method>(
    method: &M,
    views: &[Tensor<4>],
    progress: Progress,
) -> (StepOutput<M::Carry>, GradientsParams) {
    let batch = views[0].dims()[0];
    match M::JOIN_HALVES {
        Some(join)
            if batch >= 2
                && rayon::current_num_threads() > 1
                && crate::device::on_cpu(&views[0].device()) =>
        {
            in_halves(method, views, batch, progress, join)
        }
        _ => {
            let out = method.step(views, progress);
            let grads = GradientsParams::from_grads(out.loss.backward(), method);
            (out, grads)
        }
    }
}

fn in_halves<M: Method>(
    method: &M,
    views: &[Tensor<4>],
    batch: usize,
    progress: Progress,
    join: JoinCarries<M::Carry>,
) -> (StepOutput<M::Carry>, GradientsParams) {
    let half = |first: usize, len: usize| {
        let views: Vec<Tensor<4>> = views
            .iter()
            .map(|v| v.clone().narrow(0, first, len))
            .collect();
        // Fresh leaves (same parameter ids, shared values): a graph of its own for this half.
        let own = method.clone().fork(&views[0].device());
        let progress = Progress {
            first_image: progress.first_image + first,
            ..progress
        };
        let out = own.step(&views, progress);
        let share = len as f64 / batch as f64;
        let grads = GradientsParams::from_grads((out.loss.clone() * share).backward(), &own);
        (out, share, grads)
    };
    let middle = batch / 2;
    let ((a, share_a, grads_a), (b, share_b, grads_b)) =
        rayon::join(|| half(0, middle), || half(middle, batch - middle));
    let mut sum = GradientSum {
        halves: [grads_a, grads_b],
        total: GradientsParams::new(),
    };
    method.visit(&mut sum);
    let weighted = |x: Tensor<1>, y: Tensor<1>| x * share_a + y * share_b;
    let terms = a
        .terms
        .into_iter()
        .zip(b.terms)
        .map(|(x, y)| LossTerm {
            name: x.name,
            value: weighted(x.value, y.value),
        })
        .collect();
    let out = StepOutput {
        loss: weighted(a.loss, b.loss).detach(),
        embeddings: Tensor::cat(vec![a.embeddings, b.embeddings], 0),
        terms,
        carry: join(a.carry, b.carry),
        signals: a.signals.into_iter().chain(b.signals).collect(),
    };
    (out, sum.total)
}

/// Adds the two halves' gradients of each float parameter (each already weighted by its
/// half's share of the batch).
struct GradientSum {
    halves: [GradientsParams; 2],
    total: GradientsParams,
}

impl ModuleVisitor for GradientSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let [a, b] = &mut self.halves;
        let sum = match (a.remove::<D>(param.id), b.remove::<D>(param.id)) {
            (Some(x), Some(y)) => x + y,
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return,
        };
        self.total.register(param.id, sum);
    }
}
