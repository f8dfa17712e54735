//! Checks shared by unit tests.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::host::to_f32;

/// Equal within 1e-5, relative to the expected value (absolute near zero).
pub fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: {g} vs {w}"
        );
    }
}

/// Every parameter of `module` has a gradient in both or neither, and the two agree.
pub fn assert_same_gradients(module: &impl Module, got: &GradientsParams, want: &GradientsParams) {
    struct Compare<'a> {
        got: &'a GradientsParams,
        want: &'a GradientsParams,
        compared: usize,
    }
    impl ModuleVisitor for Compare<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let what = format!("{:?}", param.id);
            match (self.got.get::<D>(param.id), self.want.get::<D>(param.id)) {
                (Some(got), Some(want)) => {
                    close(&to_f32(got), &to_f32(want), &what);
                    self.compared += 1;
                }
                (None, None) => {}
                _ => panic!("{what}: a gradient in one of the two only"),
            }
        }
    }
    let mut compare = Compare {
        got,
        want,
        compared: 0,
    };
    module.visit(&mut compare);
    assert_eq!(compare.compared, want.len());
}
