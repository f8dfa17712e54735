//! EMA teachers: blend a student's parameters into a teacher of the same architecture.
//!
//! The teacher must be built with `init` (fresh parameter ids — the optimizer matches gradients
//! by id) and never `clone()`d from the student (clones share BatchNorm running state).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val().detach();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

struct Blend {
    student: std::vec::IntoIter<Tensor<1>>,
    momentum: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, teacher, mapper) = param.consume();
        let student = self
            .student
            .next()
            .expect("teacher and student have the same architecture");
        let dims = teacher.dims();
        let student: Tensor<D> = student.reshape(dims);
        let blended = (teacher.detach().mul_scalar(self.momentum)
            + student.mul_scalar(1.0 - self.momentum))
        .detach();
        Param::from_mapped_value(id, blended, mapper)
    }
}

/// θ_teacher ← m·θ_teacher + (1 − m)·θ_student, for parameters and BatchNorm running statistics.
pub fn ema_update<M: Module>(teacher: M, student: &M, momentum: f64) -> M {
    let mut collect = Collect(Vec::new());
    student.visit(&mut collect);
    let mut blend = Blend {
        student: collect.0.into_iter(),
        momentum,
    };
    teacher.map(&mut blend)
}

/// A teacher initialised as an exact copy of `student`'s values, with its own ids and state.
pub fn copy_into<M: Module>(fresh: M, student: &M) -> M {
    ema_update(fresh, student, 0.0).no_grad()
}

/// BYOL's cosine momentum schedule: τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2.
pub fn cosine_momentum(base: f64, step: usize, total_steps: usize) -> f64 {
    crate::optim::schedule::cosine_between(base, 1.0, step, total_steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, LinearConfig};
    use burn::tensor::Device;

    #[test]
    fn ema_blends_parameters_and_keeps_teacher_ids() {
        let device = Device::flex().autodiff();
        let student = LinearConfig::new(3, 2).init(&device);
        let teacher = LinearConfig::new(3, 2).init(&device);
        let (s, t) = (
            crate::host::to_f32(student.weight.val()),
            crate::host::to_f32(teacher.weight.val()),
        );
        let teacher_id = teacher.weight.id;
        let blended = ema_update(teacher, &student, 0.9);
        let b = crate::host::to_f32(blended.weight.val());
        for i in 0..6 {
            assert!((b[i] - (0.9 * t[i] + 0.1 * s[i])).abs() < 1e-6);
        }
        assert_eq!(blended.weight.id, teacher_id);
        assert!(!blended.weight.val().is_require_grad());
    }

    #[test]
    fn copy_does_not_share_batchnorm_state() {
        let device = Device::flex().autodiff();
        let student: BatchNorm = BatchNormConfig::new(2).init(&device);
        let teacher = copy_into(BatchNormConfig::new(2).init(&device), &student);
        // A training forward of the student updates its running mean; the teacher's must not move.
        let x = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &device,
        );
        let _ = student.forward(x);
        assert_ne!(
            crate::host::to_f32(student.running_mean.value_sync()),
            vec![0.0, 0.0]
        );
        assert_eq!(
            crate::host::to_f32(teacher.running_mean.value_sync()),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn cosine_momentum_runs_from_base_to_one() {
        assert!((cosine_momentum(0.996, 0, 100) - 0.996).abs() < 1e-12);
        assert!((cosine_momentum(0.996, 50, 100) - 0.998).abs() < 1e-12);
        assert!((cosine_momentum(0.996, 100, 100) - 1.0).abs() < 1e-12);
    }
}
