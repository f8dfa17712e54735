//! An encoder written as a PyTorch state dict in safetensors, with the card that builds its model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use super::Names;
use crate::data::loader::Normalize;
use crate::error::{Error, Result, write_atomic};
use crate::nn::backbone::{ImageShape, PoolKind};
use crate::nn::resnet::{Depth, Stem};
use crate::nn::{Arch, Backbone, ModelConfig};
use crate::run::Run;
use burn::tensor::Device;

/// What `export` wrote and how PyTorch builds the model that loads it with `strict=True`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportCard {
    /// The weights file, beside this card.
    pub weights: PathBuf,
    pub names: Names,
    pub architecture: String,
    /// `timm.create_model(…)` or a torchvision / timm constructor, with its keyword arguments.
    pub constructor: String,
    /// Statements run after construction (a small stem, another channel count, no classifier).
    pub changes: Vec<String>,
    /// Python that builds `model` (imports, constructor, changes), ready for `exec`.
    pub python: Vec<String>,
    pub image_size: usize,
    pub in_channels: usize,
    /// The normalisation the encoder was trained with: `(x / 255 - mean) / std` per channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub feature_dim: usize,
    pub tensors: usize,
}

/// Writes `encoder` to `path` (safetensors, PyTorch layout and `names`) and its card beside it
/// (`path` with `.json`); both atomically.
pub fn export_encoder(
    encoder: &Backbone,
    model: &ModelConfig,
    shape: ImageShape,
    normalize: &Normalize,
    names: Names,
    path: &Path,
) -> Result<ExportCard> {
    if model.is_vit() && names != Names::Timm {
        return Err(Error::Usage(format!(
            "--names {names}: ViT encoders are written with timm's names (torchvision's ViT names every layer differently); use --names timm"
        )));
    }
    if !model.is_vit() && names != Names::Torchvision {
        return Err(Error::Usage(format!(
            "--names {names}: ResNet encoders are written with torchvision's names, which timm's ResNets share; use --names torchvision"
        )));
    }
    let collected = encoder.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut tensors = Vec::with_capacity(collected.len());
    for t in collected {
        let bytes = t.to_bytes().map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!("{}: {e}", t.name),
        })?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.push(Exported {
            name: t.name.clone(),
            shape: t.shape.to_vec(),
            data: Data::F32(values),
        });
    }
    let (constructor, changes) = match encoder {
        Backbone::ResNet(_) => {
            let blocks = model.resnet().expect("a ResNet").arch.layout().0;
            tensors = torchvision_resnet(tensors, &blocks);
            resnet_constructor(model, shape)
        }
        Backbone::Vit(vit) => {
            if vit.prefix_len() > 1 {
                fold_cls_position(&mut tensors);
            }
            vit_constructor(model, shape)
        }
    };
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    write_safetensors(&tensors, path)?;
    let library = if constructor.starts_with("timm") {
        "timm"
    } else {
        "torchvision"
    };
    let mut python = vec!["import torch".to_string(), format!("import {library}")];
    python.push(format!("model = {constructor}"));
    python.extend(changes.iter().cloned());
    let card = ExportCard {
        weights: PathBuf::from(path.file_name().unwrap_or(path.as_os_str())),
        names,
        architecture: model.describe(),
        constructor,
        changes,
        python,
        image_size: shape.side,
        in_channels: shape.channels,
        mean: normalize.mean.clone(),
        std: normalize.std.clone(),
        feature_dim: encoder.out_dim(),
        tensors: tensors.len(),
    };
    let json = serde_json::to_string_pretty(&card).expect("the card serialises");
    write_atomic(&card_path(path), json.as_bytes())?;
    Ok(card)
}

/// The card beside a weights file: `encoder.safetensors` → `encoder.json`.
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

struct Exported {
    name: String,
    shape: Vec<usize>,
    data: Data,
}

enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// selfsup's flat `layers.K` become torchvision's `layer{stage}.{block}`, its `downsample.conv/bn`
/// the `downsample.0/1` of an `nn.Sequential`; every BatchNorm gains the `num_batches_tracked`
/// counter PyTorch's state dict holds (0: the momentum is fixed, so the count is never used).
fn torchvision_resnet(tensors: Vec<Exported>, blocks: &[usize; 4]) -> Vec<Exported> {
    let stage_of = |k: usize| {
        let mut first = 0;
        for (stage, &n) in blocks.iter().enumerate() {
            if k < first + n {
                return (stage + 1, k - first);
            }
            first += n;
        }
        unreachable!("block {k} past the last stage")
    };
    let mut out = Vec::with_capacity(tensors.len() * 5 / 4);
    for mut t in tensors {
        if let Some(rest) = t.name.strip_prefix("layers.") {
            let (k, tail) = rest.split_once('.').expect("layers.K.param");
            let (stage, block) = stage_of(k.parse().expect("a block index"));
            let tail = tail
                .replace("downsample.conv.", "downsample.0.")
                .replace("downsample.bn.", "downsample.1.");
            t.name = format!("layer{stage}.{block}.{tail}");
        }
        if let Some(bn) = t.name.strip_suffix(".running_var") {
            out.push(Exported {
                name: format!("{bn}.num_batches_tracked"),
                shape: vec![],
                data: Data::I64(vec![0]),
            });
        }
        out.push(t);
    }
    out
}

/// With registers, timm gives CLS no position (`no_embed_class`); selfsup adds `pos_embed[0]` to
/// it, so that row moves into the token itself and the table keeps the patches' rows.
fn fold_cls_position(tensors: &mut [Exported]) {
    let dim_of = |t: &Exported| *t.shape.last().expect("a 3-d tensor");
    let pos = tensors
        .iter_mut()
        .find(|t| t.name == "pos_embed")
        .expect("a ViT has pos_embed");
    let d = dim_of(pos);
    let Data::F32(table) = &mut pos.data else {
        unreachable!("pos_embed is f32")
    };
    let cls_row: Vec<f32> = table.drain(..d).collect();
    pos.shape[1] -= 1;
    let cls = tensors
        .iter_mut()
        .find(|t| t.name == "cls_token")
        .expect("a ViT has cls_token");
    let Data::F32(token) = &mut cls.data else {
        unreachable!("cls_token is f32")
    };
    for (t, p) in token.iter_mut().zip(cls_row) {
        *t += p;
    }
}

fn resnet_constructor(model: &ModelConfig, shape: ImageShape) -> (String, Vec<String>) {
    let depth = model.resnet().expect("a ResNet").arch;
    let (layers, bottleneck) = depth.layout();
    let name = match depth {
        Depth::Resnet18 => "resnet18",
        Depth::Resnet34 => "resnet34",
        Depth::Resnet50 => "resnet50",
    };
    let w = model.width;
    let (k, stride, pad) = match model.stem {
        Stem::Small => (3, 1, 1),
        Stem::Imagenet => (7, 2, 3),
    };
    let mut changes = Vec::new();
    if model.stem == Stem::Small || w != 64 || shape.channels != 3 {
        changes.push(format!(
            "model.conv1 = torch.nn.Conv2d({}, {w}, kernel_size={k}, stride={stride}, padding={pad}, bias=False)",
            shape.channels
        ));
    }
    if model.stem == Stem::Small {
        changes.push("model.maxpool = torch.nn.Identity()".to_string());
    }
    if w != 64 {
        // torchvision fixes the stage widths at 64…512; its own _make_layer rebuilds them at w…8w
        // with the same module names.
        let block = if bottleneck {
            "Bottleneck"
        } else {
            "BasicBlock"
        };
        changes.push(format!("model.bn1 = torch.nn.BatchNorm2d({w})"));
        changes.push(format!("model.inplanes = {w}"));
        for (stage, n) in layers.iter().enumerate() {
            let stride = if stage == 0 {
                String::new()
            } else {
                ", stride=2".to_string()
            };
            changes.push(format!(
                "model.layer{} = model._make_layer(torchvision.models.resnet.{block}, {}, {n}{stride})",
                stage + 1,
                w << stage
            ));
        }
    }
    changes.push("model.fc = torch.nn.Identity()".to_string());
    (format!("torchvision.models.{name}()"), changes)
}

fn vit_constructor(model: &ModelConfig, shape: ImageShape) -> (String, Vec<String>) {
    let vit = model.vit(shape.channels, shape.side).expect("a ViT");
    let preset = match (model.arch, vit.embed_dim) {
        (Arch::VitTiny, _) | (Arch::Vit, 192) => "vit_tiny_patch16_224",
        (Arch::VitSmall, _) | (Arch::Vit, 384) => "vit_small_patch16_224",
        _ => "vit_base_patch16_224",
    };
    let py_bool = |b: bool| if b { "True" } else { "False" };
    let layer_scale = if vit.layer_scale > 0.0 {
        format!("{:e}", vit.layer_scale)
    } else {
        "None".to_string()
    };
    let pool = if model.pool == PoolKind::Mean {
        "'avg'"
    } else {
        "'token'"
    };
    let constructor = format!(
        "timm.create_model('{preset}', pretrained=False, num_classes=0, img_size={}, patch_size={}, in_chans={}, embed_dim={}, depth={}, num_heads={}, mlp_ratio={:?}, qkv_bias=True, init_values={layer_scale}, class_token=True, reg_tokens={}, no_embed_class={}, global_pool={pool}, fc_norm=False, dynamic_img_size=False)",
        vit.image_size,
        vit.patch_size,
        vit.in_channels,
        vit.embed_dim,
        vit.depth,
        vit.heads,
        vit.mlp_ratio,
        vit.registers,
        py_bool(vit.registers > 0),
    );
    (constructor, Vec::new())
}

fn write_safetensors(tensors: &[Exported], path: &Path) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| match &t.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views = tensors.iter().zip(&bytes).map(|(t, b)| {
        let dtype = match t.data {
            Data::F32(_) => Dtype::F32,
            Data::I64(_) => Dtype::I64,
        };
        let view = TensorView::new(dtype, t.shape.clone(), b).expect("shape matches the bytes");
        (t.name.clone(), view)
    });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let file = safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &file)
}

/// Exports a finished run's encoder to `out` (default `<run>/encoder.safetensors`) with `names`
/// (default: timm for ViTs, torchvision for ResNets).
pub fn export_run(run: &Run, names: Option<Names>, out: Option<&Path>) -> Result<ExportCard> {
    let model = &run.recipe.model;
    let names = names.unwrap_or(if model.is_vit() {
        Names::Timm
    } else {
        Names::Torchvision
    });
    let path = out.map_or_else(|| run.root().join("encoder.safetensors"), Path::to_path_buf);
    if path.extension().is_none_or(|e| e != "safetensors") {
        return Err(Error::Usage(format!(
            "--out {}: the weights file must end in .safetensors (its card is written beside it as .json)",
            path.display()
        )));
    }
    let encoder = run.encoder(&Device::flex())?;
    export_encoder(
        &encoder,
        model,
        run.info.shape(),
        &run.info.normalize(),
        names,
        &path,
    )
}
