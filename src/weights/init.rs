//! Every encoder inside a method started from one pretrained file (`train --init`).

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::Device;

use super::import_encoder;
use crate::error::{Error, Result};
use crate::nn::ModelConfig;
use crate::nn::backbone::ImageShape;

/// Starts every encoder inside `module` (a method: online and target, student and teacher)
/// from the weights in `path`: each sub-module whose tensor names and shapes are the encoder's
/// gets them. An encoder of another architecture is one error naming the first differences.
pub fn init_encoders<M: burn::module::Module>(
    module: &mut M,
    model: &ModelConfig,
    path: &Path,
    shape: ImageShape,
    device: &Device,
) -> Result<()> {
    let heads = (model.heads > 0).then_some(model.heads);
    let imported = import_encoder(path, Some(shape.side), heads, device)?;
    let theirs = imported.encoder.collect(None, None, true);
    let ours: BTreeMap<String, Vec<usize>> = module
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect();
    // Where the model keeps its encoders: every prefix under which the first tensor's name occurs.
    let first = &theirs[0].name;
    let prefixes: Vec<&str> = ours
        .keys()
        .filter_map(|k| k.strip_suffix(first.as_str()))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .collect();
    let fits = |p: &str| {
        theirs
            .iter()
            .all(|t| ours.get(&format!("{p}{}", t.name)) == Some(&t.shape.to_vec()))
    };
    let fitting: Vec<String> = prefixes
        .iter()
        .filter(|p| fits(p))
        .map(|p| p.to_string())
        .collect();
    if fitting.is_empty() {
        let present = |p: &&&str| {
            theirs
                .iter()
                .filter(|t| ours.contains_key(&format!("{p}{}", t.name)))
                .count()
        };
        let prefix = prefixes.iter().max_by_key(present).copied().unwrap_or("");
        let differences: Vec<String> = theirs
            .iter()
            .filter_map(|t| {
                let name = format!("{prefix}{}", t.name);
                match ours.get(&name) {
                    Some(s) if *s == t.shape.to_vec() => None,
                    Some(s) => Some(format!("{} {:?} vs {s:?}", t.name, t.shape.to_vec())),
                    None => Some(format!("{} {:?} vs absent", t.name, t.shape.to_vec())),
                }
            })
            .take(3)
            .collect();
        return Err(Error::Weights {
            path: path.to_path_buf(),
            msg: format!(
                "holds a {} encoder, which does not fit this recipe's {} (checkpoint vs model: {}); set model.* to the checkpoint's architecture",
                imported.model.describe(),
                model.describe(),
                differences.join(", ")
            ),
        });
    }
    for prefix in &fitting {
        let tensors = imported
            .encoder
            .collect(None, None, true)
            .into_iter()
            .map(|t| {
                let name = format!("{prefix}{}", t.name);
                let data = bridge::to_data(&t).expect("an encoder tensor");
                bridge::from_data(data, name, None)
            })
            .collect();
        let result = module.apply(tensors, None, None, true);
        if !result.errors.is_empty() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                msg: format!("{}", result.errors[0]),
            });
        }
    }
    Ok(())
}
