//! Reading an encoder's architecture off a checkpoint's tensors, and renaming torchvision's and
//! timm's tensors to selfsup's (resampling a ViT's position embeddings on the way).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::import::checkpoint_error;
use super::{ExportCard, Names};
use crate::error::Result;
use crate::nn::backbone::{ImageShape, PoolKind, PosEmbed};
use crate::nn::resnet::Stem;
use crate::nn::vit::bilinear_resample;
use crate::nn::{Arch, ModelConfig};

fn dims(t: &TensorData) -> &[usize] {
    t.shape().as_slice()
}

/// The architecture the tensors describe.
pub(super) fn infer(
    path: &Path,
    t: &BTreeMap<String, TensorData>,
    heads: Option<usize>,
    card: Option<&ExportCard>,
) -> Result<(ModelConfig, ImageShape, Names)> {
    if let Some(proj) = t.get("patch_embed.proj.weight") {
        let &[dim, channels, patch, _] = dims(proj) else {
            return Err(checkpoint_error(path, "patch_embed.proj.weight is not 4-d"));
        };
        let depth = (0..)
            .take_while(|i| t.contains_key(&format!("blocks.{i}.attn.qkv.weight")))
            .count();
        let hidden = t
            .get("blocks.0.mlp.fc1.weight")
            .map_or(4 * dim, |w| dims(w)[0]);
        let registers = t
            .get("reg_token")
            .or_else(|| t.get("register_tokens"))
            .map_or(0, |r| dims(r)[1]);
        let positions = t.get("pos_embed").map_or(0, |p| dims(p)[1]);
        let grid = positions.isqrt();
        let grid = if grid * grid == positions {
            grid
        } else {
            (positions - 1).isqrt()
        };
        let card_heads = card.and_then(|c| {
            let rest = c.constructor.split("num_heads=").nth(1)?;
            rest.split([',', ')']).next()?.trim().parse().ok()
        });
        let heads = heads.or(card_heads).unwrap_or(dim / 64).max(1);
        let mean_pool = card.is_some_and(|c| c.constructor.contains("global_pool='avg'"));
        let model = ModelConfig {
            arch: Arch::Vit,
            patch_size: patch,
            embed_dim: dim,
            depth,
            heads,
            mlp_ratio: hidden as f64 / dim as f64,
            layer_scale: if t.contains_key("blocks.0.ls1.gamma") {
                1e-5
            } else {
                0.0
            },
            pos_embed: PosEmbed::Learned,
            registers,
            pool: if mean_pool {
                PoolKind::Mean
            } else {
                PoolKind::Cls
            },
            ..ModelConfig::default()
        };
        let shape = ImageShape {
            channels,
            side: grid * patch,
        };
        return Ok((model, shape, Names::Timm));
    }
    let conv1 = t
        .get("conv1.weight")
        .ok_or_else(|| checkpoint_error(path, "a ResNet without its stem (conv1.weight)"))?;
    let &[width, channels, k, _] = dims(conv1) else {
        return Err(checkpoint_error(path, "conv1.weight is not 4-d"));
    };
    let blocks: Vec<usize> = (1..=4)
        .map(|s| {
            (0..)
                .take_while(|i| t.contains_key(&format!("layer{s}.{i}.conv1.weight")))
                .count()
        })
        .collect();
    let bottleneck = t.contains_key("layer1.0.conv3.weight");
    let arch = match (blocks.as_slice(), bottleneck) {
        ([2, 2, 2, 2], false) => Arch::Resnet18,
        ([3, 4, 6, 3], false) => Arch::Resnet34,
        ([3, 4, 6, 3], true) => Arch::Resnet50,
        (other, b) => {
            return Err(checkpoint_error(
                path,
                format!(
                    "a ResNet with {other:?} blocks per stage{}: selfsup builds ResNet-18, 34 and 50",
                    if b { " (bottleneck)" } else { "" }
                ),
            ));
        }
    };
    let model = ModelConfig {
        arch,
        stem: if k == 7 { Stem::Imagenet } else { Stem::Small },
        width,
        ..ModelConfig::default()
    };
    let side = card.map_or(224, |c| c.image_size);
    Ok((model, ImageShape { channels, side }, Names::Torchvision))
}

/// torchvision's `layer{s}.{i}` back to selfsup's flat `layers.K`.
pub(super) fn to_resnet(
    tensors: BTreeMap<String, TensorData>,
    model: &ModelConfig,
) -> BTreeMap<String, TensorData> {
    let blocks = model.resnet().expect("a ResNet").arch.layout().0;
    tensors
        .into_iter()
        .map(|(name, data)| {
            let name = match name
                .strip_prefix("layer")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(stage, rest)| {
                    let stage: usize = stage.parse().ok()?;
                    let (block, tail) = rest.split_once('.')?;
                    let flat =
                        blocks[..stage - 1].iter().sum::<usize>() + block.parse::<usize>().ok()?;
                    let tail = tail
                        .replace("downsample.0.", "downsample.conv.")
                        .replace("downsample.1.", "downsample.bn.");
                    Some(format!("layers.{flat}.{tail}"))
                }) {
                Some(ours) => ours,
                None => name,
            };
            (name, data)
        })
        .collect()
}

/// timm / DINOv2 names to selfsup's: `register_tokens` is `reg_token`; a table without CLS's row
/// (timm's `no_embed_class`) gets a zero row; a grid other than the images' is resampled.
pub(super) fn to_vit(
    mut tensors: BTreeMap<String, TensorData>,
    model: &ModelConfig,
    shape: ImageShape,
    device: &Device,
) -> (BTreeMap<String, TensorData>, Vec<String>) {
    let mut notes = Vec::new();
    if let Some(reg) = tensors.remove("register_tokens") {
        tensors.insert("reg_token".into(), reg);
    }
    if let Some(pos) = tensors.remove("pos_embed") {
        let d = model.embed_dim;
        let values: Vec<f32> = pos.try_to_vec::<f32>().expect("f32");
        let rows = values.len() / d;
        let grid = rows.isqrt();
        let (cls, patches) = if grid * grid == rows {
            (vec![0.0; d], values)
        } else {
            (values[..d].to_vec(), values[d..].to_vec())
        };
        let from = (patches.len() / d).isqrt();
        let to = shape.side / model.patch_size;
        let patches = if from == to {
            patches
        } else {
            notes.push(format!(
                "position embeddings resampled from a {from}×{from} to a {to}×{to} patch grid (bilinear)"
            ));
            let table = Tensor::<2>::from_data(TensorData::new(patches, [from * from, d]), device);
            crate::host::to_f32(bilinear_resample(from, to, device).matmul(table))
        };
        let mut all = cls;
        all.extend(patches);
        tensors.insert(
            "pos_embed".into(),
            TensorData::new(all, [1, 1 + to * to, d]),
        );
    }
    (tensors, notes)
}
