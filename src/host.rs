//! Copying tensors to host memory.

use burn::tensor::Tensor;

/// The tensor's values as `f32`, row-major.
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 above")
}

/// An integer tensor's values as `i64`, row-major.
pub fn to_i64<const D: usize>(t: Tensor<D, burn::tensor::Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("converted to i64 above")
}

struct Named {
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl burn::module::ModuleVisitor for Named {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.out.push((self.path.join("."), to_f32(param.val())));
    }
}

/// Every float tensor of `module` (parameters and BatchNorm running statistics) by its path.
pub fn named_values<M: burn::module::Module>(module: &M) -> Vec<(String, Vec<f32>)> {
    let mut named = Named {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut named);
    named.out
}
