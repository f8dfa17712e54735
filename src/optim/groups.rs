//! Parameter groups: which parameters train differently from the rest.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// Parameters trained at the un-decayed base learning rate (SimSiam's predictor, the paper's
/// `fix_pred_lr`); every other parameter follows the schedule.
#[derive(Clone, Debug, Default)]
pub struct ConstantLr(HashSet<ParamId>);

impl ConstantLr {
    /// Every parameter of `module`.
    pub fn of<M: Module>(module: &M) -> Self {
        struct Ids(HashSet<ParamId>);
        impl ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.insert(param.id);
            }
        }
        let mut ids = Ids(HashSet::new());
        module.visit(&mut ids);
        ConstantLr(ids.0)
    }

    pub fn contains(&self, id: ParamId) -> bool {
        self.0.contains(&id)
    }
}
